"""``mimirctl``: control mimird from the command line.

Exit codes (stable, for scripts):

  0  success
  1  the daemon answered with an error not listed below, or the connection broke
  2  bad usage or invalid params
  3  mimird is not running
  4  not found
  5  already exists
  6  invalid state (e.g. a project that still has sessions)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any, Final

from mimirctl import render
from mimirctl.client import (
    Client,
    ClientError,
    DaemonNotRunning,
    RpcError,
    resolve_socket,
)
from mimird.wire.codes import PROTOCOL_VERSION, ErrorCode

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_NOT_RUNNING: Final = 3
EXIT_CODES: Final = {
    ErrorCode.INVALID_PARAMS: EXIT_USAGE,
    ErrorCode.NOT_FOUND: 4,
    ErrorCode.ALREADY_EXISTS: 5,
    ErrorCode.INVALID_STATE: 6,
}


class UsageError(Exception):
    pass


Command = Callable[[Client, argparse.Namespace], int]


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--config is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError('--config must be a JSON object, e.g. \'{"agent": "opencode"}\'')
    return value


def _emit(args: argparse.Namespace, value: Any, human: Callable[[Any], str]) -> None:
    print(render.json_text(value) if args.json else human(value))


def _project_fields(p: dict[str, Any]) -> str:
    return render.fields(
        [
            ("name", p["name"]),
            ("id", p["id"]),
            ("path", p["path"]),
            ("type", p["type"]),
            ("git", p["is_git"]),
            ("description", p["description"] or "-"),
            ("config", p["config"]),
            ("archived", p["archived"]),
            ("sessions", p["sessions"]),
            ("created", p["created_at"]),
            ("updated", p["updated_at"]),
        ]
    )


# ---- commands -------------------------------------------------------------------


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    status = client.call("daemon.status")

    def human(s: dict[str, Any]) -> str:
        c = s["counts"]
        text = render.fields(
            [
                ("mimird", f"{s['version']} (protocol {s['protocol_version']}), pid {s['pid']}"),
                ("uptime", render.duration(s["uptime_s"])),
                (
                    "socket",
                    s["paths"]["socket"] + (" (socket-activated)" if s["socket_activated"] else ""),
                ),
                (
                    "database",
                    f"{s['paths']['database']} ({render.human_bytes(s['database_size_bytes'])}, "
                    f"schema {s['schema_revision']}"
                    f"{', encrypted' if s['database_encrypted'] else ''})",
                ),
                ("config", s["paths"]["config"] or "(none: embedded defaults)"),
                ("projects", f"{c['projects']} ({c['archived_projects']} archived)"),
                ("sessions", c["sessions"]),
                ("connections", c["connections"]),
            ]
        )
        if s["protocol_version"] != PROTOCOL_VERSION:
            text += (
                f"\nwarning: mimird speaks protocol {s['protocol_version']}, this mimirctl "
                f"{PROTOCOL_VERSION}: restart mimird after upgrading"
            )
        return text

    _emit(args, status, human)
    return EXIT_OK


def cmd_project_add(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"path": os.path.abspath(os.path.expanduser(args.path))}
    if args.name is not None:
        params["name"] = args.name
    if args.description is not None:
        params["description"] = args.description
    if args.config is not None:
        params["config"] = args.config
    project = client.call("project.add", params)
    _emit(
        args,
        project,
        lambda p: f"added project {p['name']} ({p['type']}) at {p['path']}\nid: {p['id']}",
    )
    return EXIT_OK


def cmd_project_ls(client: Client, args: argparse.Namespace) -> int:
    result = client.call("project.list", {"include_archived": args.all})

    def human(r: dict[str, Any]) -> str:
        projects = r["projects"]
        if not projects:
            return "no projects" + ("" if args.all else " (use --all to include archived ones)")
        return render.table(
            ["NAME", "TYPE", "SESSIONS", "PATH", "ID"] + (["ARCHIVED"] if args.all else []),
            [
                [p["name"], p["type"], p["sessions"], p["path"], p["id"]]
                + (["yes" if p["archived"] else ""] if args.all else [])
                for p in projects
            ],
        )

    _emit(args, result, human)
    return EXIT_OK


def cmd_project_show(client: Client, args: argparse.Namespace) -> int:
    _emit(args, client.call("project.get", {"project": args.project}), _project_fields)
    return EXIT_OK


def cmd_project_update(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"project": args.project}
    if args.name is not None:
        params["name"] = args.name
    if args.description is not None:
        params["description"] = args.description
    if args.config is not None:
        params["config"] = args.config
    if len(params) == 1:
        raise UsageError("nothing to update: give --name, --description or --config")
    _emit(args, client.call("project.update", params), _project_fields)
    return EXIT_OK


def cmd_project_archive(client: Client, args: argparse.Namespace) -> int:
    archived = not args.undo
    project = client.call("project.update", {"project": args.project, "archived": archived})
    _emit(
        args, project, lambda p: f"{'archived' if archived else 'unarchived'} project {p['name']}"
    )
    return EXIT_OK


def cmd_project_rm(client: Client, args: argparse.Namespace) -> int:
    removed = client.call("project.remove", {"project": args.project, "force": args.force})

    def human(r: dict[str, Any]) -> str:
        extra = f" and {r['sessions_removed']} session(s)" if r["sessions_removed"] else ""
        return f"removed project {r['name']}{extra} (files on disk untouched)"

    _emit(args, removed, human)
    return EXIT_OK


# ---- argument parsing -----------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print the result as JSON"
    )
    common.add_argument(
        "--socket",
        default=argparse.SUPPRESS,
        help="mimird's socket (default: $MIMIR_SOCKET or the XDG runtime dir)",
    )

    parser = argparse.ArgumentParser(
        prog="mimirctl",
        description="Control mimird, the Mimir daemon.",
        parents=[common],
        epilog="Exit codes: 0 ok, 1 error, 2 usage/invalid params, 3 mimird not running, "
        "4 not found, 5 already exists, 6 invalid state.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    status = commands.add_parser("status", parents=[common], help="show the daemon's status")
    status.set_defaults(run=cmd_status)

    project = commands.add_parser("project", parents=[common], help="manage projects")
    project_commands = project.add_subparsers(
        dest="project_command", metavar="COMMAND", required=True
    )

    add = project_commands.add_parser("add", parents=[common], help="register a directory")
    add.add_argument(
        "path", help="the directory (a git repository's root is found from any subdirectory)"
    )
    add.add_argument("--name", help="unique name (default: the directory's name)")
    add.add_argument("--description")
    add.add_argument("--config", metavar="JSON", help="config overrides, a JSON object")
    add.set_defaults(run=cmd_project_add)

    ls = project_commands.add_parser("ls", parents=[common], help="list projects")
    ls.add_argument("--all", "-a", action="store_true", help="include archived projects")
    ls.set_defaults(run=cmd_project_ls)

    show = project_commands.add_parser("show", parents=[common], help="show one project")
    show.add_argument("project", help="id or name")
    show.set_defaults(run=cmd_project_show)

    update = project_commands.add_parser("update", parents=[common], help="change a project")
    update.add_argument("project", help="id or name")
    update.add_argument("--name")
    update.add_argument("--description")
    update.add_argument("--config", metavar="JSON", help="replace config overrides (JSON object)")
    update.set_defaults(run=cmd_project_update)

    archive = project_commands.add_parser(
        "archive", parents=[common], help="hide a project from 'ls' (keeps everything)"
    )
    archive.add_argument("project", help="id or name")
    archive.add_argument("--undo", action="store_true", help="unarchive")
    archive.set_defaults(run=cmd_project_archive)

    rm = project_commands.add_parser(
        "rm", parents=[common], help="unregister a project (files are not touched)"
    )
    rm.add_argument("project", help="id or name")
    rm.add_argument(
        "--force", action="store_true", help="also remove the project's sessions from the database"
    )
    rm.set_defaults(run=cmd_project_rm)
    return parser


def _report(error: RpcError) -> int:
    message = error.message
    if error.code == ErrorCode.METHOD_NOT_FOUND:
        message += " (mimird may be older than this mimirctl: restart it)"
    print(f"mimirctl: {message}", file=sys.stderr)
    try:
        return EXIT_CODES.get(ErrorCode(error.code), EXIT_ERROR)
    except ValueError:
        return EXIT_ERROR


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.json = getattr(args, "json", False)
    run: Command = args.run
    try:
        # Check what can be checked before bothering the daemon.
        if getattr(args, "config", None) is not None:
            args.config = _json_object(args.config)
        with Client(resolve_socket(getattr(args, "socket", None))) as client:
            return run(client, args)
    except DaemonNotRunning as exc:
        print(f"mimirctl: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except UsageError as exc:
        print(f"mimirctl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RpcError as exc:
        return _report(exc)
    except ClientError as exc:
        print(f"mimirctl: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # stdout closed early (e.g. piped into head)
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
