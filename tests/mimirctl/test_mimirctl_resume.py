"""``mimirctl resume`` says, besides the session's status, whether the agent's
conversation was loaded (ACP ``session/load``) or started fresh, and why: read
from what the daemon journals when the agent starts. A real daemon; the agent is
the scripted fake ACP agent."""

from __future__ import annotations

import json
from typing import Any, Final

from tests.mimirctl.test_mimirctl_attach import mimirctl
from tests.support.agents import Client, agent_world, new_session
from tests.support.helpers import DaemonDirs

CAN_LOAD: Final = {"protocolVersion": 1, "agentCapabilities": {"loadSession": True}}


async def resumed(dirs: DaemonDirs, scenario: dict[str, Any], *, prompted: bool = True) -> str:
    """What ``mimirctl resume`` prints for a session (after one turn and a stop,
    when ``prompted``) whose agent plays ``scenario``."""
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        if prompted:
            await c.call("session.prompt", {"session": session_id, "text": "one"})
            await c.call("session.stop", {"session": session_id})
        done = await mimirctl(dirs, "resume", session_id)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.decode().splitlines()
    assert first == f"session {session_id}: idle"
    return second


async def test_resume_says_the_conversation_was_loaded(dirs: DaemonDirs) -> None:
    line = await resumed(dirs, {"results": {"initialize": CAN_LOAD, "session/load": None}})
    assert line == "agent: conversation loaded (session/load of sess-1)"


async def test_resume_says_why_an_agent_that_cannot_load_started_fresh(dirs: DaemonDirs) -> None:
    line = await resumed(dirs, {})
    assert line.startswith("agent: started fresh (session/new)")
    assert "does not offer session/load" in line


async def test_resume_says_that_a_load_failed(dirs: DaemonDirs) -> None:
    # The agent offers session/load but answers it with an error (method not found).
    line = await resumed(dirs, {"results": {"initialize": CAN_LOAD}})
    assert line.startswith("agent: started fresh (session/new): session/load of sess-1 failed")
    # The agent's own words, as journaled (agent_started's load_error).
    assert line.endswith("failed: method not found: session/load (code -32601)")


async def test_resume_of_a_session_never_started_says_there_was_nothing_to_load(
    dirs: DaemonDirs,
) -> None:
    line = await resumed(dirs, {"results": {"initialize": CAN_LOAD}}, prompted=False)
    assert line == "agent: started fresh (session/new): it had no conversation to load yet"


async def test_resume_of_a_running_agent_says_it_goes_on(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "one"})
        done = await mimirctl(dirs, "resume", session_id)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines()[1] == (
        "agent: it was running already (its conversation goes on)"
    )


async def test_resume_json_is_the_wire_result(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        done = await mimirctl(dirs, "resume", session_id, "--json")
        session = await c.call("session.get", {"session": session_id})
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert (printed["id"], printed["status"]) == (session["id"], "idle")
