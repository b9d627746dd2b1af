"""``mimirctl search``: full-text search over every session's journal."""

from __future__ import annotations

import argparse
from typing import Any

from mimirctl import render
from mimirctl.client import Client
from mimirctl.commands import EXIT_OK, emit


def cmd_search(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"query": " ".join(args.query), "limit": args.limit}
    if args.project is not None:
        params["project"] = args.project
    if args.session is not None:
        params["session"] = args.session
    result = client.call("search", params)

    def human(r: dict[str, Any]) -> str:
        if not r["hits"]:
            return "no matches"
        marks = render.highlight_marks()
        rows = [
            [
                render.visible(str(cell))
                for cell in (render.short_id(h["session_id"]), h["seq"], h["kind"])
            ]
            for h in r["hits"]
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        return "\n".join(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
            + "  "
            + render.snippet(hit["snippet"], marks)
            for row, hit in zip(rows, r["hits"], strict=True)
        )

    emit(args, result, human, styled=True)  # the cells and the excerpts are made visible
    return EXIT_OK


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    search = commands.add_parser(
        "search",
        parents=[common],
        help="search the journal of every session",
        description="Full-text search over every session's journal, best matches first. "
        'Words must all match; "quoted phrases" (quote them for the shell too) match as '
        "phrases; word* matches a prefix; any other character is literal text. Each hit: "
        "session id, seq, kind, and an excerpt with the matches in bold (in [brackets] when "
        "the output is not a terminal).",
    )
    search.add_argument("query", nargs="+", metavar="QUERY", help="what to search for")
    search.add_argument("--project", "-p", help="only this project's sessions (id or name)")
    search.add_argument("--session", "-s", metavar="ID", help="only this session (id or prefix)")
    search.add_argument(
        "--limit", "-n", type=int, default=20, metavar="N", help="at most N hits (1-200)"
    )
    search.set_defaults(run=cmd_search)
