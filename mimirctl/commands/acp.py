"""``mimirctl acp``: be an ACP agent for an editor, on stdin/stdout (see
:mod:`mimirctl.acp`). It makes its own connections to mimird, so that a daemon that
is not running is an ACP error the editor shows, not an exit before any ACP."""

from __future__ import annotations

import argparse

from mimirctl.commands import add_command

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see mimirctl.cli)
if TYPE_CHECKING:
    from typing import Any


def run_acp(socket_path: str, args: argparse.Namespace) -> int:
    import sys

    from mimirctl.acp import handlers
    from mimirctl.acp.loop import Bridge

    bridge = Bridge(socket_path, args, handlers, sys.stdin.fileno(), sys.stdout.fileno())
    return bridge.run()


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    sub = add_command(
        commands,
        common,
        "acp",
        None,
        "speak ACP on stdin/stdout as an agent for an editor, relaying to mimird "
        "(see docs/editors.md)",
    )
    sub.add_argument("--agent", metavar="KIND", help="agent kind (default: the project's)")
    sub.add_argument(
        "--project", metavar="P", help="the project (default: the one holding the editor's cwd)"
    )
    sub.add_argument(
        "--workspace",
        choices=("in_place", "worktree"),
        default="in_place",
        help="in_place (default: the editor sees the edits) or worktree (isolated work)",
    )
    sub.add_argument(
        "--session",
        metavar="ID",
        help="an existing session that the editor's session/new attaches to (history replayed)",
    )
    sub.set_defaults(run=None, standalone=run_acp)
