"""``mimirctl agent``: the agent kinds sessions can use; and ``stop``,
``resume`` and ``logs``: a session's agent process."""

from __future__ import annotations

import argparse
from typing import Any

from mimirctl import render
from mimirctl.client import Client
from mimirctl.commands import EXIT_OK, add_command, add_group, emit
from mimirctl.stream import emit_json


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

    emit(args, result, human)
    return EXIT_OK


def _session_line(s: dict[str, Any]) -> str:
    line = f"session {s['id']}: {s['status']}"
    if s.get("failure") and s["status"] == "failed":
        line += f"\n{s['failure']}"
    return line


def cmd_stop(client: Client, args: argparse.Namespace) -> int:
    client.set_timeout(None)
    session = client.call("session.stop", {"session": args.session})
    emit_json(session) if args.json else print(_session_line(session))
    return EXIT_OK


def cmd_resume(client: Client, args: argparse.Namespace) -> int:
    client.set_timeout(None)
    session = client.call("session.resume", {"session": args.session})
    emit_json(session) if args.json else print(_session_line(session))
    return EXIT_OK


def cmd_logs(client: Client, args: argparse.Namespace) -> int:
    result = client.call("session.logs", {"session": args.session, "lines": args.lines})
    if args.json:
        emit_json(result)
    else:
        for line in result["lines"]:
            print(line)
    return EXIT_OK


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    agent = add_group(commands, common, "agent", "the agents sessions can use")
    add_command(
        agent,
        common,
        "ls",
        cmd_agent_ls,
        "every agent kind, its command, and whether it is installed",
    )
    add_command(
        commands,
        common,
        "stop",
        cmd_stop,
        "stop the session's agent (its whole process group)",
        session=True,
    )
    add_command(
        commands, common, "resume", cmd_resume, "start the session's agent again", session=True
    )
    logs = add_command(
        commands, common, "logs", cmd_logs, "the agent's stderr (last lines)", session=True
    )
    logs.add_argument("--lines", "-n", type=int, default=100, metavar="N")
