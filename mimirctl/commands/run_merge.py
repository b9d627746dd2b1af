"""``mimirctl run compare`` and ``mimirctl run merge``: a run's members side by side
with their diffs, and bringing the chosen work home."""

from __future__ import annotations

import argparse
from typing import Any, Final

from mimirctl import render
from mimirctl.client import Client
from mimirctl.commands import EXIT_OK, add_command, emit

MEMBER_HEADERS: Final = ["SLOT", "AGENT", "STATUS", "OUTCOME", "FILES", "+", "-", "CHECK", ""]
_STATUS_LETTERS: Final = {
    "added": "A",
    "modified": "M",
    "deleted": "D",
    "renamed": "R",
    "type_changed": "T",
}


def _check(check: dict[str, Any] | None) -> str:
    if check is None:
        return "-"
    verdict = "passed" if check["passed"] else ("timed out" if check["timed_out"] else "failed")
    summary = render.truncate(check["summary"], 40) if check["summary"] else ""
    return f"{verdict} ({render.duration(check['duration_s'])}){' ' + summary if summary else ''}"


def _members(members: list[dict[str, Any]]) -> str:
    rows = [
        [
            m["slot"],
            m["agent"],
            m["status"],
            m["outcome"],
            m["files_changed"],
            f"+{m['lines_added']}",
            f"-{m['lines_deleted']}",
            _check(m["check"]),
            "winner" if m["winner"] else ("(work unavailable)" if m["unavailable"] else ""),
        ]
        for m in members
    ]
    return render.table(MEMBER_HEADERS, rows)


def _side(slot: int | None) -> str:
    if slot is None:
        return "the base"
    return "the integration (slot 0)" if slot == 0 else f"slot {slot}"


def _diff(diff: dict[str, Any], with_patches: bool) -> list[str]:
    title = (
        f"{_side(diff['to_slot'])} against the base"
        if diff["from_slot"] is None
        else f"{_side(diff['from_slot'])} → {_side(diff['to_slot'])}"
    )
    lines = [
        f"{title}: {diff['files_changed']} file(s), +{diff['insertions']} -{diff['deletions']}"
    ]
    if diff["files"]:
        rows = []
        for f in diff["files"]:
            name = f["path"] if f["old_path"] is None else f"{f['old_path']} → {f['path']}"
            counts = (
                ["bin", "bin"] if f["binary"] else [f"+{f['insertions']}", f"-{f['deletions']}"]
            )
            rows.append(["  " + _STATUS_LETTERS.get(f["status"], "?"), name, *counts])
        lines.append(render.table(["", "PATH", "+", "-"], rows))
    if with_patches:
        lines.extend(f["patch"].rstrip("\n") for f in diff["files"] if f["patch"])
        if diff["truncated"]:
            lines.append("(the diff is cut here: raise --max-bytes to see more)")
    return lines


def cmd_run_compare(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"run": args.run_id, "files": args.files}
    if args.between is not None:
        params["between"] = args.between
    if args.max_bytes is not None:
        params["max_bytes"] = args.max_bytes
    result = client.call("run.compare", params)

    def human(r: dict[str, Any]) -> str:
        parts = [_members(r["members"])]
        for diff in r["diffs"]:
            parts.append("")
            parts.extend(_diff(diff, args.files))
        return "\n".join(parts)

    emit(args, result, human)
    return EXIT_OK


def cmd_run_merge(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"run": args.run_id, "squash": args.squash}
    for name in ("slot", "into", "message"):
        if getattr(args, name) is not None:
            params[name] = getattr(args, name)
    result = client.call("run.integrate", params)

    def human(r: dict[str, Any]) -> str:
        what = "the integration session" if r["slot"] is None else f"slot {r['slot']}"
        into = r["into"]
        if r["kind"] == "up_to_date":
            head = f"{into} already holds the work of {what} ({r['branch']}); nothing to merge"
        else:
            verb = {
                "fast_forward": "fast-forwarded",
                "merge": "merged",
                "squash": "squashed",
            }[r["kind"]]
            head = (
                f"{what} ({r['branch']}) {verb} into {into}: {r['files_changed']} file(s), "
                f"+{r['insertions']} -{r['deletions']}; {into} is at "
                f"{render.short_commit(r['commit'])} (was {render.short_commit(r['previous'])})"
            )
        lines = [head]
        if r["worktree"]:
            lines.append(f"the checkout at {r['worktree']} was updated")
        if r["put_away"]:
            lines.append(
                "put away (work snapshotted): slot(s) "
                + ", ".join(str(slot) for slot in r["put_away"])
            )
        lines.append(f"run {render.short_id(r['run']['id'])} is {r['run']['status']}")
        return "\n".join(lines)

    emit(args, result, human)
    return EXIT_OK


def _slot(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a slot number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(
            "a slot is a member's (from 1) or 0 (an ensemble's integration)"
        )
    return value


def add_commands(run: Any, common: argparse.ArgumentParser) -> None:
    """Add ``compare`` and ``merge`` to the ``run`` group's verbs."""
    compare = add_command(
        run,
        common,
        "compare",
        cmd_run_compare,
        "the members side by side, and their diffs file by file (each against the base, "
        "or two with --between)",
    )
    compare.add_argument("run_id", metavar="ID", help="run id or unique prefix (4+)")
    compare.add_argument(
        "--between",
        nargs=2,
        type=_slot,
        metavar=("A", "B"),
        help="the diff from slot A's work to slot B's (0: an ensemble's integration)",
    )
    compare.add_argument(
        "--files", action="store_true", help="each file's unified diff too, not only its counts"
    )
    compare.add_argument(
        "--max-bytes", type=int, help="at most this many bytes of diff text (default 1 MiB)"
    )

    merge = add_command(
        run,
        common,
        "merge",
        cmd_run_merge,
        "bring the winner's work (or a slot's) into a branch of the project's repository",
    )
    merge.add_argument("run_id", metavar="ID", help="run id or unique prefix (4+)")
    merge.add_argument(
        "--slot",
        type=_slot,
        help="this slot's work (default: the winner's; 0: an ensemble's integration)",
    )
    merge.add_argument(
        "--into", help="the branch to bring it into (default: the run's target branch)"
    )
    merge.add_argument(
        "--squash", action="store_true", help="one commit on top of the branch, not a merge"
    )
    merge.add_argument("--message", "-m", help="the merge or squash commit's message")
