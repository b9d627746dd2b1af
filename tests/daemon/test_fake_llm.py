"""The fake OpenAI-compatible server that real agents talk to in the agents tier."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any, Final

import pytest
import trio

from mimird.processes import stop_group
from tests.support.fake_llm import FakeLlm, Text, ToolCall, serve_fake_llm

TOOLS: Final = [{"type": "function", "function": {"name": "write", "parameters": {}}}]
DEADLINE_S: Final = 10.0


def _post(llm: FakeLlm, body: dict[str, Any]) -> tuple[str, bytes]:
    request = urllib.request.Request(
        f"{llm.base_url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=DEADLINE_S) as response:
        return response.headers["Content-Type"], response.read()


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=DEADLINE_S) as response:
        return json.loads(response.read())


def _events(body: bytes) -> list[Any]:
    lines = [line for line in body.decode().split("\n\n") if line]
    assert all(line.startswith("data: ") for line in lines), lines
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]


def _streamed_text(events: list[Any]) -> str:
    return "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])


async def test_text_reply_streams_in_chunks_and_ends_with_done() -> None:
    with serve_fake_llm([Text("hello there, world", chunks=3)]) as llm:
        body = {"model": "m", "stream": True, "messages": [], "tools": TOOLS}
        content_type, raw = await trio.to_thread.run_sync(_post, llm, body)
    assert content_type == "text/event-stream"
    events = _events(raw)
    assert {e["object"] for e in events} == {"chat.completion.chunk"}
    assert _streamed_text(events) == "hello there, world"
    assert len([e for e in events if e["choices"][0]["delta"].get("content")]) == 3
    assert events[-1]["choices"][0]["finish_reason"] == "stop"


async def test_tool_call_then_text_once_the_tool_result_comes_back() -> None:
    call = ToolCall("write", {"filePath": "/w/a.txt", "content": "x"}, call_id="c1")
    with serve_fake_llm([call, Text("done")], side_text="A title") as llm:
        user = {"role": "user", "content": "go"}
        ask: dict[str, Any] = {"model": "m", "stream": True, "messages": [user]}
        title = await trio.to_thread.run_sync(_post, llm, ask)
        first = await trio.to_thread.run_sync(_post, llm, {**ask, "tools": TOOLS})
        result = {"role": "tool", "tool_call_id": "c1", "content": "ok"}
        after = {**ask, "tools": TOOLS, "messages": [user, result]}
        second = await trio.to_thread.run_sync(_post, llm, after)
    assert _streamed_text(_events(title[1])) == "A title"
    events = _events(first[1])
    calls = [e["choices"][0]["delta"]["tool_calls"][0] for e in events if e["choices"][0]["delta"]]
    assert calls[0]["id"] == "c1"
    assert calls[0]["function"]["name"] == "write"
    arguments = "".join(c["function"]["arguments"] for c in calls)
    assert json.loads(arguments) == call.arguments
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert _streamed_text(_events(second[1])) == "done"
    assert [len(r["messages"]) for r in llm.main_requests()] == [1, 2]
    assert len(llm.side_requests()) == 1


async def test_unstreamed_request_gets_one_completion_with_usage() -> None:
    with serve_fake_llm([Text("plain")]) as llm:
        body = {"model": "m", "messages": [], "tools": TOOLS}
        content_type, raw = await trio.to_thread.run_sync(_post, llm, body)
        models = await trio.to_thread.run_sync(_get_json, f"{llm.base_url}/models")
    answer = json.loads(raw)
    assert content_type == "application/json"
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == "plain"
    assert answer["usage"]["total_tokens"] >= 0
    assert [m["id"] for m in models["data"]] == ["m"]


async def test_run_as_a_module_it_prints_its_url_and_stops_when_stdin_closes() -> None:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests.support.fake_llm"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdin is not None
        with trio.fail_after(DEADLINE_S):
            line = b""
            while not line.endswith(b"\n"):
                data = await process.stdout.receive_some(1024)
                assert data, f"exited before printing its URL: {line!r}"
                line += data
            url = line.decode().strip()
            models = await trio.to_thread.run_sync(_get_json, f"{url}/models")
            assert models["object"] == "list"
            await process.stdin.aclose()
            assert await process.wait() == 0
    finally:
        await stop_group(process)


# ---- Anthropic Messages (claude-agent-acp) ---------------------------------------

ANTHROPIC_TOOLS: Final = [{"name": "Write", "input_schema": {"type": "object"}}]


def _post_path(llm: FakeLlm, path: str, body: dict[str, Any]) -> tuple[str, bytes]:
    """POST ``body`` to ``path`` under the server's root (``/v1/messages``, ``/v1/responses``)."""
    request = urllib.request.Request(
        f"{llm.anthropic_base_url}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=DEADLINE_S) as response:
        return response.headers["Content-Type"], response.read()


def _named_events(body: bytes) -> list[dict[str, Any]]:
    """The events of a Messages or Responses stream, each checked to be named as its
    ``type``."""
    events = []
    for block in [b for b in body.decode().split("\n\n") if b]:
        name, data = block.split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}", block
        events.append(event)
    return events


def _types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def test_anthropic_text_reply_streams_message_events_in_order() -> None:
    with serve_fake_llm([Text("hello there, world", chunks=3)]) as llm:
        body = {"model": "m", "stream": True, "messages": [], "tools": ANTHROPIC_TOOLS}
        content_type, raw = await trio.to_thread.run_sync(
            _post_path, llm, "/v1/messages?beta=true", body
        )
    assert content_type == "text/event-stream"
    events = _named_events(raw)
    assert _types(events) == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0]["message"]["role"] == "assistant"
    assert events[1]["content_block"] == {"type": "text", "text": ""}
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    assert {d["type"] for d in deltas} == {"text_delta"}
    assert "".join(d["text"] for d in deltas) == "hello there, world"
    assert events[-2]["delta"]["stop_reason"] == "end_turn"
    assert events[-2]["usage"]["output_tokens"] > 0
    assert llm.calls == ["POST /v1/messages?beta=true"]


async def test_anthropic_tool_use_then_text_once_the_tool_result_comes_back() -> None:
    call = ToolCall("Write", {"file_path": "/w/a.txt", "content": "x"}, call_id="toolu_1")
    with serve_fake_llm([call, Text("done")], side_text="A title") as llm:
        user = {"role": "user", "content": "go"}
        ask: dict[str, Any] = {"model": "m", "stream": True, "messages": [user]}
        title = await trio.to_thread.run_sync(_post_path, llm, "/v1/messages", {**ask, "tools": []})
        first = await trio.to_thread.run_sync(
            _post_path, llm, "/v1/messages", {**ask, "tools": ANTHROPIC_TOOLS}
        )
        result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}
        after = {
            **ask,
            "tools": ANTHROPIC_TOOLS,
            "messages": [user, {"role": "user", "content": [result]}],
        }
        second = await trio.to_thread.run_sync(_post_path, llm, "/v1/messages", after)
    titled = _named_events(title[1])
    assert "".join(e["delta"]["text"] for e in titled if e["type"] == "content_block_delta") == (
        "A title"
    )
    events = _named_events(first[1])
    [start] = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert start == {"type": "tool_use", "id": "toolu_1", "name": "Write", "input": {}}
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    assert {d["type"] for d in deltas} == {"input_json_delta"}
    assert json.loads("".join(d["partial_json"] for d in deltas)) == call.arguments
    [stop] = [e["delta"]["stop_reason"] for e in events if e["type"] == "message_delta"]
    assert stop == "tool_use"
    texts = [
        e["delta"]["text"]
        for e in _named_events(second[1])
        if "delta" in e and "text" in e["delta"]
    ]
    assert "".join(texts) == "done"
    assert [len(r["messages"]) for r in llm.main_requests()] == [1, 2]
    assert len(llm.side_requests()) == 1


async def test_anthropic_unstreamed_message_token_count_and_unknown_routes() -> None:
    call = ToolCall("Write", {"file_path": "/w/a.txt"}, call_id="toolu_2")
    with serve_fake_llm([call]) as llm:
        body = {
            "model": "m",
            "messages": [{"role": "user", "content": "go"}],
            "tools": ANTHROPIC_TOOLS,
        }
        content_type, raw = await trio.to_thread.run_sync(_post_path, llm, "/v1/messages", body)
        _, counted = await trio.to_thread.run_sync(
            _post_path, llm, "/v1/messages/count_tokens", body
        )
        with pytest.raises(urllib.error.HTTPError) as missing:
            await trio.to_thread.run_sync(_post_path, llm, "/v1/complete", body)
    message = json.loads(raw)
    assert content_type == "application/json"
    assert (message["type"], message["role"], message["stop_reason"]) == (
        "message",
        "assistant",
        "tool_use",
    )
    assert message["content"] == [
        {"type": "tool_use", "id": "toolu_2", "name": "Write", "input": call.arguments}
    ]
    assert message["usage"]["input_tokens"] > 0
    assert json.loads(counted)["input_tokens"] > 0
    assert missing.value.code == 404
    # Token counts are not turns: only the one message took a reply of the script.
    assert len(llm.requests) == 1
    assert llm.calls == [
        "POST /v1/messages",
        "POST /v1/messages/count_tokens",
        "POST /v1/complete",
    ]


# ---- OpenAI Responses (codex-acp) ------------------------------------------------

RESPONSES_TOOLS: Final = [{"type": "function", "name": "exec_command", "parameters": {}}]


async def test_responses_stream_a_function_call_then_text_once_its_output_comes_back() -> None:
    call = ToolCall("exec_command", {"cmd": "git status"}, call_id="call_1")
    with serve_fake_llm([call, Text("clean", chunks=2)]) as llm:
        user = {"type": "message", "role": "user", "content": [{"type": "input_text"}]}
        ask: dict[str, Any] = {"model": "m", "stream": True, "input": [user]}
        first = await trio.to_thread.run_sync(
            _post_path, llm, "/v1/responses", {**ask, "tools": RESPONSES_TOOLS}
        )
        output = {"type": "function_call_output", "call_id": "call_1", "output": "ok"}
        after = {**ask, "tools": RESPONSES_TOOLS, "input": [user, output]}
        second = await trio.to_thread.run_sync(_post_path, llm, "/v1/responses", after)
        plain = await trio.to_thread.run_sync(
            _post_path,
            llm,
            "/v1/responses",
            {"model": "m", "input": [user], "tools": RESPONSES_TOOLS},
        )
    assert first[0] == "text/event-stream"
    events = _named_events(first[1])
    assert [e["type"] for e in (events[0], events[-1])] == [
        "response.created",
        "response.completed",
    ]
    [item] = events[-1]["response"]["output"]
    assert (item["type"], item["name"], item["call_id"]) == (
        "function_call",
        "exec_command",
        "call_1",
    )
    deltas = "".join(
        e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"
    )
    assert json.loads(deltas) == json.loads(item["arguments"]) == call.arguments
    texts = [e["delta"] for e in _named_events(second[1]) if e["type"].endswith("text.delta")]
    assert ("".join(texts), len(texts)) == ("clean", 2)
    answer = json.loads(plain[1])
    assert answer["object"] == "response"
    assert answer["usage"]["total_tokens"] >= 0
    assert [len(r["input"]) for r in llm.main_requests()] == [1, 2, 1]


# ---- Gemini API (Gemini CLI) -----------------------------------------------------

GEMINI_TOOLS: Final = [{"functionDeclarations": [{"name": "run_shell_command"}]}]


def _data_events(body: bytes) -> list[dict[str, Any]]:
    """The ``data:`` objects of a stream with neither ``event:`` lines nor ``[DONE]``."""
    lines = [line for line in body.decode().split("\n\n") if line]
    assert all(line.startswith("data: ") for line in lines), lines
    return [json.loads(line.removeprefix("data: ")) for line in lines]


async def test_gemini_streams_a_function_call_then_text_once_its_response_comes_back() -> None:
    call = ToolCall("run_shell_command", {"command": "ls"})
    with serve_fake_llm([call, Text("listed", chunks=2), Text("whole")]) as llm:
        assert f"{llm.gemini_base_url}/v1" == llm.base_url  # the client adds /v1beta
        stream = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        user = {"role": "user", "parts": [{"text": "list"}]}
        ask: dict[str, Any] = {"contents": [user], "tools": GEMINI_TOOLS}
        first = await trio.to_thread.run_sync(_post_path, llm, stream, ask)
        asked = {"name": call.name, "args": call.arguments}
        model = {"role": "model", "parts": [{"functionCall": asked}]}
        answer = {"role": "user", "parts": [{"functionResponse": {"name": "run_shell_command"}}]}
        after = {**ask, "contents": [user, model, answer]}
        second = await trio.to_thread.run_sync(_post_path, llm, stream, after)
        whole = await trio.to_thread.run_sync(
            _post_path, llm, "/v1beta/models/gemini-2.5-flash:generateContent", ask
        )
        side = await trio.to_thread.run_sync(
            _post_path, llm, "/v1beta/models/other:generateContent", {"contents": [user]}
        )
        _, counted = await trio.to_thread.run_sync(
            _post_path, llm, "/v1beta/models/gemini-2.5-flash:countTokens", ask
        )
    assert first[0] == "text/event-stream"
    [chunk] = _data_events(first[1])
    [candidate] = chunk["candidates"]
    assert candidate["content"] == {
        "role": "model",
        "parts": [{"functionCall": {"name": "run_shell_command", "args": {"command": "ls"}}}],
    }
    assert candidate["finishReason"] == "STOP"
    assert chunk["usageMetadata"]["totalTokenCount"] >= 0
    chunks = _data_events(second[1])
    texts = [c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks]
    assert ("".join(texts), len(texts)) == ("listed", 2)
    assert ["finishReason" in c["candidates"][0] for c in chunks] == [False, True]
    assert whole[0] == "application/json"
    [done] = json.loads(whole[1])["candidates"]
    assert (done["content"]["parts"], done["finishReason"]) == ([{"text": "whole"}], "STOP")
    side_parts = json.loads(side[1])["candidates"][0]["content"]["parts"]
    assert side_parts == [{"text": llm.side_text}]
    assert json.loads(counted)["totalTokens"] > 0
    assert [len(r["contents"]) for r in llm.main_requests()] == [1, 3, 1]
    assert len(llm.side_requests()) == 1
