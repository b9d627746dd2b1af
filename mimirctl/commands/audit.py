"""``mimirctl audit``: who called which mutating method, when, and how it ended."""

from __future__ import annotations

import argparse

from mimirctl import render
from mimirctl.commands import EXIT_OK, add_command, emit
from mimirctl.commands.session import time_arg

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see mimirctl.cli)
if TYPE_CHECKING:
    from typing import Any, Final

    from mimirctl.client import Client

#: Characters of the params shown in a table row.
PARAMS_WIDTH: Final = 60


def _who(entry: dict[str, Any]) -> str:
    client = entry["client"] or "?"
    return f"{client} (uid {entry['uid']}, pid {entry['pid']})"


def _outcome(entry: dict[str, Any]) -> str:
    if entry["outcome"] == "ok":
        return "ok"
    return f"error {entry['error_code']} {entry['error_kind'] or ''}".rstrip()


def cmd_audit(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.method is not None:
        params["method"] = args.method
    if args.since is not None:
        params["since"] = args.since
    if args.failed:
        params["failed"] = True
    if args.cursor is not None:
        params["cursor"] = args.cursor
    result = client.call("audit.list", params)

    def human(r: dict[str, Any]) -> str:
        if not r["entries"]:
            return "no audited calls" + (" match" if len(params) > 1 else "")
        rows = [
            [
                e["at"][:19].replace("T", " "),
                _who(e),
                e["method"],
                e["target"] or "",
                _outcome(e),
                render.truncate(render.first_line(e["params"]), PARAMS_WIDTH),
            ]
            for e in r["entries"]
        ]
        text = render.table(["WHEN (UTC)", "WHO", "METHOD", "TARGET", "OUTCOME", "PARAMS"], rows)
        failures = [e for e in r["entries"] if e["outcome"] == "error" and e["error_message"]]
        if args.verbose and failures:
            text += "\n\nerrors:\n" + "\n".join(
                f"  #{e['id']} {e['method']}: {render.visible(e['error_message'])}"
                for e in failures
            )
        if r["next_cursor"] is not None:
            text += f"\n(more: --cursor {r['next_cursor']})"
        return text

    emit(args, result, human)
    return EXIT_OK


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    audit = add_command(
        commands,
        common,
        "audit",
        cmd_audit,
        "who called which mutating method, when, and how it ended (newest first)",
    )
    audit.add_argument("--method", metavar="M", help="only calls of method M (e.g. session.delete)")
    audit.add_argument(
        "--since",
        type=time_arg,
        metavar="TIME",
        help="only calls at or after TIME (2h, 2026-01-31)",
    )
    audit.add_argument(
        "--failed", action="store_true", help="only calls that failed (refused params too)"
    )
    audit.add_argument("--limit", type=int, default=50, metavar="N", help="at most N (default 50)")
    audit.add_argument("--cursor", type=int, metavar="C", help="the next page after cursor C")
    audit.add_argument(
        "-v", "--verbose", action="store_true", help="also each failed call's error message"
    )
