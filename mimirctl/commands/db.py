"""``mimirctl db``: the daemon's database."""

from __future__ import annotations

import argparse
import os
from typing import Any

from mimirctl import render
from mimirctl.client import Client
from mimirctl.commands import EXIT_ERROR, EXIT_OK, add_command, add_group, emit


def cmd_db_check(client: Client, args: argparse.Namespace) -> int:
    client.set_timeout(None)  # a full check of a big database takes a while
    result = client.call("db.check", {"full": args.full})

    def human(r: dict[str, Any]) -> str:
        if r["ok"]:
            return f"database ok ({r['kind']} check, {r['duration_ms']:.0f} ms)"
        return "\n".join([f"database has problems ({r['kind']} check):", *r["problems"]])

    emit(args, result, human)
    return EXIT_OK if result["ok"] else EXIT_ERROR


def cmd_db_backup(client: Client, args: argparse.Namespace) -> int:
    client.set_timeout(None)
    params = {} if args.path is None else {"path": os.path.abspath(args.path)}
    result = client.call("db.backup", params)

    def human(r: dict[str, Any]) -> str:
        encrypted = ", encrypted" if r["encrypted"] else ""
        return f"backed up to {r['path']} ({render.human_bytes(r['bytes'])}{encrypted})"

    emit(args, result, human)
    return EXIT_OK


def _figures(before: dict[str, Any], after: dict[str, Any]) -> str:
    """The database's figures before and after, side by side."""

    def pages(f: dict[str, Any]) -> str:
        return f"{f['page_count']} pages ({f['freelist_count']} free)"

    return render.table(
        ["", "BEFORE", "AFTER"],
        [
            [
                "file",
                render.human_bytes(before["file_bytes"]),
                render.human_bytes(after["file_bytes"]),
            ],
            [
                "wal",
                render.human_bytes(before["wal_bytes"]),
                render.human_bytes(after["wal_bytes"]),
            ],
            ["pages", pages(before), pages(after)],
        ],
    )


def _checkpoint(c: dict[str, Any]) -> str:
    if c["busy"]:
        return (
            f"WAL checkpoint busy: {c['checkpointed_frames']} of {c['wal_frames']} frames "
            "copied (a reader held old pages; run it again later)"
        )
    return "WAL checkpointed and truncated"


def cmd_db_optimize(client: Client, args: argparse.Namespace) -> int:
    client.set_timeout(None)
    result = client.call("db.optimize")

    def human(r: dict[str, Any]) -> str:
        return "\n".join(
            [
                f"optimized in {r['duration_ms']:.0f} ms: search index merged, "
                f"PRAGMA optimize, {_checkpoint(r['checkpoint'])}",
                _figures(r["before"], r["after"]),
            ]
        )

    emit(args, result, human)
    return EXIT_OK


def cmd_db_vacuum(client: Client, args: argparse.Namespace) -> int:
    client.set_timeout(None)
    result = client.call("db.vacuum")

    def human(r: dict[str, Any]) -> str:
        saved = r["before"]["file_bytes"] - r["after"]["file_bytes"]
        return "\n".join(
            [
                f"vacuumed in {r['duration_ms']:.0f} ms, {render.human_bytes(max(saved, 0))} "
                f"given back; {_checkpoint(r['checkpoint'])}",
                _figures(r["before"], r["after"]),
            ]
        )

    emit(args, result, human)
    return EXIT_OK


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    db = add_group(commands, common, "db", "the daemon's database")
    check = add_command(
        db, common, "check", cmd_db_check, "check the database's integrity (exits 1 on a problem)"
    )
    check.add_argument(
        "--full", action="store_true", help="SQLite's integrity_check (slower, also indexes)"
    )
    backup = add_command(db, common, "backup", cmd_db_backup, "copy the database while mimird runs")
    backup.add_argument(
        "path", nargs="?", help="where to (must not exist; default: the state dir's backups/)"
    )
    add_command(
        db,
        common,
        "optimize",
        cmd_db_optimize,
        "merge the search index, PRAGMA optimize, checkpoint the WAL (safe while mimird runs)",
    )
    add_command(
        db,
        common,
        "vacuum",
        cmd_db_vacuum,
        "rewrite the database without its free pages (checks first for free disk: ~2x its size)",
    )
