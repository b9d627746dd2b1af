"""``mimirctl worktree``: the worktrees Mimir made, and pruning them."""

from __future__ import annotations

import argparse
from typing import Any, Final

from mimirctl import render
from mimirctl.client import Client
from mimirctl.commands import EXIT_OK, add_command, add_group, emit


def _worktree_rows(worktrees: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            render.short_id(w["session_id"]),
            w["session_status"] if w["session_id"] else "-",
            w["project"],
            w["state"],
            w["branch"] or "-",
            w["path"],
        ]
        for w in worktrees
    ]


WORKTREE_HEADERS: Final = ["SESSION", "STATUS", "PROJECT", "STATE", "BRANCH", "PATH"]


def cmd_worktree_ls(client: Client, args: argparse.Namespace) -> int:
    params = {} if args.project is None else {"project": args.project}
    result = client.call("worktree.list", params)

    def human(r: dict[str, Any]) -> str:
        parts = []
        if r["worktrees"]:
            parts.append(render.table(WORKTREE_HEADERS, _worktree_rows(r["worktrees"])))
        else:
            parts.append("no worktrees")
        if r["orphans"]:
            parts.append(
                "\norphans (no session owns them; 'mimirctl worktree prune' removes them):"
            )
            parts.extend(f"  {path}" for path in r["orphans"])
        return "\n".join(parts)

    emit(args, result, human)
    return EXIT_OK


def cmd_worktree_prune(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"dry_run": args.dry_run}
    if args.project is not None:
        params["project"] = args.project
    result = client.call("worktree.prune", params)

    def human(r: dict[str, Any]) -> str:
        if not r["removed"]:
            return "nothing to prune"
        verb = "would remove" if r["dry_run"] else "removed"
        lines = [
            f"{verb} {len(r['removed'])} worktree(s):",
            render.table(WORKTREE_HEADERS, _worktree_rows(r["removed"])),
        ]
        if r["snapshots"]:
            lines.append("work saved in:")
            lines.extend(
                f"  {s['ref']} (commit {render.short_commit(s['commit'])}, "
                f"{s['files']} uncommitted file(s))"
                for s in r["snapshots"]
            )
        return "\n".join(lines)

    emit(args, result, human)
    return EXIT_OK


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    worktree = add_group(commands, common, "worktree", "inspect and prune worktrees")
    ls = add_command(
        worktree,
        common,
        "ls",
        cmd_worktree_ls,
        "every worktree Mimir made, its state checked now, and orphan directories",
    )
    ls.add_argument("--project", "-p", help="only this project's (id or name)")

    prune = add_command(
        worktree,
        common,
        "prune",
        cmd_worktree_prune,
        "remove worktrees no session needs (each snapshotted first)",
    )
    prune.add_argument("--project", "-p", help="only this project's (id or name)")
    prune.add_argument("--dry-run", "-n", action="store_true", help="only say what would go")
