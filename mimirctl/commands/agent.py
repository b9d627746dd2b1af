"""``mimirctl agent``: the agent kinds sessions can use; and ``stop``,
``resume`` and ``logs``: a session's agent process."""

from __future__ import annotations

import argparse
import os
from typing import Any, Final

from mimirctl import render
from mimirctl.client import Client
from mimirctl.commands import EXIT_OK, add_command, add_group, emit
from mimirctl.stream import emit_json

#: Statuses in which a session's agent process is up (or coming up).
_AGENT_UP: Final = frozenset({"starting", "idle", "running", "awaiting_permission"})


def _registry_name(registry: str | None, date: str | None) -> str:
    if registry == "snapshot":
        return "Mimir's registry snapshot" + (f" of {date}" if date else "")
    return registry or "a registry"


def _where(a: dict[str, Any]) -> str:
    if a["source"] == "installed":
        when = (a.get("installed_at") or "")[:10]
        return f"installed {when} from {_registry_name(a.get('registry'), a.get('registry_date'))}"
    return str(a["source"])


def _command(a: dict[str, Any]) -> str:
    # An installed agent's command is a long path in the data dir: PATH shows it whole.
    return os.path.basename(a["command"]) if a["source"] == "installed" else str(a["command"])


def cmd_agent_ls(client: Client, args: argparse.Namespace) -> int:
    result = client.call("agent.list")

    def human(r: dict[str, Any]) -> str:
        agents = r["agents"]
        text = render.table(
            ["NAME", "FOUND", "VERSION", "FROM", "COMMAND", "PATH"],
            [
                [
                    a["name"],
                    "yes" if a["found"] else "no",
                    a.get("version") or "-",
                    _where(a),
                    " ".join([_command(a), *a["args"]]),
                    a["path"] or "-",
                ]
                for a in agents
            ],
        )
        missing = [a for a in agents if not a["found"]]
        hints = [f"get {a['name']}: {a['install']}" for a in missing if a.get("install")]
        hints += [
            f"{a['name']}: install it yourself, or set [agents.{a['name']}] command in the "
            "config file"
            for a in missing
            if not a.get("install")
        ]
        return "\n".join([text, *hints]) if hints else text

    emit(args, result, human)
    return EXIT_OK


def _installed_line(r: dict[str, Any]) -> str:
    a = r["agent"]
    was = f" (was {r['previous_version']})" if r.get("previous_version") else ""
    return (
        f"installed {a['id']} {a['version']}{was} ({a['distribution']} {a['package']}, "
        f"licence {a['license'] or 'not given'}) from "
        f"{_registry_name(a['registry'], a['registry_date'])}\n"
        f"sessions use it as --agent {a['kind']}: {a['path']}"
    )


def _registry(value: str | None) -> str | None:
    if value is None or value.startswith(("http://", "https://")):
        return value
    return os.path.abspath(value)  # the daemon reads it: never relative to its cwd


def cmd_agent_install(client: Client, args: argparse.Namespace) -> int:
    client.set_timeout(None)  # npm and downloads take minutes
    params: dict[str, Any] = {"name": args.name}
    if args.version:
        params["version"] = args.version
    if args.registry:
        params["registry"] = _registry(args.registry)
    if not args.json:
        render.say(f"installing {args.name} (this can take minutes) ...")
    emit(args, client.call("agent.install", params), _installed_line)
    return EXIT_OK


def cmd_agent_update(client: Client, args: argparse.Namespace) -> int:
    client.set_timeout(None)
    params: dict[str, Any] = {}
    if args.name:
        params["name"] = args.name
    if args.registry:
        params["registry"] = _registry(args.registry)

    def human(r: dict[str, Any]) -> str:
        lines = [_installed_line(u) for u in r["updated"]]
        if r["unchanged"]:
            lines.append(f"up to date: {', '.join(r['unchanged'])}")
        return "\n".join(lines) or "no agent installed (mimirctl agent install NAME)"

    emit(args, client.call("agent.update", params), human)
    return EXIT_OK


def cmd_agent_remove(client: Client, args: argparse.Namespace) -> int:
    result = client.call("agent.remove", {"name": args.name})
    emit(args, result, lambda r: f"removed {r['id']} {r['version']} ({r['path']})")
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
    install = add_command(
        agent,
        common,
        "install",
        cmd_agent_install,
        "install an agent from the ACP Registry into Mimir's data dir",
    )
    install.add_argument("name", metavar="NAME", help="the agent's registry id or kind")
    install.add_argument("--version", help="a version other than the registry's (npm, PyPI)")
    install.add_argument(
        "--registry", metavar="FILE|URL", help="a registry file or URL (default: the snapshot)"
    )
    update = add_command(
        agent,
        common,
        "update",
        cmd_agent_update,
        "install the registry's version of installed agents where it is newer",
    )
    update.add_argument("name", metavar="NAME", nargs="?", help="one agent (default: all)")
    update.add_argument("--registry", metavar="FILE|URL", help="a registry file or URL")
    remove = add_command(
        agent, common, "remove", cmd_agent_remove, "remove an agent Mimir installed"
    )
    remove.add_argument("name", metavar="NAME")
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
