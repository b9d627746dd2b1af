"""Every message Mimir sends to an agent follows the official ACP v1 schema
(tests/support/acp_schema.py): real daemon scenarios with the scripted fake agent,
which records every line it reads (``record``) and every message it writes
(``record_sent``, to pair the answers it gets with its requests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import pytest
import trio

from tests.support.acp_schema import (
    AcpSchemaError,
    Transcript,
    validate_agent_message,
    validate_client_message,
)
from tests.support.agents import AgentWorld, Client, agent_world, new_session, received
from tests.support.helpers import DaemonDirs

ACP_SESSION: Final = "sess-1"
#: The agent says it can load sessions, so a restart sends session/load.
LOADING: Final = {
    "initialize": {
        "protocolVersion": 1,
        "agentCapabilities": {
            "loadSession": True,
            "promptCapabilities": {"image": True, "embeddedContext": True},
        },
    },
    "session/load": None,
}


def _request(request_id: str, method: str, wait: bool = True, **params: Any) -> dict[str, Any]:
    return {
        "do": "request",
        "id": request_id,
        "method": method,
        "params": {"sessionId": ACP_SESSION, **params},
        "wait": wait,
    }


def _permission(request_id: str, wait: bool = True) -> dict[str, Any]:
    return _request(
        request_id,
        "session/request_permission",
        wait,
        toolCall={"toolCallId": f"call-{request_id}", "title": "Write a.txt", "kind": "edit"},
        options=[
            {"optionId": "once", "name": "Allow", "kind": "allow_once"},
            {"optionId": "always", "name": "Always", "kind": "allow_always"},
            {"optionId": "reject", "name": "Reject", "kind": "reject_once"},
        ],
    )


def _terminal(request_id: str, method: str, terminal: str = "term") -> dict[str, Any]:
    return _request(request_id, f"terminal/{method}", terminalId=f"${terminal}")


#: A turn in which the agent asks for everything a client answers.
EVERY_REQUEST: Final = [
    _permission("perm-allow"),
    _permission("perm-reject"),
    _request("write", "fs/write_text_file", path="notes/a.txt", content="hello\n"),
    _request("read", "fs/read_text_file", path="notes/a.txt", line=1, limit=10),
    _request("read-outside", "fs/read_text_file", path="/etc/hostname"),
    _request("read-missing", "fs/read_text_file", path="nope.txt"),
    _request(
        "term",
        "terminal/create",
        command="sh",
        args=["-c", "echo out; exit 3"],
        env=[{"name": "GREETING", "value": "hi"}],
        outputByteLimit=4096,
    ),
    _terminal("wait", "wait_for_exit"),
    _terminal("output", "output"),
    _terminal("kill", "kill"),
    _terminal("release", "release"),
    # One killed before it exits: its exit status is a signal.
    _request("sleeper", "terminal/create", command="sleep", args=["30"]),
    _terminal("kill-sleeper", "kill", "sleeper"),
    _terminal("wait-sleeper", "wait_for_exit", "sleeper"),
    _terminal("output-sleeper", "output", "sleeper"),
    _terminal("release-sleeper", "release", "sleeper"),
    _request("term-outside", "terminal/create", command="true", cwd="/"),
    _request("withdrawn", "fs/read_text_file", wait=False, path="notes/a.txt")
    | {"cancel_after_s": 0},
    _request("unknown", "_vendor/thing", x=1),
    {"do": "await", "ids": ["withdrawn"]},
]
#: A turn the client cancels while a permission request waits for an answer.
CANCELLED: Final = [
    _permission("perm-pending", wait=False),
    {"do": "wait_cancel"},
    {"do": "stop_reason", "value": "cancelled"},
]


def _check_conversation(world: AgentWorld, sent: Path) -> list[str]:
    """Validate every message the agent received; returns their methods (or, for
    answers, ``answer <method>``)."""
    asked: dict[str, str] = {}
    for line in sent.read_text().splitlines():
        message = json.loads(line)
        if "method" in message and "id" in message:
            asked[json.dumps(message["id"])] = message["method"]
    seen = []
    for message in received(world):
        request_method = None
        if "method" not in message:
            request_method = asked.get(json.dumps(message.get("id")))
            assert request_method is not None, f"an answer to no request: {message}"
        validate_client_message(message, request_method=request_method)
        seen.append(message.get("method") or f"answer {request_method}")
    return seen


async def _respond(c: Client, session_id: str, kind: str) -> None:
    """Answer the session's next parked permission request."""
    listed = await c.until(
        "permission.list", {"session": session_id}, lambda r: bool(r["permissions"])
    )
    await c.call("permission.respond", {"permission": listed["permissions"][0]["id"], "kind": kind})


async def test_every_message_mimir_sends_an_agent_follows_the_acp_v1_schema(
    dirs: DaemonDirs,
) -> None:
    sent = dirs.root / "sent.jsonl"
    scenario = {
        "record_sent": str(sent),
        "results": LOADING,
        "models": ["small", "large"],
        "modes": ["ask", "code"],
        "prompts": [EVERY_REQUEST, CANCELLED],
    }
    prompt = [
        {"type": "text", "text": "Look at "},
        {"type": "resource_link", "uri": "file:///w/login.py", "name": "login.py"},
        {
            "type": "resource",
            "resource": {"uri": "file:///w/a.py", "text": "x = 1\n", "mimeType": "text/x-python"},
        },
        {"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png"},
    ]
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.call, "session.prompt", {"session": session_id, "content": prompt})
            await _respond(c, session_id, "allow_once")
            await _respond(c, session_id, "reject_once")
        await c.call("session.set_model", {"session": session_id, "model": "large"})
        await c.call("session.set_mode", {"session": session_id, "mode": "code"})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.call, "session.prompt", {"session": session_id, "text": "wait"})
            await c.until(
                "permission.list", {"session": session_id}, lambda r: bool(r["permissions"])
            )
            await c.call("session.cancel", {"session": session_id})
        await c.call("session.stop", {"session": session_id})
        # The next prompt starts the agent again (a new process: its turns count from
        # the first again, so it plays an empty one), which loads its session.
        played = json.loads(world.scenario_path.read_text())
        world.scenario_path.write_text(json.dumps({**played, "prompts": []}))
        await c.call("session.prompt", {"session": session_id, "text": "again"})
        seen = _check_conversation(world, sent)
    for expected in (
        "initialize",
        "session/new",
        "session/load",
        "session/prompt",
        "session/cancel",
        "session/set_model",
        "session/set_mode",
        "answer session/request_permission",
        "answer fs/write_text_file",
        "answer fs/read_text_file",
        "answer terminal/create",
        "answer terminal/output",
        "answer terminal/wait_for_exit",
        "answer terminal/kill",
        "answer terminal/release",
        "answer _vendor/thing",
    ):
        assert expected in seen, f"{expected} was never sent: {seen}"
    outcomes = [
        m["result"]["outcome"]
        for m in received(world)
        if isinstance(m.get("result"), dict) and "outcome" in m["result"]
    ]
    assert {"outcome": "cancelled"} in outcomes
    assert {"outcome": "selected", "optionId": "reject"} in outcomes
    answers = {m["id"]: m for m in received(world) if "method" not in m}
    assert answers["wait-sleeper"]["result"]["signal"] == "SIGTERM"
    assert "error" in answers["term-outside"]


async def test_set_config_option_follows_the_acp_v1_schema(dirs: DaemonDirs) -> None:
    sent = dirs.root / "sent.jsonl"
    scenario = {
        "record_sent": str(sent),
        "config_options": True,
        "models": ["small", "large"],
        "modes": ["ask", "code"],
    }
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "hi"})
        await c.call("session.set_model", {"session": session_id, "model": "large"})
        await c.call("session.set_mode", {"session": session_id, "mode": "code"})
        seen = _check_conversation(world, sent)
    assert seen.count("session/set_config_option") == 2


def test_the_check_catches_a_message_an_agent_would_refuse() -> None:
    """The test above cannot pass vacuously: a wrong message fails it."""
    bad_prompt = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "session/prompt",
        "params": {"sessionId": ACP_SESSION, "prompt": "hi"},
    }
    with pytest.raises(AcpSchemaError, match="prompt"):
        validate_client_message(bad_prompt)
    bad_answer = {"jsonrpc": "2.0", "id": 2, "result": {"outcome": "allow"}}
    with pytest.raises(AcpSchemaError, match="outcome"):
        validate_client_message(bad_answer, request_method="session/request_permission")
    with pytest.raises(AcpSchemaError, match="not a message the client sends"):
        validate_client_message({"jsonrpc": "2.0", "method": "session/update", "params": {}})
    # A transcript pairs each answer with its request, both ways.
    transcript = Transcript()
    prompt = {"sessionId": ACP_SESSION, "prompt": [{"type": "text", "text": "hi"}]}
    transcript.feed(
        "client", {"jsonrpc": "2.0", "id": 7, "method": "session/prompt", "params": prompt}
    )
    with pytest.raises(AcpSchemaError, match="stopReason"):
        transcript.feed("agent", {"jsonrpc": "2.0", "id": 7, "result": {"stopReason": "done"}})


BAD_BLOCKS: Final = [
    ({"type": "txt", "text": "hi"}, "content[0].type"),
    ({"type": "text"}, "content[0].text"),
    ({"type": "text", "text": 3}, "content[0].text"),
    ({"type": "image", "data": "AAAA"}, "content[0].mimeType"),
    ({"type": "resource_link", "uri": "file:///a"}, "content[0].name"),
    ({"type": "resource", "resource": {"text": "x"}}, "content[0].resource"),
    (
        {"type": "resource", "resource": {"uri": "u", "text": "x", "blob": "y"}},
        "content[0].resource",
    ),
]


@pytest.mark.parametrize(("block", "field"), BAD_BLOCKS, ids=[f for _, f in BAD_BLOCKS])
async def test_a_prompt_block_an_agent_could_not_read_is_refused_before_it_is_sent(
    dirs: DaemonDirs, block: dict[str, Any], field: str
) -> None:
    """Regression: session.prompt checked only that each block had a 'type', and sent
    the agent blocks that are not ACP (it refused or misread them)."""
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        error = await c.error("session.prompt", {"session": session_id, "content": [block]})
        assert error["code"] == -32602
        assert error["data"]["field"] == field
        stored = await c.call("session.events", {"session": session_id, "kind": "prompt"})
        assert stored["events"] == []
        assert all(m.get("method") != "session/prompt" for m in received(world))


GATED: Final[list[tuple[dict[str, Any], dict[str, bool]]]] = [
    ({"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png"}, {}),
    ({"type": "audio", "data": "UklGRg==", "mimeType": "audio/wav"}, {"image": True}),
    ({"type": "resource", "resource": {"uri": "file:///a", "text": "x"}}, {"image": True}),
]


@pytest.mark.parametrize(("block", "accepted"), GATED, ids=[b["type"] for b, _ in GATED])
async def test_a_block_the_agents_prompt_capabilities_exclude_is_not_sent(
    dirs: DaemonDirs, block: dict[str, Any], accepted: dict[str, bool]
) -> None:
    """Regression: mimird sent image, audio and embedded resource blocks to agents that
    did not advertise promptCapabilities for them, which ACP forbids."""
    init = {"protocolVersion": 1, "agentCapabilities": {"promptCapabilities": accepted}}
    scenario = {"results": {"initialize": init}}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        content = [{"type": "text", "text": "see"}, block]
        error = await c.error("session.prompt", {"session": session_id, "content": content})
        assert error["code"] == -32602
        assert error["data"]["field"] == "content[1].type"
        assert "promptCapabilities" in error["message"]
        stored = await c.call("session.events", {"session": session_id, "kind": "prompt"})
        assert stored["events"] == []
        assert all(m.get("method") != "session/prompt" for m in received(world))
        # The session is usable: a prompt the agent accepts goes through.
        done = await c.call("session.prompt", {"session": session_id, "content": content[:1]})
        assert done["stop_reason"] == "end_turn"


def test_legacy_models_and_unstable_usage_pass_only_in_their_shape() -> None:
    models = {"currentModelId": "a", "availableModels": [{"modelId": "a", "name": "A"}]}
    new = {"jsonrpc": "2.0", "id": 1, "result": {"sessionId": "s", "models": models}}
    validate_agent_message(new, request_method="session/new")
    with pytest.raises(AcpSchemaError, match="models"):
        validate_agent_message(new, request_method="session/new", legacy=False)
    broken = {**new, "result": {"sessionId": "s", "models": {"currentModelId": 3}}}
    with pytest.raises(AcpSchemaError, match="models"):
        validate_agent_message(broken, request_method="session/new")
    usage = {"totalTokens": 3, "inputTokens": 2, "outputTokens": 1}
    done = {"jsonrpc": "2.0", "id": 2, "result": {"stopReason": "end_turn", "usage": usage}}
    validate_agent_message(done, request_method="session/prompt")
    stray = {**done, "result": {"stopReason": "end_turn", "tokens": 3}}
    with pytest.raises(AcpSchemaError, match="tokens"):
        validate_agent_message(stray, request_method="session/prompt")
