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
