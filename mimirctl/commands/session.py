"""``mimirctl session``: sessions, their workspaces, and their journal as a table."""

from __future__ import annotations

import argparse
import datetime as dt
import re
from typing import Any, Final

from mimirctl import render
from mimirctl.client import Client
from mimirctl.commands import (
    EXIT_ERROR,
    EXIT_OK,
    UsageError,
    add_command,
    add_group,
    emit,
    template_vars,
)
from mimirctl.stream import history
from mimird.wire.formats import TIMESTAMP_PATTERN

#: Characters of a title (or a task's first line) shown in ``session ls``.
TITLE_WIDTH: Final = 40
TIMESTAMP: Final = re.compile(TIMESTAMP_PATTERN)
RELATIVE_TIME: Final = re.compile(r"^(\d{1,9})([smhdw])$")
UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def time_arg(text: str, now: dt.datetime | None = None) -> str:
    """A --since/--until value as the daemon's Timestamp: ISO forms it accepts pass
    through, other ISO forms are converted to UTC (naive ones are taken as UTC, as
    the daemon does), and an age (``30m``, ``2h``, ``3d``, ``1w``) becomes that long
    before now."""
    text = text.strip()
    if match := RELATIVE_TIME.match(text):
        seconds = int(match[1]) * UNIT_SECONDS[match[2]]
        try:
            when = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=seconds)
        except OverflowError:
            raise argparse.ArgumentTypeError(f"{text!r} is too long ago") from None
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        when = dt.datetime.fromisoformat(text)
        if TIMESTAMP.match(text):
            return text  # already the daemon's form (and a real date: checked above)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: give an ISO date or time in UTC (2026-01-31, "
            "2026-01-31T10:00Z) or an age (30m, 2h, 3d, 1w)"
        ) from None
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{when.microsecond:06d}Z" if when.microsecond else "Z"
    )


def _status_list(values: list[str] | None) -> list[str]:
    """--status given several times and/or comma-separated."""
    return [s for value in values or [] for s in (p.strip() for p in value.split(",")) if s]


def _workspace_text(w: dict[str, Any]) -> str:
    text = f"{w['path']} ({w['kind']}, {w['state']})"
    if w.get("actual_path"):
        text += f"; git has it at {w['actual_path']}"
    if w.get("actual_branch"):
        text += f"; {w['actual_branch']} is checked out"
    return text


def _base_text(w: dict[str, Any]) -> str:
    commit = render.short_commit(w["base_commit"])
    ref = w.get("base_ref")
    return f"{ref} @ {commit}" if ref and ref != w["base_commit"] else commit


def _current(state: dict[str, Any] | None, key: str) -> Any:
    """The agent's model or mode as it last said (config option, else models/modes)."""
    state = state or {}
    for option in state.get("config_options") or []:
        if isinstance(option, dict) and option.get("category") == key:
            return option.get("currentValue")
    found = state.get(f"{key}s")
    return found.get(f"current{key.title()}Id") if isinstance(found, dict) else None


def _session_fields(s: dict[str, Any]) -> str:
    w = s["workspace"]
    pairs: list[tuple[str, Any]] = [
        ("id", s["id"]),
        ("project", s["project"]),
        ("title", s["title"] or "-"),
        ("status", s["status"]),
        ("agent", s["agent"] or "-"),
        ("workspace", _workspace_text(w)),
    ]
    for key in ("model", "mode"):
        if (current := _current(s.get("agent_state"), key)) is not None:
            pairs.append((key, current))
    if w.get("branch"):
        pairs.append(("branch", w["branch"]))
    if w.get("base_commit"):
        pairs.append(("base", _base_text(w)))
    if w.get("snapshot_ref"):
        pairs.append(
            ("snapshot", f"{w['snapshot_ref']} @ {render.short_commit(w['snapshot_commit'])}")
        )
    if git := s.get("git"):
        pairs += [
            ("head", render.short_commit(git["head"])),
            ("dirty", git["dirty"]),
            ("ahead/behind", f"{git['ahead']}/{git['behind']}"),
            (
                "changes",
                f"{git['files_changed']} file(s), +{git['insertions']} -{git['deletions']}",
            ),
        ]
    if s.get("failure"):
        pairs.append(("failure", s["failure"]))
    if s.get("run_id"):
        slot = s.get("slot")
        pairs.append(("run", s["run_id"] + (f" (slot {slot})" if slot is not None else "")))
    if used := s.get("usage"):
        pairs.append(("usage", render.usage(used)))
    pairs += [
        ("task", s["task"] or "-"),
        ("config", s["config"]),
        ("events", s["last_seq"]),
        ("created", s["created_at"]),
        ("updated", s["updated_at"]),
    ]
    if s.get("completed_at"):
        pairs.append(("completed", s["completed_at"]))
    pairs.append(("active", render.duration(s.get("active_s") or 0.0)))
    wall = s.get("wall_s")
    if wall is None:  # not completed: so far
        wall = (dt.datetime.now(dt.UTC) - render.parse_timestamp(s["created_at"])).total_seconds()
    pairs.append(("wall", render.duration(max(wall, 0.0))))
    return render.fields(pairs)


def _session_row(s: dict[str, Any]) -> list[Any]:
    return [
        render.short_id(s["id"]),
        s["project"],
        s["status"],
        s["workspace"]["state"],
        s["workspace"].get("branch") or "-",
        render.truncate(s["title"] or render.first_line(s["task"]) or "-", TITLE_WIDTH),
        render.age(s["updated_at"]),
    ]


def cmd_session_new(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"project": args.project}
    for key, value in (
        ("title", args.title),
        ("task", args.task),
        ("agent", args.agent),
        ("base_ref", args.base),
        ("branch", args.branch),
        ("config", args.config),
    ):
        if value is not None:
            params[key] = value
    if args.in_place:
        params["workspace"] = "in_place"
    for key in ("model", "mode"):
        if (value := getattr(args, key)) is not None:
            params["config"] = {**params.get("config", {}), key: value}
    if args.prompt is not None or args.template is not None:
        if args.prompt is not None and args.template is not None:
            raise UsageError("give --prompt or --template, not both")
        params["prompt"] = (
            args.prompt
            if args.prompt is not None
            else {"template": args.template, "vars": template_vars(args.var)}
        )
    elif args.var:
        raise UsageError("--var goes with --template")
    session = client.call("session.create", params)

    def human(s: dict[str, Any]) -> str:
        w = s["workspace"]
        pairs: list[tuple[str, Any]] = [
            ("id", s["id"]),
            ("project", s["project"]),
            ("status", s["status"]),
        ]
        if w.get("branch"):
            pairs.append(("branch", w["branch"]))
        pairs.append(("workspace", f"{w['path']} ({w['kind']})"))
        return render.fields(pairs)

    emit(args, session, human)
    if session["status"] == "failed":
        render.say(
            f"mimirctl: session {session['id']} was created but its setup failed: "
            f"{session['failure']}",
            err=True,
        )
        return EXIT_ERROR
    return EXIT_OK


def cmd_session_ls(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    for key, value in (
        ("project", args.project),
        ("agent", args.agent),
        ("text", args.text),
        ("updated_after", args.since),
        ("updated_before", args.until),
        ("created_after", args.created_since),
        ("created_before", args.created_until),
        ("cursor", args.cursor),
    ):
        if value is not None:
            params[key] = value
    if statuses := _status_list(args.status):
        params["status"] = statuses
    if args.all:
        params.update(include_archived=True, include_deleted=True)
    if args.by_completion:
        params["sort"] = "completed_at"
    if args.offset:
        params["offset"] = args.offset
    if args.total:
        params["total"] = True
    result = client.call("session.list", params)
    if args.all_pages:
        sessions = list(result["sessions"])
        while result["next_cursor"]:
            params.pop("offset", None)  # skipped once, before the first page
            result = client.call("session.list", {**params, "cursor": result["next_cursor"]})
            sessions += result["sessions"]
        result = {**result, "sessions": sessions}

    def human(r: dict[str, Any]) -> str:
        if not r["sessions"]:
            return "no sessions" + (
                "" if args.all else " (use --all to include archived and deleted ones)"
            )
        return render.table(
            ["ID", "PROJECT", "STATUS", "WORKSPACE", "BRANCH", "TITLE", "UPDATED"],
            [_session_row(s) for s in r["sessions"]],
        )

    emit(args, result, human)
    if args.total and not args.json:
        render.say(f"{result['total']} sessions match", err=True)
    if result["next_cursor"] and not args.json:
        render.say(
            f"more: mimirctl session ls --cursor {result['next_cursor']} "
            "(same filters), or --all-pages",
            err=True,
        )
    return EXIT_OK


def cmd_session_show(client: Client, args: argparse.Namespace) -> int:
    emit(args, client.call("session.get", {"session": args.session}), _session_fields)
    return EXIT_OK


def cmd_session_diff(client: Client, args: argparse.Namespace) -> int:
    diff = client.call("session.diff", {"session": args.session, "patch": args.patch})
    if args.patch and not args.json:
        # Byte for byte what git wrote: `mimirctl session diff X --patch | git apply`.
        render.write_patch(diff.get("patch") or "")
        return EXIT_OK

    def human(d: dict[str, Any]) -> str:
        base = render.short_commit(d["base_commit"])
        if not d["files"]:
            return f"no changes against {base}"
        rows = [
            [f["status"], f["path"]]
            + (["bin", "bin"] if f["binary"] else [f"+{f['insertions']}", f"-{f['deletions']}"])
            for f in d["files"]
        ]
        summary = (
            f"{d['files_changed']} file(s) changed, +{d['insertions']} -{d['deletions']} "
            f"against {base}"
        )
        return render.table(["STATUS", "PATH", "+", "-"], rows) + "\n" + summary

    emit(args, diff, human)
    return EXIT_OK


def cmd_session_config(client: Client, args: argparse.Namespace) -> int:
    config = client.call("session.config", {"session": args.session})

    def human(c: dict[str, Any]) -> str:
        if not args.explain:
            return render.toml_lines(c["effective"])
        return render.table(
            ["KEY", "VALUE", "SOURCE"],
            [[e["key"], render.toml_value(e["value"]), e["source"]] for e in c["entries"]],
        )

    emit(args, config, human)
    return EXIT_OK


def cmd_session_update(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"session": args.session}
    for key in ("title", "task", "config"):
        if (value := getattr(args, key)) is not None:
            params[key] = value
    if len(params) == 1:
        raise UsageError("nothing to update: give --title, --task or --config")
    emit(args, client.call("session.update", params), _session_fields)
    return EXIT_OK


def cmd_session_archive(client: Client, args: argparse.Namespace) -> int:
    session = client.call("session.archive", {"session": args.session})
    emit(
        args,
        session,
        lambda s: (
            f"archived session {s['id']} (workspace kept; "
            f"'mimirctl session restore {s['id']}' brings it back)"
        ),
    )
    return EXIT_OK


def cmd_session_done(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"session": args.session}
    if args.note is not None:
        params["note"] = args.note
    emit(
        args,
        client.call("session.complete", params),
        lambda s: (
            f"completed session {s['id']} (workspace and branch kept; "
            f"'mimirctl resume {s['id']}' goes on with it)"
        ),
    )
    return EXIT_OK


def cmd_session_rm(client: Client, args: argparse.Namespace) -> int:
    removed = client.call(
        "session.delete",
        {"session": args.session, "force": args.force, "delete_branch": args.delete_branch},
    )

    def human(r: dict[str, Any]) -> str:
        s, snapshot = r["session"], r["snapshot"]
        w = s["workspace"]
        lines = [f"deleted session {s['id']}"]
        if w["state"] == "foreign":  # an import's: nothing of it was this mimird's to touch
            branch = ", with its branch" if w["kind"] == "worktree" else ""
            lines.append(
                f"workspace {w['path']} left where it is{branch} (this mimird did not make it)"
            )
            return "\n".join(lines)
        if snapshot is not None:
            lines.append(
                f"work saved in {snapshot['ref']} (commit {render.short_commit(snapshot['commit'])}"
                f", {snapshot['files']} uncommitted file(s))"
            )
        elif w["kind"] == "worktree" and args.force:
            lines.append("no snapshot taken (--force): uncommitted work is gone")
        if w["state"] == "removed":
            kept = " (mimird keeps the copy for restore)" if w["kind"] == "private" else ""
            lines.append(f"workspace {w['path']} removed{kept}")
        if w.get("branch") and w["kind"] == "worktree":
            lines.append(f"branch {w['branch']} " + ("deleted" if args.delete_branch else "kept"))
        lines.append(f"restore it with: mimirctl session restore {s['id']}")
        return "\n".join(lines)

    emit(args, removed, human)
    return EXIT_OK


def cmd_session_restore(client: Client, args: argparse.Namespace) -> int:
    session = client.call("session.restore", {"session": args.session})
    emit(
        args,
        session,
        lambda s: (
            f"restored session {s['id']} ({s['status']})\n"
            f"workspace: {_workspace_text(s['workspace'])}"
        ),
    )
    return EXIT_OK


def cmd_session_repair(client: Client, args: argparse.Namespace) -> int:
    session = client.call("session.repair", {"session": args.session})
    emit(
        args,
        session,
        lambda s: f"session {s['id']}: workspace {_workspace_text(s['workspace'])}",
    )
    return EXIT_OK


def cmd_session_choose(client: Client, args: argparse.Namespace) -> int:
    """``session model ID M`` and ``session mode ID M``."""
    result = client.call(f"session.set_{args.key}", {"session": args.session, args.key: args.value})

    def human(r: dict[str, Any]) -> str:
        if r["applied"]:
            return f"{r['key']} set to {r['value']} (the agent was told: {r['via']})"
        return f"{r['key']} {r['value']} stored: applied when the agent next starts"

    emit(args, result, human)
    return EXIT_OK


def cmd_session_log(client: Client, args: argparse.Namespace) -> int:
    events = list(history(client, args.session, args.after, args.limit))

    def human(r: dict[str, Any]) -> str:
        if not r["events"]:
            return "no events" + (f" after {args.after}" if args.after else "")
        return render.table(
            ["SEQ", "TIME", "KIND", "DATA"],
            [
                [e["seq"], e["created_at"], e["kind"], render.compact(e["data"])]
                for e in r["events"]
            ],
        )

    emit(args, {"events": events}, human)
    return EXIT_OK


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    session = add_group(
        commands,
        common,
        "session",
        "manage sessions (each in its own git worktree and branch)",
        description="A session is named by its id or any unique prefix of it (4+ characters).",
    )

    new = add_command(session, common, "new", cmd_session_new, "create a session")
    new.add_argument("project", help="project id or name")
    new.add_argument("--title", help="a short title (also names the branch)")
    new.add_argument("--task", help="what the session is for")
    new.add_argument("--agent", help="agent kind (default: from the config)")
    new.add_argument("--base", metavar="REF", help="start from this ref (default: the HEAD)")
    new.add_argument("--branch", help="branch name (default: from branch_template)")
    new.add_argument(
        "--in-place",
        action="store_true",
        help="work in the project directory itself, not a new worktree",
    )
    new.add_argument("--config", metavar="JSON", help="config overrides, a JSON object")
    new.add_argument("--model", help="the agent's model (an id it offers)")
    new.add_argument("--mode", help="the agent's mode (an id it offers)")
    new.add_argument("--prompt", metavar="TEXT", help="a first prompt, sent once it is made")
    new.add_argument("--template", metavar="NAME", help="a first prompt from this prompt template")
    new.add_argument(
        "--var", action="append", metavar="KEY=VALUE", help="a value for the template's {KEY}"
    )

    ls = add_command(session, common, "ls", cmd_session_ls, "list sessions, newest first")
    ls.add_argument("--project", "-p", help="only this project's (id or name)")
    ls.add_argument(
        "--status",
        "-s",
        action="append",
        metavar="S",
        help="only sessions in this status (repeat, or separate with commas)",
    )
    ls.add_argument("--agent", help="only sessions of this agent kind")
    ls.add_argument("--text", help="only sessions whose title, task, id or branch contains this")
    ls.add_argument(
        "--since", type=time_arg, metavar="TIME", help="updated after TIME (e.g. 2h, 2026-01-31)"
    )
    ls.add_argument("--until", type=time_arg, metavar="TIME", help="updated before TIME")
    ls.add_argument("--created-since", type=time_arg, metavar="TIME", help="created after TIME")
    ls.add_argument("--created-until", type=time_arg, metavar="TIME", help="created before TIME")
    ls.add_argument(
        "--all", "-a", action="store_true", help="include archived and deleted sessions"
    )
    ls.add_argument(
        "--by-completion",
        action="store_true",
        help="only completed (or once completed) sessions, most recently completed first",
    )
    ls.add_argument("--limit", type=int, default=100, metavar="N", help="sessions per page")
    ls.add_argument("--cursor", metavar="C", help="continue after this page (next_cursor)")
    ls.add_argument("--offset", type=int, default=0, metavar="N", help="skip N sessions first")
    ls.add_argument(
        "--total", action="store_true", help="also say how many sessions the filters match"
    )
    ls.add_argument("--all-pages", action="store_true", help="follow every page")

    def verb(name: str, run: Any, summary: str) -> argparse.ArgumentParser:
        return add_command(session, common, name, run, summary, session=True)

    verb("show", cmd_session_show, "show a session, its workspace and git status")

    diff = verb("diff", cmd_session_diff, "what a session changed against its base")
    diff.add_argument(
        "--patch", action="store_true", help="print the patch itself (for 'git apply')"
    )

    config = verb("config", cmd_session_config, "a session's effective configuration")
    config.add_argument("--explain", action="store_true", help="show where each value came from")

    update = verb("update", cmd_session_update, "change a session's title, task or config")
    update.add_argument("--title")
    update.add_argument("--task")
    update.add_argument("--config", metavar="JSON", help="replace config overrides (JSON object)")

    done = verb("done", cmd_session_done, "say a session is done: its agent stopped, completed")
    done.add_argument("--note", metavar="TEXT", help="why or how it is done (journaled)")

    verb("archive", cmd_session_archive, "archive a session (hidden from ls; workspace kept)")

    rm = verb(
        "rm", cmd_session_rm, "delete a session: its work is snapshotted, its worktree removed"
    )
    rm.add_argument(
        "--force",
        action="store_true",
        help="remove the worktree even when its work cannot be snapshotted (loses that work)",
    )
    rm.add_argument(
        "--delete-branch",
        action="store_true",
        help="also delete the session's branch (the snapshot still keeps the work)",
    )

    verb("restore", cmd_session_restore, "bring back a deleted or archived session")
    verb("repair", cmd_session_repair, "adopt a moved worktree, re-create a missing one")

    for key in ("model", "mode"):
        choose = verb(key, cmd_session_choose, f"choose the {key} of a session's agent")
        choose.add_argument("value", metavar=key.upper(), help=f"a {key} id the agent offers")
        choose.set_defaults(key=key)

    log = verb("log", cmd_session_log, "a session's journal, one event a line")
    log.add_argument("--after", type=int, default=0, metavar="SEQ", help="events after this seq")
    log.add_argument("--limit", type=int, metavar="N", help="at most N events")
