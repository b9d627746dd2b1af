"""``mimirctl``: control mimird from the command line.

Exit codes (stable, for scripts):

  0  success
  1  the daemon answered with an error not listed below, or the connection broke;
     also ``session new`` when the session was made but its setup command failed
     (the session is kept with status "failed"; the failure is printed on stderr)
  2  bad usage or invalid params (an ambiguous session id prefix among them)
  3  mimird is not running
  4  not found
  5  already exists
  6  invalid state (e.g. a project that still has sessions)

A session is named by its id or by any unique prefix of it (at least 4
characters), as ``session ls`` shows them. Times (``--since``, ``--until``) are
ISO 8601 dates or times in UTC (``2026-01-31``, ``2026-01-31T10:00Z``; an explicit
offset is converted) or an age: ``30m``, ``2h``, ``3d``, ``1w`` ago.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
from collections.abc import Callable
from typing import Any, Final

from mimirctl import render, stream
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


#: The shortest session id prefix mimird accepts.
MIN_ID_PREFIX: Final = 4
#: Rows fetched per call when a command follows every page.
PAGE_SIZE: Final = 1000
#: Characters of a title (or a task's first line) shown in ``session ls``.
TITLE_WIDTH: Final = 40
#: ``mimird.wire.types.Timestamp``'s pattern (that module imports msgspec: too heavy here).
TIMESTAMP: Final = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?Z?)?$")
RELATIVE_TIME: Final = re.compile(r"^(\d{1,9})([smhdw])$")
UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


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


# ---- sessions -------------------------------------------------------------------


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
    pairs += [
        ("task", s["task"] or "-"),
        ("config", s["config"]),
        ("events", s["last_seq"]),
        ("created", s["created_at"]),
        ("updated", s["updated_at"]),
    ]
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

    _emit(args, session, human)
    if session["status"] == "failed":
        print(
            f"mimirctl: session {session['id']} was created but its setup failed: "
            f"{session['failure']}",
            file=sys.stderr,
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
    result = client.call("session.list", params)
    if args.all_pages:
        sessions = list(result["sessions"])
        while result["next_cursor"]:
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

    _emit(args, result, human)
    if result["next_cursor"] and not args.json:
        print(
            f"more: mimirctl session ls --cursor {result['next_cursor']} "
            "(same filters), or --all-pages",
            file=sys.stderr,
        )
    return EXIT_OK


def cmd_session_show(client: Client, args: argparse.Namespace) -> int:
    _emit(args, client.call("session.get", {"session": args.session}), _session_fields)
    return EXIT_OK


def cmd_session_diff(client: Client, args: argparse.Namespace) -> int:
    diff = client.call("session.diff", {"session": args.session, "patch": args.patch})
    if args.patch and not args.json:
        # Raw, byte for byte what git wrote: `mimirctl session diff X --patch | git apply`.
        sys.stdout.write(diff.get("patch") or "")
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

    _emit(args, diff, human)
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

    _emit(args, config, human)
    return EXIT_OK


def cmd_session_update(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"session": args.session}
    for key in ("title", "task", "config"):
        if (value := getattr(args, key)) is not None:
            params[key] = value
    if len(params) == 1:
        raise UsageError("nothing to update: give --title, --task or --config")
    _emit(args, client.call("session.update", params), _session_fields)
    return EXIT_OK


def cmd_session_archive(client: Client, args: argparse.Namespace) -> int:
    session = client.call("session.archive", {"session": args.session})
    _emit(
        args,
        session,
        lambda s: (
            f"archived session {s['id']} (workspace kept; "
            f"'mimirctl session restore {s['id']}' brings it back)"
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

    _emit(args, removed, human)
    return EXIT_OK


def cmd_session_restore(client: Client, args: argparse.Namespace) -> int:
    session = client.call("session.restore", {"session": args.session})
    _emit(
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
    _emit(
        args,
        session,
        lambda s: f"session {s['id']}: workspace {_workspace_text(s['workspace'])}",
    )
    return EXIT_OK


def cmd_session_log(client: Client, args: argparse.Namespace) -> int:
    events: list[dict[str, Any]] = []
    after = args.after
    while args.limit is None or len(events) < args.limit:
        wanted = PAGE_SIZE if args.limit is None else min(PAGE_SIZE, args.limit - len(events))
        page = client.call(
            "session.events", {"session": args.session, "after_seq": after, "limit": wanted}
        )["events"]
        events += page
        if len(page) < wanted:
            break
        after = page[-1]["seq"]

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

    _emit(args, {"events": events}, human)
    return EXIT_OK


# ---- worktrees ------------------------------------------------------------------


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

    _emit(args, result, human)
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

    _emit(args, result, human)
    return EXIT_OK


# ---- search -------------------------------------------------------------------


def highlight_marks(stream: Any = None) -> tuple[str, str]:
    """Bold on a terminal (unless NO_COLOR is set), brackets in a pipe or a file."""
    stream = sys.stdout if stream is None else stream
    if stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb":
        return render.BOLD
    return render.BRACKETS


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
        marks = highlight_marks()
        rows = [[render.short_id(h["session_id"]), str(h["seq"]), h["kind"]] for h in r["hits"]]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        return "\n".join(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
            + "  "
            + render.snippet(hit["snippet"], marks)
            for row, hit in zip(rows, r["hits"], strict=True)
        )

    _emit(args, result, human)
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
        epilog="Sessions are named by their id or any unique prefix of it (4+ characters). "
        "Exit codes: 0 ok, 1 error (also: 'session new' whose setup failed), 2 usage/invalid "
        "params (also: an ambiguous id prefix), 3 mimird not running, 4 not found, "
        "5 already exists, 6 invalid state.",
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

    _add_session_commands(commands, common)
    _add_worktree_commands(commands, common)
    _add_agent_commands(commands, common)
    _add_db_commands(commands, common)
    stream.add_commands(commands, common)
    _add_search_command(commands, common)
    return parser


def _add_search_command(commands: Any, common: argparse.ArgumentParser) -> None:
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


def _add_session_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    session = commands.add_parser(
        "session",
        parents=[common],
        help="manage sessions (each in its own git worktree and branch)",
        description="A session is named by its id or any unique prefix of it (4+ characters).",
    )
    session_commands = session.add_subparsers(
        dest="session_command", metavar="COMMAND", required=True
    )

    def command(
        name: str, run: Command, summary: str, *, ref: bool = True
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = session_commands.add_parser(
            name, parents=[common], help=summary, description=summary[0].upper() + summary[1:] + "."
        )
        if ref:
            sub.add_argument("session", metavar="ID", help="session id or unique prefix (4+)")
        sub.set_defaults(run=run)
        return sub

    new = command("new", cmd_session_new, "create a session", ref=False)
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

    ls = command("ls", cmd_session_ls, "list sessions, newest first", ref=False)
    ls.add_argument("--project", "-p", help="only this project's (id or name)")
    ls.add_argument(
        "--status",
        "-s",
        action="append",
        metavar="S",
        help="only sessions in this status (repeat, or separate with commas)",
    )
    ls.add_argument("--agent", help="only sessions of this agent kind")
    ls.add_argument("--text", help="only sessions whose title or task contains this")
    ls.add_argument(
        "--since", type=time_arg, metavar="TIME", help="updated after TIME (e.g. 2h, 2026-01-31)"
    )
    ls.add_argument("--until", type=time_arg, metavar="TIME", help="updated before TIME")
    ls.add_argument("--created-since", type=time_arg, metavar="TIME", help="created after TIME")
    ls.add_argument("--created-until", type=time_arg, metavar="TIME", help="created before TIME")
    ls.add_argument(
        "--all", "-a", action="store_true", help="include archived and deleted sessions"
    )
    ls.add_argument("--limit", type=int, default=100, metavar="N", help="sessions per page")
    ls.add_argument("--cursor", metavar="C", help="continue after this page (next_cursor)")
    ls.add_argument("--all-pages", action="store_true", help="follow every page")

    command("show", cmd_session_show, "show a session, its workspace and git status")

    diff = command("diff", cmd_session_diff, "what a session changed against its base")
    diff.add_argument(
        "--patch", action="store_true", help="print the patch itself (for 'git apply')"
    )

    config = command("config", cmd_session_config, "a session's effective configuration")
    config.add_argument("--explain", action="store_true", help="show where each value came from")

    update = command("update", cmd_session_update, "change a session's title, task or config")
    update.add_argument("--title")
    update.add_argument("--task")
    update.add_argument("--config", metavar="JSON", help="replace config overrides (JSON object)")

    command("archive", cmd_session_archive, "archive a session (hidden from ls; workspace kept)")

    rm = command(
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

    command("restore", cmd_session_restore, "bring back a deleted or archived session")
    command("repair", cmd_session_repair, "adopt a moved worktree, re-create a missing one")

    log = command("log", cmd_session_log, "a session's journal, one event a line")
    log.add_argument("--after", type=int, default=0, metavar="SEQ", help="events after this seq")
    log.add_argument("--limit", type=int, metavar="N", help="at most N events")


def _add_worktree_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    worktree = commands.add_parser("worktree", parents=[common], help="inspect and prune worktrees")
    worktree_commands = worktree.add_subparsers(
        dest="worktree_command", metavar="COMMAND", required=True
    )
    ls = worktree_commands.add_parser(
        "ls",
        parents=[common],
        help="every worktree Mimir made, its state checked now, and orphan directories",
    )
    ls.add_argument("--project", "-p", help="only this project's (id or name)")
    ls.set_defaults(run=cmd_worktree_ls)

    prune = worktree_commands.add_parser(
        "prune",
        parents=[common],
        help="remove worktrees no session needs (each snapshotted first)",
    )
    prune.add_argument("--project", "-p", help="only this project's (id or name)")
    prune.add_argument("--dry-run", "-n", action="store_true", help="only say what would go")
    prune.set_defaults(run=cmd_worktree_prune)


def _add_agent_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    agent = commands.add_parser("agent", parents=[common], help="the agents sessions can use")
    agent_commands = agent.add_subparsers(dest="agent_command", metavar="COMMAND", required=True)
    ls = agent_commands.add_parser(
        "ls", parents=[common], help="every agent kind, its command, and whether it is installed"
    )
    ls.set_defaults(run=cmd_agent_ls)


def _add_db_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    db = commands.add_parser("db", parents=[common], help="the daemon's database")
    db_commands = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    check = db_commands.add_parser(
        "check", parents=[common], help="check the database's integrity (exits 1 on a problem)"
    )
    check.add_argument(
        "--full", action="store_true", help="SQLite's integrity_check (slower, also indexes)"
    )
    check.set_defaults(run=cmd_db_check)
    backup = db_commands.add_parser(
        "backup", parents=[common], help="copy the database while mimird runs"
    )
    backup.add_argument(
        "path", nargs="?", help="where to (must not exist; default: the state dir's backups/)"
    )
    backup.set_defaults(run=cmd_db_backup)


def cmd_db_check(client: Client, args: argparse.Namespace) -> int:
    client.set_timeout(None)  # a full check of a big database takes a while
    result = client.call("db.check", {"full": args.full})

    def human(r: dict[str, Any]) -> str:
        if r["ok"]:
            return f"database ok ({r['kind']} check, {r['duration_ms']:.0f} ms)"
        return "\n".join([f"database has problems ({r['kind']} check):", *r["problems"]])

    _emit(args, result, human)
    return EXIT_OK if result["ok"] else EXIT_ERROR


def cmd_db_backup(client: Client, args: argparse.Namespace) -> int:
    client.set_timeout(None)
    params = {} if args.path is None else {"path": os.path.abspath(args.path)}
    result = client.call("db.backup", params)

    def human(r: dict[str, Any]) -> str:
        encrypted = ", encrypted" if r["encrypted"] else ""
        return f"backed up to {r['path']} ({render.human_bytes(r['bytes'])}{encrypted})"

    _emit(args, result, human)
    return EXIT_OK


def cmd_agent_ls(client: Client, args: argparse.Namespace) -> int:
    result = client.call("agent.list")

    def human(r: dict[str, Any]) -> str:
        return render.table(
            ["NAME", "FOUND", "COMMAND", "SOURCE", "PATH"],
            [
                [
                    a["name"],
                    "yes" if a["found"] else "no",
                    " ".join([a["command"], *a["args"]]),
                    a["source"],
                    a["path"] or "-",
                ]
                for a in r["agents"]
            ],
        )

    _emit(args, result, human)
    return EXIT_OK


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
        session = getattr(args, "session", None)
        if session is not None and len(session) < MIN_ID_PREFIX:
            raise UsageError(
                f"session id {args.session!r} is too short: give the id or a unique prefix of "
                f"at least {MIN_ID_PREFIX} characters (as 'mimirctl session ls' shows them)"
            )
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
