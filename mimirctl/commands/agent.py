"""``mimirctl agent``: the agent kinds sessions can use; and ``stop``,
``resume`` and ``logs``: a session's agent process."""

from __future__ import annotations

import argparse
from typing import Any, Final

from mimirctl import render
from mimirctl.client import Client
from mimirctl.commands import EXIT_OK, add_command, add_group, emit
from mimirctl.stream import emit_json

#: Statuses in which a session's agent process is up (or coming up).
_AGENT_UP: Final = frozenset({"starting", "idle", "running", "awaiting_permission"})


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
    emit_json(session) if args.json else render.say(_session_line(session))
    return EXIT_OK


def _events(client: Client, session_id: str, **params: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = client.call(
        "session.events", {"session": session_id, "kind": "agent_started", **params}
    )["events"]
    return events


def conversation_line(client: Client, before: dict[str, Any], after: dict[str, Any]) -> str:
    """Whether the agent that ``session.resume`` started loaded its conversation
    (ACP ``session/load``) or started a fresh one, and why, as the journal tells:
    the ``agent_started`` event after ``before`` (the session as it was), the one
    before it, and the capabilities the agent announced (``agent_state``)."""
    started = _events(client, after["id"], after_seq=before["last_seq"], limit=1)
    if not started:
        # A budget_exceeded session whose agent stayed up is idle again without a start.
        if before["status"] in _AGENT_UP or after["status"] == "idle":
            return "agent: it was running already (its conversation goes on)"
        return "agent: not started"
    data = started[0]["data"]
    if data.get("loaded"):
        return f"agent: conversation loaded (session/load of {data.get('acp_session_id')})"
    earlier = _events(
        client, after["id"], before_seq=before["last_seq"] + 1, newest_first=True, limit=1
    )
    if not earlier or not earlier[0]["data"].get("acp_session_id"):
        return "agent: started fresh (session/new): it had no conversation to load yet"
    capabilities = (after.get("agent_state") or {}).get("capabilities") or {}
    if not capabilities.get("loadSession"):
        return (
            "agent: started fresh (session/new): the agent cannot load its earlier "
            "conversation (it does not offer session/load)"
        )
    why = data.get("load_error") or "mimird's log says why (agent_session_load_failed)"
    previous = earlier[0]["data"]["acp_session_id"]
    return f"agent: started fresh (session/new): session/load of {previous} failed: {why}"


def cmd_resume(client: Client, args: argparse.Namespace) -> int:
    client.set_timeout(None)
    before = client.call("session.get", {"session": args.session})
    session = client.call("session.resume", {"session": before["id"]})
    if args.json:
        emit_json(session)
    else:
        render.say(_session_line(session))
        render.say(conversation_line(client, before, session))
    return EXIT_OK


def cmd_logs(client: Client, args: argparse.Namespace) -> int:
    result = client.call("session.logs", {"session": args.session, "lines": args.lines})
    if args.json:
        emit_json(result)
    else:
        for line in result["lines"]:
            render.say(render.visible(line))  # one line of the log: a CR in it is shown
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
