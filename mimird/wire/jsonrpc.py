"""A sans-IO JSON-RPC 2.0 peer, for connections where both sides send requests
(ACP: mimird and an agent; later ``mimirctl acp``). No sockets, no trio: feed it
lines (:mod:`mimird.wire.lines` splits them) and it returns events; ask it for
requests, notifications and answers and it returns the bytes to send.

Two id spaces: ours (ints from 1, given by :meth:`JsonRpcPeer.request`) and the
other side's (ints, strings, anything). The peer keeps the bookkeeping:

- which of our requests wait for an answer; one abandoned by its caller
  (:meth:`JsonRpcPeer.abandon`) gets a cancel notification, and its late answer
  is dropped without a protocol error;
- which of the other side's requests are being handled (an id reused meanwhile
  is answered with an error; a cancel notification for one is an event);
- a line that cannot be read is reported, and if its start says it was a request
  (an id and a method) it is answered with an error, or if it was the answer to
  one of ours that request fails: nobody waits for ever on a skipped message.

Params and results are plain JSON values (dicts, lists, ...), unknown fields
included; the peer validates only the envelope.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import msgspec
from msgspec import UNSET, UnsetType

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
#: How much of a bad line a :class:`ProtocolError` shows.
PREVIEW_CHARS: Final = 200
#: How much of a line that is too long, or not JSON, is searched for its id and method.
ENVELOPE_BYTES: Final = 64 * 1024

RequestId: TypeAlias = int | str | None


# ---- events ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """The other side asks; answer with :meth:`JsonRpcPeer.answer` or ``answer_error``."""

    id: int | str | None
    method: str
    params: Any


@dataclass(frozen=True, slots=True)
class Notification:
    method: str
    params: Any


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """The other side withdrew its request ``id``, which is still being handled."""

    id: int | str


@dataclass(frozen=True, slots=True)
class Response:
    """The result of our request ``id``."""

    id: int
    result: Any


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """Our request ``id`` failed: the other side answered with an error, or its
    answer could not be read."""

    id: int
    code: int
    message: str
    data: Any = None


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """A line that was skipped: not JSON-RPC, too long, an answer to no request."""

    preview: str
    reason: str


@dataclass(frozen=True, slots=True)
class Outgoing:
    """Bytes the peer needs sent (an error answer to a request it could not take)."""

    data: bytes


Event: TypeAlias = (
    Request | Notification | CancelRequested | Response | ErrorResponse | ProtocolError | Outgoing
)


# ---- the envelope on the wire -------------------------------------------------------


class _Incoming(msgspec.Struct):
    """Any JSON-RPC message; which fields are present says which kind it is."""

    id: int | str | UnsetType | None = UNSET
    method: str | UnsetType = UNSET
    params: msgspec.Raw | UnsetType = UNSET
    result: msgspec.Raw | UnsetType = UNSET
    error: msgspec.Raw | UnsetType = UNSET


class _Request(msgspec.Struct):
    id: RequestId
    method: str
    params: Any
    jsonrpc: str = "2.0"


class _Notification(msgspec.Struct):
    method: str
    params: Any
    jsonrpc: str = "2.0"


class _Result(msgspec.Struct):
    id: RequestId
    result: Any
    jsonrpc: str = "2.0"


class _ErrorObject(msgspec.Struct, omit_defaults=True):
    code: int
    message: str
    data: Any = None


class _ErrorAnswer(msgspec.Struct):
    id: RequestId
    error: _ErrorObject
    jsonrpc: str = "2.0"


_message_decoder: Final = msgspec.json.Decoder(_Incoming)
_value_decoder: Final = msgspec.json.Decoder()
_encoder: Final = msgspec.json.Encoder()


def _decode(line: bytes) -> tuple[_Incoming, Any]:
    """The envelope of ``line`` and its params (plain JSON values; None when absent)."""
    message = _message_decoder.decode(line)
    params = (
        _value_decoder.decode(message.params) if isinstance(message.params, msgspec.Raw) else None
    )
    return message, params


#: In a JSON text: an escaped backslash, or a ``\uXXXX`` escape (its hex digits).
_ESCAPE: Final = re.compile(rb"\\\\|\\u([0-9a-fA-F]{4})")
_REPLACEMENT: Final = b"\\ufffd"


def mend_lone_surrogates(line: bytes) -> bytes:
    """``line`` with every ``\\uXXXX`` escape of a lone UTF-16 surrogate (a high one
    not followed at once by a low one, or a low one alone) written as U+FFFD, the
    replacement character; escaped pairs and the rest of the bytes as they were.

    JavaScript's ``JSON.stringify`` writes a lone surrogate so (a string cut in the
    middle of an emoji by ``slice``, as an agent cuts a long tool output), and so does
    Python's ``json.dumps``; JSON's grammar allows it, but no decoder can make text of
    it, and msgspec refuses the whole message. A decoder of UTF-16 puts U+FFFD there."""
    out = bytearray()
    copied = 0  # line[:copied] is in out
    high: re.Match[bytes] | None = None  # a high surrogate's escape, its low one awaited
    for found in _ESCAPE.finditer(line):
        code = int(found[1], 16) if found[1] is not None else None
        if high is not None:
            if code is not None and 0xDC00 <= code <= 0xDFFF and found.start() == high.end():
                high = None  # a pair: copied as it is
                continue
            out += line[copied : high.start()] + _REPLACEMENT
            copied, high = high.end(), None
        if code is None:
            continue
        if 0xD800 <= code <= 0xDBFF:
            high = found
        elif 0xDC00 <= code <= 0xDFFF:
            out += line[copied : found.start()] + _REPLACEMENT
            copied = found.end()
    if high is not None:
        out += line[copied : high.start()] + _REPLACEMENT
        copied = high.end()
    return bytes(out + line[copied:])


def surrogates_mended(data: bytes) -> bytes | None:
    """``data`` with its lone surrogate escapes mended (:func:`mend_lone_surrogates`),
    or None when it has none: a text that failed to decode is then malformed otherwise.
    Both mimird's socket and this peer read a failed line again through it."""
    if b"\\u" not in data:
        return None
    mended = mend_lone_surrogates(data)
    return None if mended == data else mended


def _decode_mended(line: bytes) -> tuple[_Incoming, Any] | None:
    """``line`` read with its lone surrogates mended, when they were what kept it
    from being read; else None."""
    mended = surrogates_mended(line)
    if mended is None:
        return None
    try:
        return _decode(mended)
    except msgspec.DecodeError:
        return None


def preview(data: bytes | bytearray) -> str:
    """The start of a line, as text, to show in a :class:`ProtocolError`."""
    return data[: PREVIEW_CHARS * 4].decode("utf-8", "replace")[:PREVIEW_CHARS]


_json_decoder: Final = json.JSONDecoder()
_JSON_SPACE: Final = re.compile(r"[ \t\n\r]*")


def _skip_space(text: str, pos: int) -> int:
    """Where the next JSON token may start: ``pos`` past any JSON whitespace."""
    found = _JSON_SPACE.match(text, pos)
    assert found is not None  # "*": it matches the empty string too
    return found.end()


def envelope(head: bytes) -> tuple[RequestId, str | None]:
    """The top-level ``id`` and ``method`` of a message, read from the start of its
    line: the members before the line is cut short or stops being JSON. Either
    is None when it was not found there (or has a type JSON-RPC does not allow)."""
    text = head[:ENVELOPE_BYTES].decode("utf-8", "replace")
    found: dict[str, Any] = {}
    pos = _skip_space(text, 0)
    if not text.startswith("{", pos):
        return None, None
    try:
        while len(found) < 2:
            pos = _skip_space(text, pos + 1)
            if not text.startswith('"', pos):
                break
            key, pos = _json_decoder.raw_decode(text, pos)
            pos = _skip_space(text, pos)
            if not text.startswith(":", pos):
                break
            pos = _skip_space(text, pos + 1)
            value, pos = _json_decoder.raw_decode(text, pos)
            if key in ("id", "method"):
                found.setdefault(key, value)
            pos = _skip_space(text, pos)
            if not text.startswith(",", pos):
                break
    except ValueError:  # cut short, or not JSON from here on
        pass
    request_id = found.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        request_id = None
    method = found.get("method")
    return request_id, method if isinstance(method, str) else None


def _params(params: Any) -> Any:
    return {} if params is None else params


# ---- the peer ------------------------------------------------------------------------


class JsonRpcPeer:
    """One side of a JSON-RPC connection where both sides send requests.

    ``cancel_method`` names the notification that withdraws a request (ACP's
    ``$/cancel_request``, params ``{"requestId": id}``); None: no such thing."""

    def __init__(self, *, cancel_method: str | None = None) -> None:
        self.cancel_method = cancel_method
        self._ids = itertools.count(1)
        #: Ours, waiting for their answer.
        self.pending: set[int] = set()
        #: Ours whose callers gave up: their late answer is expected, not an error.
        self._abandoned: set[int] = set()
        #: Theirs, being handled.
        self.handling: set[int | str | None] = set()

    # -- what we send ----------------------------------------------------------------

    def request(self, method: str, params: Any = None) -> tuple[int, bytes]:
        """A request of ours: its id and the line to send."""
        request_id = next(self._ids)
        line = _encoder.encode(_Request(id=request_id, method=method, params=_params(params)))
        self.pending.add(request_id)
        return request_id, line + b"\n"

    def notify(self, method: str, params: Any = None) -> bytes:
        """A notification's line."""
        return _encoder.encode(_Notification(method=method, params=_params(params))) + b"\n"

    def abandon(self, request_id: int) -> bytes | None:
        """Our caller gave up on ``request_id``: forget it (its late answer will be
        dropped quietly) and return the cancel notification to send, if there is
        one and the request was still waiting."""
        if request_id not in self.pending:
            return None
        self.pending.discard(request_id)
        self._abandoned.add(request_id)
        if self.cancel_method is None:
            return None
        return self.notify(self.cancel_method, {"requestId": request_id})

    def forget(self, request_id: int) -> None:
        """Stop waiting for ``request_id`` without telling the other side (the
        connection is gone)."""
        self.pending.discard(request_id)

    def answer(self, request_id: RequestId, result: Any) -> bytes:
        """The result of the other side's request."""
        self.handling.discard(request_id)
        return _encoder.encode(_Result(id=request_id, result=result)) + b"\n"

    def answer_error(
        self, request_id: RequestId, code: int, message: str, data: Any = None
    ) -> bytes:
        """An error answer to the other side's request."""
        self.handling.discard(request_id)
        return _error_line(request_id, code, message, data)

    # -- what we receive ---------------------------------------------------------------

    def receive(self, line: bytes) -> list[Event]:
        """The events of one line (without its newline). A blank line has none."""
        if not line.strip():
            return []
        try:
            message, params = _decode(line)
        except msgspec.DecodeError as exc:
            mended = _decode_mended(line)
            if mended is None:
                reason = f"not a JSON-RPC object: {exc}"
                return [
                    ProtocolError(preview(line), reason),
                    *self._unreadable(line, PARSE_ERROR, reason),
                ]
            message, params = mended
        if isinstance(message.method, str):
            if isinstance(message.id, UnsetType):
                return self._notification(message.method, params)
            return self._request(message.id, message.method, params)
        if not isinstance(message.id, UnsetType):
            return self._response(line, message)
        return [ProtocolError(preview(line), "neither a request, a notification nor a response")]

    def receive_too_long(self, head: bytes, limit: int) -> list[Event]:
        """The events of a line longer than ``limit`` that was skipped (``head``: its start)."""
        reason = f"line longer than {limit} bytes, skipped"
        return [
            ProtocolError(preview(head), reason),
            *self._unreadable(head, INVALID_REQUEST, f"message too large: {reason}"),
        ]

    def _notification(self, method: str, params: Any) -> list[Event]:
        if method == self.cancel_method:
            request_id = params.get("requestId") if isinstance(params, dict) else None
            if isinstance(request_id, int | str) and request_id in self.handling:
                return [CancelRequested(request_id)]
            return []
        return [Notification(method, params)]

    def _request(self, request_id: RequestId, method: str, params: Any) -> list[Event]:
        if request_id in self.handling:
            # A reused id would make both answers ambiguous; answer the newcomer only.
            message = f"request id {request_id!r} is in use"
            return [Outgoing(_error_line(request_id, INVALID_REQUEST, message))]
        self.handling.add(request_id)
        return [Request(request_id, method, params)]

    def _response(self, line: bytes, message: _Incoming) -> list[Event]:
        request_id = message.id
        if not isinstance(request_id, int) or request_id not in self.pending:
            if isinstance(request_id, int) and request_id in self._abandoned:
                self._abandoned.discard(request_id)
                return []
            reason = f"answer to a request we did not send (id {request_id!r})"
            return [ProtocolError(preview(line), reason)]
        self.pending.discard(request_id)
        try:
            if not isinstance(message.error, UnsetType):
                return [_error_response(request_id, _value_decoder.decode(message.error))]
            if not isinstance(message.result, UnsetType):
                return [Response(request_id, _value_decoder.decode(message.result))]
        except msgspec.DecodeError as exc:
            return [ErrorResponse(request_id, PARSE_ERROR, f"undecodable answer: {exc}")]
        return [ErrorResponse(request_id, INVALID_REQUEST, "answer has neither result nor error")]

    def _unreadable(self, head: bytes, code: int, reason: str) -> list[Event]:
        request_id, method = envelope(head)
        if request_id is None:
            return []
        if method is not None:
            if request_id in self.handling:
                return []
            return [Outgoing(_error_line(request_id, code, reason))]
        if isinstance(request_id, int) and request_id in self.pending:
            self.pending.discard(request_id)
            return [ErrorResponse(request_id, code, f"the agent's answer was unreadable: {reason}")]
        return []


def _error_line(request_id: RequestId, code: int, message: str, data: Any = None) -> bytes:
    error = _ErrorAnswer(id=request_id, error=_ErrorObject(code, message, data))
    return _encoder.encode(error) + b"\n"


def _error_response(request_id: int, error: Any) -> ErrorResponse:
    if not isinstance(error, dict):
        return ErrorResponse(request_id, INTERNAL_ERROR, f"malformed error: {error!r}")
    code = error.get("code")
    message = error.get("message")
    return ErrorResponse(
        request_id,
        code if isinstance(code, int) else INTERNAL_ERROR,
        message if isinstance(message, str) else "error without a message",
        error.get("data"),
    )


__all__ = [
    "CancelRequested",
    "ErrorResponse",
    "Event",
    "JsonRpcPeer",
    "Notification",
    "Outgoing",
    "ProtocolError",
    "Request",
    "Response",
    "envelope",
]
