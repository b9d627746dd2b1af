"""``mimirctl template ls``: the prompt templates a session or project can use."""

from __future__ import annotations

import argparse
from typing import Any

from mimirctl import render
from mimirctl.client import Client
from mimirctl.commands import EXIT_OK, UsageError, add_command, add_group, emit


def cmd_template_ls(client: Client, args: argparse.Namespace) -> int:
    if args.session is not None and args.project is not None:
        raise UsageError("give --session or --project, not both")
    params: dict[str, Any] = {}
    if args.session is not None:
        params["session"] = args.session
    if args.project is not None:
        params["project"] = args.project
    result = client.call("template.list", params)

    def human(r: dict[str, Any]) -> str:
        builtins = ", ".join(f"{{{name}}}" for name in r["builtins"])
        if not r["templates"]:
            return (
                "no prompt templates (set them under prompt_templates in the config file, "
                f"or a project's or session's config); built-ins: {builtins}"
            )
        rows = [
            [
                t["name"],
                t["source"],
                " ".join(f"{{{p}}}" for p in t["placeholders"]) or "-",
                f"unusable: {t['problem']}"
                if t.get("problem")
                else render.truncate(render.first_line(t["text"]), 50),
            ]
            for t in r["templates"]
        ]
        table = render.table(["NAME", "SOURCE", "PLACEHOLDERS", "TEXT"], rows)
        return f"{table}\nbuilt-ins (no --var needed): {builtins}"

    emit(args, result, human)
    return EXIT_OK


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    template = add_group(commands, common, "template", "prompt templates")
    ls = add_command(
        template,
        common,
        "ls",
        cmd_template_ls,
        "the prompt templates a session or project can use, and where each was set",
    )
    ls.add_argument("--session", "-s", metavar="ID", help="those this session sees (every layer)")
    ls.add_argument("--project", "-p", help="those this project's sessions see")
