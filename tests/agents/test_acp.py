"""AcpConnection against a real scripted agent subprocess (tests/support/fake_acp_agent.py)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest
import trio

from mimird.agents.acp import (
    INVALID_REQUEST,
    PARSE_ERROR,
    REQUEST_CANCELLED,
    AcpConnection,
    AcpConnectionClosed,
    AcpError,
    MethodNotFound,
)
from mimird.wire.jsonrpc import envelope
from tests.support.acp_schema import validate_client_message

FAKE_AGENT: Final = Path(__file__).parents[1] / "support" / "fake_acp_agent.py"
DEADLINE_S: Final = 20.0
STOP_GRACE_S: Final = 2.0
NEW_SESSION: Final = {"cwd": "/tmp", "mcpServers": []}
PROMPT: Final = {"sessionId": "sess-1", "prompt": [{"type": "text", "text": "hi"}]}


@dataclass
class RecordingHandler:
    notifications: list[tuple[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, Any]] = field(default_factory=list)
    protocol_errors: list[tuple[str, str]] = field(default_factory=list)
    responders: dict[str, Callable[[Any], Awaitable[Any]]] = field(default_factory=dict)

    async def on_request(self, method: str, params: Any) -> Any:
        self.requests.append((method, params))
        responder = self.responders.get(method)
        if responder is None:
            raise MethodNotFound(method)
        return await responder(params)

    async def on_notification(self, method: str, params: Any) -> None:
        self.notifications.append((method, params))

    async def on_protocol_error(self, line_preview: str, reason: str) -> None:
        self.protocol_errors.append((line_preview, reason))

    def texts(self) -> list[str]:
        return [
            params["update"]["content"]["text"]
            for method, params in self.notifications
            if method == "session/update"
            and params["update"]["sessionUpdate"] == "agent_message_chunk"
        ]


@dataclass
class RunningAgent:
    connection: AcpConnection
    process: trio.Process
    record: Path

    def received(self) -> list[dict[str, Any]]:
        """Every message the agent read from its stdin."""
        lines = self.record.read_text().splitlines() if self.record.exists() else []
        return [json.loads(line) for line in lines]

    async def finish(self) -> None:
        """Close the agent's stdin and wait until it exited and all its output was handled."""
        assert self.process.stdin is not None
        await self.process.stdin.aclose()
        await self.connection.wait_closed()
        await self.process.wait()

    async def start_session(self) -> None:
        await self.connection.request("initialize", {"protocolVersion": 1})
        await self.connection.request("session/new", NEW_SESSION)


@contextlib.asynccontextmanager
async def running_agent(
    tmp_path: Path, scenario: dict[str, Any], handler: RecordingHandler, **options: Any
) -> AsyncIterator[RunningAgent]:
    record = tmp_path / "received.jsonl"
    scenario_path = tmp_path / "scenario.json"
    scenario_path.write_text(json.dumps({"record": str(record), **scenario}))
    process = await trio.lowlevel.open_process(
        [sys.executable, str(FAKE_AGENT), str(scenario_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdin is not None
        with trio.fail_after(DEADLINE_S):
            async with AcpConnection.open(process.stdout, process.stdin, handler, **options) as c:
                yield RunningAgent(c, process, record)
    finally:
        with trio.move_on_after(STOP_GRACE_S * 2, shield=True):
            assert process.stdin is not None
            await process.stdin.aclose()
            with trio.move_on_after(STOP_GRACE_S):
                await process.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


def prompt_steps(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"before": {"session/prompt": list(steps)}}


async def test_prompt_turn_streams_updates_in_order(tmp_path: Path) -> None:
    handler = RecordingHandler()
    scenario = prompt_steps({"do": "chunks", "count": 5, "text": "c"}, {"do": "tool_call"})
    async with running_agent(tmp_path, scenario, handler) as agent:
        init = await agent.connection.request("initialize", {"protocolVersion": 1})
        assert init["protocolVersion"] == 1
        assert await agent.connection.request("session/new", NEW_SESSION) == {"sessionId": "sess-1"}
        assert await agent.connection.request("session/prompt", PROMPT) == {
            "stopReason": "end_turn"
        }
    kinds = [params["update"]["sessionUpdate"] for _, params in handler.notifications]
    assert kinds == ["agent_message_chunk"] * 5 + ["tool_call", "tool_call_update"]
    assert handler.texts() == [f"c{i}" for i in range(5)]
    assert handler.protocol_errors == []


async def test_updates_before_session_new_answer_and_after_stop_reason_are_delivered(
    tmp_path: Path,
) -> None:
    handler = RecordingHandler()
    scenario = {
        "before": {"session/new": [{"do": "chunks", "count": 2, "text": "early"}]},
        "after": {"session/prompt": [{"do": "chunks", "count": 1, "text": "late"}]},
    }
    async with running_agent(tmp_path, scenario, handler) as agent:
        await agent.start_session()
        # Wire order is kept: what came before the answer was handled before it returned.
        assert handler.texts() == ["early0", "early1"]
        await agent.connection.request("session/prompt", PROMPT)
        await agent.finish()
    assert handler.texts() == ["early0", "early1", "late0"]


async def test_permission_request_from_agent_is_answered_by_the_handler(tmp_path: Path) -> None:
    handler = RecordingHandler()
    outcome = {"outcome": {"outcome": "selected", "optionId": "allow"}}

    async def allow(params: Any) -> Any:
        assert params["toolCall"]["toolCallId"] == "t1"
        return outcome

    handler.responders["session/request_permission"] = allow
    permission = {"sessionId": "sess-1", "toolCall": {"toolCallId": "t1"}, "options": []}
    scenario = prompt_steps(
        {"do": "request", "method": "session/request_permission", "params": permission}
    )
    async with running_agent(tmp_path, scenario, handler) as agent:
        await agent.start_session()
        await agent.connection.request("session/prompt", PROMPT)
    answers = [m for m in agent.received() if "method" not in m]
    assert answers == [{"jsonrpc": "2.0", "id": 0, "result": outcome}]


async def test_agent_string_ids_are_answered_with_the_same_id(tmp_path: Path) -> None:
    handler = RecordingHandler()
    written: list[Any] = []

    async def write(params: Any) -> None:
        written.append(params)

    handler.responders["fs/write_text_file"] = write
    write_params = {"sessionId": "sess-1", "path": "/tmp/a", "content": "x", "_meta": {"k": 1}}
    scenario = prompt_steps(
        {"do": "request", "id": "w-1", "method": "fs/write_text_file", "params": write_params},
        {"do": "request", "id": "t-2", "method": "terminal/create", "params": {}},
    )
    async with running_agent(tmp_path, scenario, handler) as agent:
        await agent.start_session()
        await agent.connection.request("session/prompt", PROMPT)
    assert written == [write_params]  # unknown fields such as _meta are kept
    answers = {m["id"]: m for m in agent.received() if "method" not in m}
    assert answers["w-1"]["result"] == {}
    assert answers["t-2"]["error"]["code"] == -32601


async def test_empty_results_may_be_an_object_or_null(tmp_path: Path) -> None:
    handler = RecordingHandler()
    scenario: dict[str, Any] = {"results": {"initialize": None, "session/new": {}}}
    async with running_agent(tmp_path, scenario, handler) as agent:
        assert await agent.connection.request("initialize", {"protocolVersion": 1}) is None
        assert await agent.connection.request("session/new", NEW_SESSION) == {}


async def test_error_answer_raises_acp_error(tmp_path: Path) -> None:
    handler = RecordingHandler()
    async with running_agent(tmp_path, {}, handler) as agent:
        with pytest.raises(AcpError) as caught:
            await agent.connection.request("session/load", {"sessionId": "x"})
    assert caught.value.code == -32601
    assert "session/load" in caught.value.message


async def test_oversized_line_is_skipped_with_bounded_memory(tmp_path: Path) -> None:
    handler = RecordingHandler()
    limit = 1024 * 1024
    scenario = prompt_steps(
        {"do": "huge", "bytes": 24 * limit}, {"do": "chunks", "count": 1, "text": "after"}
    )
    tracemalloc.start()
    try:
        async with running_agent(tmp_path, scenario, handler, max_line_bytes=limit) as agent:
            await agent.start_session()
            tracemalloc.reset_peak()
            result = await agent.connection.request("session/prompt", PROMPT)
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result == {"stopReason": "end_turn"}
    assert handler.texts() == ["after0"]
    [(preview, reason)] = handler.protocol_errors
    assert preview.startswith('{"jsonrpc"')
    assert "longer than" in reason
    assert peak < 6 * limit


async def test_an_oversized_request_from_the_agent_is_answered_with_an_error(
    tmp_path: Path,
) -> None:
    """The agent waits for an answer to every request: one skipped for its size
    gets an error under its id (read from the line's start), and the turn goes on."""
    handler = RecordingHandler()
    limit = 256 * 1024
    big = {
        "do": "request",
        "id": "big-1",
        "method": "fs/write_text_file",
        "params": {"sessionId": "sess-1", "path": "a.txt", "content": "x" * (2 * limit)},
    }
    scenario = prompt_steps(big, {"do": "chunks", "count": 1, "text": "after"})
    async with running_agent(tmp_path, scenario, handler, max_line_bytes=limit) as agent:
        await agent.start_session()
        assert await agent.connection.request("session/prompt", PROMPT) == {
            "stopReason": "end_turn"
        }
    assert handler.requests == [], "never handled"
    [answer] = [m for m in agent.received() if m.get("id") == "big-1"]
    assert answer["error"]["code"] == INVALID_REQUEST
    assert "too large" in answer["error"]["message"]
    assert handler.texts() == ["after0"]


async def test_an_oversized_answer_fails_our_request_instead_of_leaving_it_waiting(
    tmp_path: Path,
) -> None:
    handler = RecordingHandler()
    limit = 256 * 1024
    scenario = {"results": {"session/new": {"sessionId": "s", "blob": "x" * (2 * limit)}}}
    async with running_agent(tmp_path, scenario, handler, max_line_bytes=limit) as agent:
        await agent.connection.request("initialize", {"protocolVersion": 1})
        with pytest.raises(AcpError) as caught:
            await agent.connection.request("session/new", NEW_SESSION)
        assert caught.value.code == INVALID_REQUEST
        assert "unreadable" in caught.value.message
        # The connection is still usable.
        assert await agent.connection.request("session/prompt", PROMPT) == {
            "stopReason": "end_turn"
        }


async def test_a_request_that_is_not_json_past_its_method_gets_a_parse_error(
    tmp_path: Path,
) -> None:
    handler = RecordingHandler()
    broken = '{"jsonrpc": "2.0", "id": 7, "method": "fs/read_text_file", "params": {"path": '
    # The agent goes on only once it has the answer to request 7.
    scenario = prompt_steps({"do": "raw", "line": broken}, {"do": "await", "ids": [7]})
    async with running_agent(tmp_path, scenario, handler) as agent:
        await agent.start_session()
        await agent.connection.request("session/prompt", PROMPT)
    [answer] = [m for m in agent.received() if m.get("id") == 7]
    assert answer["error"]["code"] == PARSE_ERROR
    assert handler.requests == []


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        ('{"jsonrpc":"2.0","id":3,"method":"fs/x","params":{"content":"xx', (3, "fs/x")),
        ('  { "method" : "m" , "id" : "a\\"b" , "params"', ('a"b', "m")),
        ('{"jsonrpc":"2.0","id":4,"result":{"a":', (4, None)),
        # An "id" inside params is not the message's; the real one comes too late.
        ('{"method":"m","params":{"id":9,"text":"xx', (None, "m")),
        ('{"id":true,"method":1}', (None, None)),
        ('{"id":null,"method":"m"}', (None, "m")),
        ("[1, 2]", (None, None)),
        ("not json", (None, None)),
        ("", (None, None)),
    ],
)
def test_the_envelope_is_read_from_the_start_of_a_line(
    head: str, expected: tuple[Any, Any]
) -> None:
    assert envelope(head.encode()) == expected


async def test_malformed_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    handler = RecordingHandler()
    scenario = prompt_steps(
        {"do": "raw", "line": "this is not json"},
        {"do": "raw", "line": "[1, 2, 3]"},
        {"do": "raw", "line": '{"jsonrpc": "2.0"}'},
        {"do": "raw", "line": '{"jsonrpc": "2.0", "id": 999, "result": {}}'},
        {"do": "chunks", "count": 1, "text": "fine"},
    )
    async with running_agent(tmp_path, scenario, handler) as agent:
        await agent.start_session()
        assert await agent.connection.request("session/prompt", PROMPT) == {
            "stopReason": "end_turn"
        }
    previews = [preview for preview, _ in handler.protocol_errors]
    assert previews == [
        "this is not json",
        "[1, 2, 3]",
        '{"jsonrpc": "2.0"}',
        '{"jsonrpc": "2.0", "id": 999, "result": {}}',
    ]
    assert handler.texts() == ["fine0"]


async def test_agent_crash_mid_request_fails_the_pending_request(tmp_path: Path) -> None:
    handler = RecordingHandler()
    scenario = prompt_steps({"do": "chunks", "count": 1}, {"do": "crash", "exit_code": 3})
    async with running_agent(tmp_path, scenario, handler) as agent:
        await agent.start_session()
        with pytest.raises(AcpConnectionClosed, match="closed its stdout"):
            await agent.connection.request("session/prompt", PROMPT)
        assert await agent.process.wait() == 3
        assert agent.connection.closed
        with pytest.raises(AcpConnectionClosed):
            await agent.connection.request("session/prompt", PROMPT)
    assert handler.texts() == ["chunk0"]


async def test_cancelling_our_request_sends_cancel_request(tmp_path: Path) -> None:
    handler = RecordingHandler()
    scenario = prompt_steps({"do": "wait_cancel"})
    async with running_agent(tmp_path, scenario, handler) as agent:
        await agent.start_session()
        with trio.move_on_after(0.3) as scope:
            await agent.connection.request("session/prompt", PROMPT)
        assert scope.cancelled_caught
        # Writes keep their order, so once this is written the cancel was too.
        await agent.connection.notify("session/cancel", {"sessionId": "sess-1"})
        await agent.finish()
    prompt_id = next(m["id"] for m in agent.received() if m.get("method") == "session/prompt")
    cancels = [m for m in agent.received() if m.get("method") == "$/cancel_request"]
    assert cancels == [
        {"jsonrpc": "2.0", "method": "$/cancel_request", "params": {"requestId": prompt_id}}
    ]
    validate_client_message(cancels[0])  # ACP v1's CancelRequestNotification
    # The agent's late answer to the cancelled prompt is expected, not a protocol error.
    assert handler.protocol_errors == []


async def test_cancel_request_from_agent_cancels_our_handler(tmp_path: Path) -> None:
    handler = RecordingHandler()
    handler_cancelled = trio.Event()

    async def never_answer(params: Any) -> Any:
        try:
            await trio.sleep_forever()
        finally:
            handler_cancelled.set()

    handler.responders["session/request_permission"] = never_answer
    scenario = prompt_steps(
        {
            "do": "request",
            "id": "p1",
            "method": "session/request_permission",
            "params": {},
            "cancel_after_s": 0.2,
        }
    )
    async with running_agent(tmp_path, scenario, handler) as agent:
        await agent.start_session()
        await agent.connection.request("session/prompt", PROMPT)
        assert handler_cancelled.is_set()
    answers = [m for m in agent.received() if "method" not in m]
    assert [(a["id"], a["error"]["code"]) for a in answers] == [("p1", REQUEST_CANCELLED)]


async def test_leaving_the_block_fails_waiting_requests(tmp_path: Path) -> None:
    handler = RecordingHandler()
    scenario = prompt_steps({"do": "hang"})
    outcome: list[BaseException] = []

    async def prompt(connection: AcpConnection) -> None:
        try:
            await connection.request("session/prompt", PROMPT)
        except AcpConnectionClosed as exc:
            outcome.append(exc)

    async with (
        trio.open_nursery() as nursery,
        running_agent(tmp_path, scenario, handler) as agent,
    ):
        await agent.start_session()
        nursery.start_soon(prompt, agent.connection)
        # Leave only once the agent holds the request (it records what it reads).
        with trio.fail_after(DEADLINE_S):
            methods: list[str] = []
            while "session/prompt" not in methods:  # polled: a file, no event says it grew
                await trio.sleep(0.02)
                methods = [m.get("method", "") for m in agent.received()]
    assert len(outcome) == 1
