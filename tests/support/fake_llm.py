"""A fake LLM server, so that real agents run offline in tests.

It speaks four wire formats on one port (127.0.0.1, a free one):

- OpenAI Chat Completions (opencode): ``POST /v1/chat/completions`` (streamed as
  ``chat.completion.chunk`` server-sent events ending with ``data: [DONE]``, or one
  ``chat.completion`` object when ``stream`` is false) and ``GET /v1/models``;
- Anthropic Messages (claude-agent-acp): ``POST /v1/messages`` (streamed as the
  ``message_start`` / ``content_block_*`` / ``message_delta`` / ``message_stop``
  events, or one ``message`` object) and ``POST /v1/messages/count_tokens``.
  Point the agent at :attr:`FakeLlm.anthropic_base_url` (no ``/v1``: the
  Anthropic client adds it);
- OpenAI Responses (codex-acp, ``wire_api = "responses"``): ``POST /v1/responses``
  (streamed as ``response.created`` / ``response.output_item.added`` /
  ``response.output_text.delta`` or ``response.function_call_arguments.delta`` and
  ``.done`` / ``response.output_item.done`` / ``response.completed`` events, each
  with its ``event:`` line, or one ``response`` object when ``stream`` is false).
  A :class:`ToolCall` is a ``function_call`` output item (codex's shell tool is
  ``exec_command`` with ``{"cmd": "..."}``);
- Gemini API (Gemini CLI): ``POST /v1beta/models/<model>:streamGenerateContent``
  (``?alt=sse``: server-sent events, each a ``GenerateContentResponse`` with one
  candidate, the last with its ``finishReason`` and ``usageMetadata``),
  ``:generateContent`` (one such object) and ``:countTokens``. A :class:`Text` is a
  ``text`` part, a :class:`ToolCall` a ``functionCall`` part (Gemini CLI's shell
  tool is ``run_shell_command`` with ``{"command": "..."}``). Point the agent at
  :attr:`FakeLlm.gemini_base_url` (``GOOGLE_GEMINI_BASE_URL``; no ``/v1beta``).

What it answers is scripted per test. A request that offers no ``tools`` is a
side call (opencode's session-title call) and gets :attr:`FakeLlm.side_text`.
A request with ``tools`` is a main call and gets the next reply of the script:
a :class:`Text`, or a :class:`ToolCall` after which the agent runs the tool and
calls again with the result (role ``tool``, a ``tool_result`` block, a
``function_call_output`` input item, or a ``functionResponse`` part), which the
next reply answers. All four formats share one script. Once the script is used up, main calls get
:attr:`FakeLlm.default_text`. Every request body is recorded, in order, for the
test to look at, and every request line (``"POST /v1/messages"``, also those
answered 404) in :attr:`FakeLlm.calls`.

In-process use (a stdlib HTTP server on a thread of its own, stopped when the
block ends)::

    with serve_fake_llm([ToolCall("write", {...}), Text("done")]) as llm:
        ...  # point the agent at llm.base_url; afterwards look at llm.main_requests()

As a process, ``python -m tests.support.fake_llm [--script FILE]`` prints its base URL
on one line and serves until stdin closes; FILE holds a JSON list of
``{"text": ...}`` and ``{"tool": name, "arguments": {...}}`` replies.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, cast

MODEL_ID: Final = "m"
#: Into how many SSE chunks a reply's text (or a tool call's arguments) is cut.
DEFAULT_CHUNKS: Final = 3
DEFAULT_SIDE_TEXT: Final = "Fake title"
DEFAULT_TEXT: Final = "The fake LLM has nothing more to say."
MAX_BODY_BYTES: Final = 64 * 1024 * 1024
SERVER_STOP_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True)
class Text:
    """A plain text answer, streamed in ``chunks`` pieces."""

    text: str
    chunks: int = DEFAULT_CHUNKS


@dataclass(frozen=True)
class ToolCall:
    """An answer that asks the agent to call tool ``name`` with ``arguments``."""

    name: str
    arguments: dict[str, Any]
    call_id: str = "call_1"


Reply = Text | ToolCall


@dataclass
class FakeLlm:
    """The script and the record of one fake server; safe to use from any thread."""

    replies: list[Reply] = field(default_factory=list)
    side_text: str = DEFAULT_SIDE_TEXT
    default_text: str = DEFAULT_TEXT
    base_url: str = ""
    _requests: list[dict[str, Any]] = field(default_factory=list)
    _calls: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def anthropic_base_url(self) -> str:
        """The base URL for Anthropic clients (``ANTHROPIC_BASE_URL``), which add ``/v1``."""
        return self.base_url.removesuffix("/v1")

    @property
    def gemini_base_url(self) -> str:
        """The base URL for Gemini API clients (``GOOGLE_GEMINI_BASE_URL``), which add
        ``/v1beta``."""
        return self.base_url.removesuffix("/v1")

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every completion, message or response request body received so far, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def calls(self) -> list[str]:
        """Every request line received so far (``"POST /v1/messages"``), in order,
        those answered 404 included: what an agent asked of its LLM server."""
        with self._lock:
            return list(self._calls)

    def record_call(self, method: str, path: str) -> None:
        with self._lock:
            self._calls.append(f"{method} {path}")

    def main_requests(self) -> list[dict[str, Any]]:
        """The requests that offered tools (the agent's real turns)."""
        return [r for r in self.requests if r.get("tools")]

    def side_requests(self) -> list[dict[str, Any]]:
        """The requests without tools (titles and other side calls)."""
        return [r for r in self.requests if not r.get("tools")]

    def script(self, *replies: Reply) -> None:
        """Queue more replies for main calls."""
        with self._lock:
            self.replies.extend(replies)

    def answer(self, request: dict[str, Any]) -> Reply:
        """Record ``request`` and choose its reply."""
        with self._lock:
            self._requests.append(request)
            if not request.get("tools"):
                return Text(self.side_text, chunks=1)
            if self.replies:
                return self.replies.pop(0)
            return Text(self.default_text, chunks=1)


_completion_ids: Final = itertools.count(1)


def _pieces(text: str, count: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, count)))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _usage(request: dict[str, Any], reply: Reply) -> dict[str, int]:
    prompt = len(json.dumps(request.get("messages", []))) // 4
    completion = len(reply.text if isinstance(reply, Text) else json.dumps(reply.arguments)) // 4
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _tool_call(reply: ToolCall, arguments: str, *, first: bool) -> dict[str, Any]:
    if not first:
        return {"index": 0, "function": {"arguments": arguments}}
    return {
        "index": 0,
        "id": reply.call_id,
        "type": "function",
        "function": {"name": reply.name, "arguments": arguments},
    }


def stream_events(request: dict[str, Any], reply: Reply) -> Iterator[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects that stream ``reply``."""
    base = {
        "id": f"chatcmpl-{next(_completion_ids)}",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": request.get("model", MODEL_ID),
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return {**base, "choices": [choice]}

    if isinstance(reply, Text):
        yield chunk({"role": "assistant", "content": ""})
        for piece in _pieces(reply.text, reply.chunks):
            yield chunk({"content": piece})
        yield chunk({}, "stop")
    else:
        pieces = _pieces(json.dumps(reply.arguments), DEFAULT_CHUNKS)
        yield chunk({"role": "assistant", "tool_calls": [_tool_call(reply, "", first=True)]})
        for piece in pieces:
            yield chunk({"tool_calls": [_tool_call(reply, piece, first=False)]})
        yield chunk({}, "tool_calls")
    if (request.get("stream_options") or {}).get("include_usage"):
        yield {**base, "choices": [], "usage": _usage(request, reply)}


def completion(request: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """The one ``chat.completion`` object that answers ``reply`` without streaming."""
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if isinstance(reply, Text):
        message["content"] = reply.text
        finish_reason = "stop"
    else:
        message["tool_calls"] = [_tool_call(reply, json.dumps(reply.arguments), first=True)]
        finish_reason = "tool_calls"
    return {
        "id": f"chatcmpl-{next(_completion_ids)}",
        "object": "chat.completion",
        "created": 0,
        "model": request.get("model", MODEL_ID),
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": _usage(request, reply),
    }


def _anthropic_usage(request: dict[str, Any], reply: Reply) -> dict[str, int]:
    usage = _usage({"messages": [request.get("system"), request.get("messages", [])]}, reply)
    return {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"]}


def _anthropic_block(reply: Reply) -> dict[str, Any]:
    if isinstance(reply, Text):
        return {"type": "text", "text": reply.text}
    return {"type": "tool_use", "id": reply.call_id, "name": reply.name, "input": reply.arguments}


def _stop_reason(reply: Reply) -> str:
    return "end_turn" if isinstance(reply, Text) else "tool_use"


def anthropic_events(request: dict[str, Any], reply: Reply) -> Iterator[dict[str, Any]]:
    """The Anthropic Messages stream events (each has its ``type``) that stream ``reply``."""
    usage = _anthropic_usage(request, reply)
    message = {
        "id": f"msg_{next(_completion_ids)}",
        "type": "message",
        "role": "assistant",
        "model": request.get("model", MODEL_ID),
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1},
    }
    yield {"type": "message_start", "message": message}
    start: dict[str, Any]
    if isinstance(reply, Text):
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in _pieces(reply.text, reply.chunks)]
    else:
        start = {"type": "tool_use", "id": reply.call_id, "name": reply.name, "input": {}}
        pieces = _pieces(json.dumps(reply.arguments), DEFAULT_CHUNKS)
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
    yield {"type": "content_block_start", "index": 0, "content_block": start}
    for delta in deltas:
        yield {"type": "content_block_delta", "index": 0, "delta": delta}
    yield {"type": "content_block_stop", "index": 0}
    yield {
        "type": "message_delta",
        "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None},
        "usage": {"output_tokens": usage["output_tokens"]},
    }
    yield {"type": "message_stop"}


def anthropic_message(request: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """The one Anthropic ``message`` object that answers ``reply`` without streaming."""
    return {
        "id": f"msg_{next(_completion_ids)}",
        "type": "message",
        "role": "assistant",
        "model": request.get("model", MODEL_ID),
        "content": [_anthropic_block(reply)],
        "stop_reason": _stop_reason(reply),
        "stop_sequence": None,
        "usage": _anthropic_usage(request, reply),
    }


def _responses_usage(request: dict[str, Any], reply: Reply) -> dict[str, Any]:
    usage = _usage({"messages": [request.get("instructions"), request.get("input", [])]}, reply)
    return {
        "input_tokens": usage["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage["total_tokens"],
    }


def _responses_item(reply: Reply, item_id: str, *, done: bool) -> dict[str, Any]:
    """The output item of ``reply``: as added (empty, in progress) or as done."""
    status = "completed" if done else "in_progress"
    if isinstance(reply, Text):
        content = [{"type": "output_text", "text": reply.text, "annotations": []}]
        return {
            "type": "message",
            "id": item_id,
            "role": "assistant",
            "status": status,
            "content": content if done else [],
        }
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": reply.call_id,
        "name": reply.name,
        "arguments": json.dumps(reply.arguments) if done else "",
        "status": status,
    }


def _responses_object(
    request: dict[str, Any], reply: Reply, response_id: str, output: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": 0,
        "model": request.get("model", MODEL_ID),
        "status": "completed",
        "output": output,
        "usage": _responses_usage(request, reply),
    }


def responses_events(request: dict[str, Any], reply: Reply) -> Iterator[dict[str, Any]]:
    """The OpenAI Responses stream events (each has its ``type``) that stream ``reply``."""
    number = next(_completion_ids)
    response_id = f"resp_{number}"
    item_id = f"msg_{number}" if isinstance(reply, Text) else f"fc_{number}"
    created = _responses_object(request, reply, response_id, [])
    yield {"type": "response.created", "response": {**created, "status": "in_progress"}}
    added = _responses_item(reply, item_id, done=False)
    yield {"type": "response.output_item.added", "output_index": 0, "item": added}
    where = {"output_index": 0, "item_id": item_id}
    if isinstance(reply, Text):
        part = {**where, "content_index": 0}
        for piece in _pieces(reply.text, reply.chunks):
            yield {"type": "response.output_text.delta", **part, "delta": piece}
        yield {"type": "response.output_text.done", **part, "text": reply.text}
    else:
        arguments = json.dumps(reply.arguments)
        for piece in _pieces(arguments, DEFAULT_CHUNKS):
            yield {"type": "response.function_call_arguments.delta", **where, "delta": piece}
        yield {"type": "response.function_call_arguments.done", **where, "arguments": arguments}
    item = _responses_item(reply, item_id, done=True)
    yield {"type": "response.output_item.done", "output_index": 0, "item": item}
    yield {
        "type": "response.completed",
        "response": _responses_object(request, reply, response_id, [item]),
    }


def responses_response(request: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """The one ``response`` object that answers ``reply`` without streaming."""
    number = next(_completion_ids)
    item_id = f"msg_{number}" if isinstance(reply, Text) else f"fc_{number}"
    item = _responses_item(reply, item_id, done=True)
    return _responses_object(request, reply, f"resp_{number}", [item])


def _gemini_usage(request: dict[str, Any], reply: Reply) -> dict[str, int]:
    usage = _usage({"messages": [request.get("systemInstruction"), request.get("contents")]}, reply)
    return {
        "promptTokenCount": usage["prompt_tokens"],
        "candidatesTokenCount": usage["completion_tokens"],
        "totalTokenCount": usage["total_tokens"],
    }


def _gemini_response(
    request: dict[str, Any], parts: list[dict[str, Any]], *, last: bool, reply: Reply
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    response: dict[str, Any] = {"candidates": [candidate], "modelVersion": MODEL_ID}
    if last:
        candidate["finishReason"] = "STOP"
        response["usageMetadata"] = _gemini_usage(request, reply)
    return response


def gemini_events(request: dict[str, Any], reply: Reply) -> Iterator[dict[str, Any]]:
    """The Gemini API ``GenerateContentResponse`` chunks that stream ``reply``: its
    text in pieces, or its function call in one chunk (Gemini streams a call whole)."""
    if isinstance(reply, ToolCall):
        call = {"functionCall": {"name": reply.name, "args": reply.arguments}}
        yield _gemini_response(request, [call], last=True, reply=reply)
        return
    pieces = _pieces(reply.text, reply.chunks)
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        yield _gemini_response(request, [{"text": piece}], last=last, reply=reply)


def gemini_response(request: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """The one ``GenerateContentResponse`` that answers ``reply`` without streaming."""
    if isinstance(reply, Text):
        part: dict[str, Any] = {"text": reply.text}
    else:
        part = {"functionCall": {"name": reply.name, "args": reply.arguments}}
    return _gemini_response(request, [part], last=True, reply=reply)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeLlm) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


_POST_ROUTES: Final = frozenset(
    {"/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens", "/v1/responses"}
)
_GEMINI_PREFIX: Final = "/v1beta/models/"
_GEMINI_METHODS: Final = frozenset({"streamGenerateContent", "generateContent", "countTokens"})


def _gemini_method(route: str) -> str | None:
    """``streamGenerateContent`` for ``/v1beta/models/<model>:streamGenerateContent``
    (and so on for the other Gemini API methods served), else None."""
    if not route.startswith(_GEMINI_PREFIX):
        return None
    _, sep, method = route.removeprefix(_GEMINI_PREFIX).rpartition(":")
    return method if sep and method in _GEMINI_METHODS else None


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: the connection closes after each answer, which ends an event stream.
    protocol_version = "HTTP/1.0"

    @property
    def fake(self) -> FakeLlm:
        return cast(_Server, self.server).fake

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean; the record is FakeLlm.requests

    def do_GET(self) -> None:
        self.fake.record_call("GET", self.path)
        if self.path.rstrip("/") == "/v1/models":
            model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "fake"}
            self._send_json(200, {"object": "list", "data": [model]})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        self.fake.record_call("POST", self.path)
        route = self.path.split("?", 1)[0].rstrip("/")
        gemini = _gemini_method(route)
        if route not in _POST_ROUTES and gemini is None:
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})
            return
        request = self._read_json_object()
        if request is None:
            return
        if gemini is not None:
            self._answer_gemini(request, gemini)
        elif route == "/v1/messages/count_tokens":
            tokens = _anthropic_usage(request, Text(""))["input_tokens"]
            self._send_json(200, {"input_tokens": tokens})
        elif route == "/v1/messages":
            self._answer_named(request, anthropic_message, anthropic_events)
        elif route == "/v1/responses":
            self._answer_named(request, responses_response, responses_events)
        else:
            self._answer_openai(request)

    def _read_json_object(self) -> dict[str, Any] | None:
        """The request's JSON object body, or None after answering 400."""
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY_BYTES:
            self._send_json(400, {"error": {"message": f"bad Content-Length {length}"}})
            return None
        try:
            request = json.loads(self.rfile.read(length))
        except ValueError as exc:
            self._send_json(400, {"error": {"message": f"body is not JSON: {exc}"}})
            return None
        if not isinstance(request, dict):
            self._send_json(400, {"error": {"message": "body is not a JSON object"}})
            return None
        return request

    def _answer_named(
        self,
        request: dict[str, Any],
        whole: Callable[[dict[str, Any], Reply], dict[str, Any]],
        events: Callable[[dict[str, Any], Reply], Iterator[dict[str, Any]]],
    ) -> None:
        """Answer with the next reply: one object, or (``stream``) server-sent events
        each named by its ``type`` (Anthropic Messages, OpenAI Responses)."""
        reply = self.fake.answer(request)
        if not request.get("stream"):
            self._send_json(200, whole(request, reply))
            return
        self._start_event_stream()
        for event in events(request, reply):
            data = json.dumps(event).encode()
            self.wfile.write(b"event: " + event["type"].encode() + b"\ndata: " + data + b"\n\n")
            self.wfile.flush()

    def _start_event_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()

    def _answer_gemini(self, request: dict[str, Any], method: str) -> None:
        if method == "countTokens":
            tokens = _gemini_usage(request, Text(""))["promptTokenCount"]
            self._send_json(200, {"totalTokens": tokens})
            return
        reply = self.fake.answer(request)
        if method == "generateContent":
            self._send_json(200, gemini_response(request, reply))
            return
        self._start_event_stream()
        for event in gemini_events(request, reply):
            self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
            self.wfile.flush()

    def _answer_openai(self, request: dict[str, Any]) -> None:
        reply = self.fake.answer(request)
        if not request.get("stream"):
            self._send_json(200, completion(request, reply))
            return
        self._start_event_stream()
        for event in stream_events(request, reply):
            self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")

    def _send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextlib.contextmanager
def serve_fake_llm(
    replies: Sequence[Reply] = (), *, side_text: str = DEFAULT_SIDE_TEXT
) -> Iterator[FakeLlm]:
    """Serve a :class:`FakeLlm` on a thread; its ``base_url`` ends in ``/v1``.

    The server stops (and its thread is joined) when the block ends."""
    fake = FakeLlm(list(replies), side_text=side_text)
    server = _Server(fake)
    host, port = server.server_address[:2]
    fake.base_url = f"http://{host!s}:{port}/v1"
    thread = threading.Thread(target=server.serve_forever, name="fake-llm", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(SERVER_STOP_TIMEOUT_S)


def _load_script(path: str) -> list[Reply]:
    with open(path, encoding="utf-8") as f:
        items = json.load(f)
    return [
        ToolCall(item["tool"], item.get("arguments", {})) if "tool" in item else Text(item["text"])
        for item in items
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.fake_llm", description=__doc__)
    parser.add_argument("--script", help="JSON list of replies for main calls")
    args = parser.parse_args(argv)
    replies = _load_script(args.script) if args.script else []
    with serve_fake_llm(replies) as fake:
        print(fake.base_url, flush=True)
        sys.stdin.read()  # serve until our parent closes our stdin (or exits)


if __name__ == "__main__":
    main()
