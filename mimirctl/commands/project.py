"""``mimirctl project``: the directories Mimir works in."""

from __future__ import annotations

import argparse
import os
from typing import Any

from mimirctl import render
from mimirctl.client import Client
from mimirctl.commands import EXIT_OK, UsageError, add_command, add_group, emit


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


def cmd_project_add(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"path": os.path.abspath(os.path.expanduser(args.path))}
    if args.name is not None:
        params["name"] = args.name
    if args.description is not None:
        params["description"] = args.description
    if args.config is not None:
        params["config"] = args.config
    project = client.call("project.add", params)
    emit(
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

    emit(args, result, human)
    return EXIT_OK


def cmd_project_show(client: Client, args: argparse.Namespace) -> int:
    emit(args, client.call("project.get", {"project": args.project}), _project_fields)
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
    emit(args, client.call("project.update", params), _project_fields)
    return EXIT_OK


def cmd_project_archive(client: Client, args: argparse.Namespace) -> int:
    archived = not args.undo
    project = client.call("project.update", {"project": args.project, "archived": archived})
    emit(args, project, lambda p: f"{'archived' if archived else 'unarchived'} project {p['name']}")
    return EXIT_OK


def cmd_project_rm(client: Client, args: argparse.Namespace) -> int:
    removed = client.call("project.remove", {"project": args.project, "force": args.force})

    def human(r: dict[str, Any]) -> str:
        extra = f" and {r['sessions_removed']} session(s)" if r["sessions_removed"] else ""
        return f"removed project {r['name']}{extra} (files on disk untouched)"

    emit(args, removed, human)
    return EXIT_OK


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    project = add_group(commands, common, "project", "manage projects")

    add = add_command(project, common, "add", cmd_project_add, "register a directory")
    add.add_argument(
        "path", help="the directory (a git repository's root is found from any subdirectory)"
    )
    add.add_argument("--name", help="unique name (default: the directory's name)")
    add.add_argument("--description")
    add.add_argument("--config", metavar="JSON", help="config overrides, a JSON object")

    ls = add_command(project, common, "ls", cmd_project_ls, "list projects")
    ls.add_argument("--all", "-a", action="store_true", help="include archived projects")

    show = add_command(project, common, "show", cmd_project_show, "show one project")
    show.add_argument("project", help="id or name")

    update = add_command(project, common, "update", cmd_project_update, "change a project")
    update.add_argument("project", help="id or name")
    update.add_argument("--name")
    update.add_argument("--description")
    update.add_argument("--config", metavar="JSON", help="replace config overrides (JSON object)")

    archive = add_command(
        project,
        common,
        "archive",
        cmd_project_archive,
        "hide a project from 'ls' (keeps everything)",
    )
    archive.add_argument("project", help="id or name")
    archive.add_argument("--undo", action="store_true", help="unarchive")

    rm = add_command(
        project, common, "rm", cmd_project_rm, "unregister a project (files are not touched)"
    )
    rm.add_argument("project", help="id or name")
    rm.add_argument(
        "--force", action="store_true", help="also remove the project's sessions from the database"
    )
