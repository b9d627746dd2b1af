"""A conversation the agent could not load is handed over: gemini-cli advertises
``loadSession`` but its ``session/load`` fails; other agents cannot load at all. The
reason is journaled (``agent_started``'s ``load_error``), and the next prompt is
preceded, once, by the session's earlier conversation from the journal, bounded by
``handoff_max_bytes``."""

from __future__ import annotations

from typing import Any

import pytest

from mimird.agents import handoff as handoff_module
from tests.support.agents import Client, agent_world, event_data, received
from tests.support.helpers import DaemonDirs

SECRET = "hunter2-very-secret-token"
#: What gemini-cli 0.61 answers session/load with when it has no such session.
GEMINI_LOAD_ERROR = {
    "code": -32603,
    "message": "Internal error",
    "data": {"details": "No previous sessions found for this project", "token": SECRET},
}
GEMINI = {
    "results": {
        "initialize": {
            "protocolVersion": 1,
            "agentCapabilities": {
                "loadSession": True,
                "promptCapabilities": {"embeddedContext": True},
            },
        },
    },
    "errors": {"session/load": GEMINI_LOAD_ERROR},
    "prompts": [[{"do": "say", "text": "answer one"}], [{"do": "say", "text": "answer two"}]],
}
#: An agent that cannot load sessions, nor take embedded resources.
NO_LOAD = {"prompts": [[{"do": "say", "text": "answer one"}]]}
CONFIG = {"env": {"TOKEN": {"value": SECRET, "secret": True}}}


def _prompts(world: Any) -> list[list[dict[str, Any]]]:
    """The content of every session/prompt the agent received, in order."""
    return [m["params"]["prompt"] for m in received(world) if m.get("method") == "session/prompt"]


async def _session(c: Client, world: Any, config: dict[str, Any] | None = None) -> str:
    params = {"project": world.project, "config": {**CONFIG, **(config or {})}}
    sid: str = (await c.call("session.create", params))["id"]
    return sid


async def _prompt(c: Client, sid: str, text: str) -> None:
    await c.call("session.prompt", {"session": sid, "text": text})


async def test_a_failed_load_is_journaled_and_the_conversation_handed_over_once(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, GEMINI) as world, Client.connect(world.daemon.socket) as c:
        sid = await _session(c, world)
        await _prompt(c, sid, "question one")
        await c.call("session.stop", {"session": sid})
        await c.call("session.resume", {"session": sid})
        assert any(m.get("method") == "session/load" for m in received(world))
        started = (await event_data(c, sid, "agent_started"))[-1]
        assert started["loaded"] is False
        assert started["load_session_id"] == "sess-1"
        error = started["load_error"]
        assert "No previous sessions found for this project" in error
        assert "Internal error (code -32603)" in error
        assert SECRET not in error
        assert '"token": "***"' in error, "masked"
        await _prompt(c, sid, "question two")
        await _prompt(c, sid, "question three")

        prompts = _prompts(world)
        assert prompts[0] == [{"type": "text", "text": "question one"}]
        handoff, asked = prompts[1]
        assert asked == {"type": "text", "text": "question two"}
        assert handoff["type"] == "resource"
        resource = handoff["resource"]
        assert resource["uri"] == f"mimir://session/{sid}/history"
        assert handoff["_meta"] == {"mimir": {"handoff": resource["uri"]}}
        text = resource["text"]
        assert "No previous sessions found" in text
        assert SECRET not in text
        assert text.index("question one") < text.index("answer one")
        assert "question two" not in text, "the new prompt is not history"
        assert prompts[2] == [{"type": "text", "text": "question three"}], "only once"

        sent = await event_data(c, sid, "handoff_sent")
        assert sent == [
            {"bytes": len(text.encode()), "turns": 1, "cut": False, "reason": "load_failed"}
        ]
        # The journal's prompt is the user's: the handoff is not journaled as said by them.
        journaled = await event_data(c, sid, "prompt")
        assert [p["content"] for p in journaled][1] == [{"type": "text", "text": "question two"}]


async def test_an_agent_that_cannot_load_gets_the_conversation_as_text(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, NO_LOAD) as world, Client.connect(world.daemon.socket) as c:
        sid = await _session(c, world)
        await _prompt(c, sid, "question one")
        await c.call("session.stop", {"session": sid})
        await _prompt(c, sid, "question two")  # starts the agent again
        assert not any(m.get("method") == "session/load" for m in received(world))
        started = (await event_data(c, sid, "agent_started"))[-1]
        assert "load_error" not in started
        handoff, asked = _prompts(world)[1]
        # No embeddedContext advertised: a text block, as ACP requires.
        assert handoff["type"] == "text"
        assert "the agent cannot load sessions" in handoff["text"]
        assert handoff["text"].index("question one") < handoff["text"].index("answer one")
        assert asked == {"type": "text", "text": "question two"}
        sent = await event_data(c, sid, "handoff_sent")
        assert [(s["turns"], s["cut"], s["reason"]) for s in sent] == [(1, False, "cannot_load")]


async def test_the_handoff_keeps_the_newest_turns_within_handoff_max_bytes(
    dirs: DaemonDirs,
) -> None:
    turns = [f"turn {i} " + "x" * 300 for i in range(6)]
    scenario = {"prompts": [[{"do": "echo"}]] * 6}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        sid = await _session(c, world, {"handoff_max_bytes": 2500})
        for text in turns[:5]:
            await _prompt(c, sid, text)
        await c.call("session.stop", {"session": sid})
        await _prompt(c, sid, turns[5])
        handoff = _prompts(world)[5][0]["text"]
        assert len(handoff.encode()) <= 2500
        assert "left out to fit handoff_max_bytes" in handoff
        assert handoff.endswith(f"### User\n{turns[4]}\n\n### Agent\n{turns[4]}\n"), "newest kept"
        assert "turn 0" not in handoff, "the oldest are left out"
        (sent,) = await event_data(c, sid, "handoff_sent")
        assert sent["cut"] is True
        assert sent["bytes"] == len(handoff.encode())
        assert 2 <= sent["turns"] == handoff.count("### User\n") < 5, "some, not all, kept"


async def test_handoff_max_bytes_0_sends_nothing(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, NO_LOAD) as world, Client.connect(world.daemon.socket) as c:
        sid = await _session(c, world, {"handoff_max_bytes": 0})
        await _prompt(c, sid, "question one")
        await c.call("session.stop", {"session": sid})
        await _prompt(c, sid, "question two")
        assert _prompts(world)[1] == [{"type": "text", "text": "question two"}]
        assert await event_data(c, sid, "handoff_sent") == []


async def test_a_newest_turn_longer_than_the_bound_is_sent_as_its_end(dirs: DaemonDirs) -> None:
    long = "start " + "y" * 3000 + " the end"
    scenario = {"prompts": [[{"do": "say", "text": long}]]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        sid = await _session(c, world, {"handoff_max_bytes": 1024})
        await _prompt(c, sid, "question one")
        await c.call("session.stop", {"session": sid})
        await _prompt(c, sid, "question two")
        handoff = _prompts(world)[1][0]["text"]
        assert len(handoff.encode()) <= 1024
        assert handoff.endswith("y the end\n")
        assert "start" not in handoff
        assert "question one" not in handoff
        (sent,) = await event_data(c, sid, "handoff_sent")
        assert (sent["turns"], sent["cut"]) == (0, True)


async def test_an_agent_restarted_after_a_crash_gets_the_conversation(dirs: DaemonDirs) -> None:
    # It cannot load: after its crash (a restart, not a resume) it starts empty.
    crash_once = dirs.root / "crashed"
    scenario = {
        "prompts": [
            [{"do": "say", "text": "answer one"}],
            [{"do": "crash", "once": str(crash_once)}],
        ]
    }
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        sid = await _session(c, world)
        await _prompt(c, sid, "question one")
        error = await c.error("session.prompt", {"session": sid, "text": "question two"})
        assert "exited during the turn" in error["message"]
        await c.until("session.get", {"session": sid}, lambda s: s["status"] == "idle")
        await _prompt(c, sid, "question three")
        handoff, asked = _prompts(world)[-1]
        assert asked == {"type": "text", "text": "question three"}
        assert handoff["text"].index("question one") < handoff["text"].index("question two")
        (sent,) = await event_data(c, sid, "handoff_sent")
        assert (sent["turns"], sent["reason"]) == (2, "cannot_load")


async def test_the_journal_is_read_no_further_than_max_events_read(
    dirs: DaemonDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Thoughts are read but not sent: the events read are bounded on their own.
    monkeypatch.setattr(handoff_module, "MAX_EVENTS_READ", 4)
    thought = {"sessionUpdate": "agent_thought_chunk", "content": {"type": "text", "text": "hm"}}
    turn = [{"do": "update", "update": thought}, {"do": "say", "text": "ok"}]
    async with (
        agent_world(dirs, {"prompts": [turn] * 4}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        sid = await _session(c, world)
        for i in range(3):
            await _prompt(c, sid, f"question {i}")
        await c.call("session.stop", {"session": sid})
        await _prompt(c, sid, "question 3")
        handoff_text = _prompts(world)[3][0]["text"]
        assert handoff_text.endswith("### User\nquestion 2\n\n### Agent\nok\n")
        assert "question 1" not in handoff_text
        (sent,) = await event_data(c, sid, "handoff_sent")
        assert (sent["turns"], sent["cut"]) == (1, True)
