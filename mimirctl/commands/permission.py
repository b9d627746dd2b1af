"""``mimirctl permission``: agents' permission requests, listed and answered."""

from __future__ import annotations

import argparse
from typing import Any

from mimirctl import render
from mimirctl.client import Client
from mimirctl.commands import EXIT_OK, add_command, add_group
from mimirctl.stream import emit_json


def cmd_permission_ls(client: Client, args: argparse.Namespace) -> int:
    params = {"session": args.session} if args.session else {}
    pending = client.call("permission.list", params)["permissions"]
    if args.json:
        emit_json({"permissions": pending})
        return EXIT_OK
    if not pending:
        render.say("no pending permission requests")
        return EXIT_OK
    rows = []
    for p in pending:
        tool = render.as_dict(p.get("tool_call"))
        kinds = ",".join(
            str(o.get("kind")) for o in render.as_list(p.get("options")) if isinstance(o, dict)
        )
        rows.append([p["id"], render.short_id(p["session_id"]), tool.get("title") or "", kinds])
    render.say(render.table(["ID", "SESSION", "TOOL", "OPTIONS"], rows))
    return EXIT_OK


def cmd_permission_answer(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"permission": args.permission}
    if args.option:
        params["option_id"] = args.option
    elif args.permission_command == "allow":
        params["kind"] = "allow_always" if args.always else "allow_once"
    else:
        params["kind"] = "reject_always" if args.always else "reject_once"
    if args.always or args.project:
        params["remember"] = "project" if args.project else "session"
    result = client.call("permission.respond", params)
    if args.json:
        emit_json(result)
    else:
        render.say(f"permission {result['permission']}: {result['option_id']}")
        if "remember" in params:
            render.say(f"remembered in the {params['remember']}'s tool_policy")
    return EXIT_OK


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    permission = add_group(commands, common, "permission", "answer agents' permission requests")
    ls = add_command(permission, common, "ls", cmd_permission_ls, "pending requests")
    ls.add_argument("--session", "-s", help="only this session's")
    for name, summary in (("allow", "allow a request"), ("deny", "reject a request")):
        answer = add_command(permission, common, name, cmd_permission_answer, summary)
        answer.add_argument("permission", metavar="ID", help="the request's id")
        answer.add_argument(
            "--always",
            action="store_true",
            help="the *_always option, and a rule in the session's config that answers the "
            "same request so from now on",
        )
        answer.add_argument(
            "--project",
            action="store_true",
            help="remember the answer as a rule in the project's config instead",
        )
        answer.add_argument("--option", metavar="OPTION_ID", help="this exact option")
