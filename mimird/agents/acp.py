"""The client side of an ACP (Agent Client Protocol) connection to one agent.

ACP is JSON-RPC 2.0 with one JSON object per ``\\n``-terminated line, over the
agent's stdin (our :class:`trio.abc.SendStream`) and stdout (our
:class:`trio.abc.ReceiveStream`). Both sides send requests, so there are two
id spaces: ours (ints from 1) and the agent's (ints from 0, strings, anything).

Ownership: :meth:`AcpConnection.open` owns a nursery with a reader task, a
writer task and one task per request from the agent; all of them end when the
``async with`` block does. The two streams stay owned by the caller (the agent
host), which closes stdin and stops the process; the connection never closes
them.

What the connection deliberately does not do: validate ACP payloads. Params and
results reach the caller as plain JSON values (dicts, lists, ...), unknown
fields included, because real agents send fields newer than any schema.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Final, Protocol, TypeAlias

import msgspec
import trio
from msgspec import UNSET, UnsetType

from mimird.errors import InvalidParams, MimirError, NotFound

#: A line longer than this is skipped (and reported). Real agents send whole
#: files and base64 images in one line, so this is far above any real message;
#: it only bounds memory.
MAX_LINE_BYTES: Final = 64 * 1024 * 1024
RECEIVE_SIZE: Final = 64 * 1024
#: How much of a bad line ``on_protocol_error`` gets to see.
PREVIEW_CHARS: Final = 200
#: How much of a line that is too long, or not JSON, is searched for its id and
#: method, to answer it with an error rather than leave its sender waiting.
ENVELOPE_BYTES: Final = 64 * 1024
#: How long a cancelled :meth:`AcpConnection.request` may spend queueing its
#: ``$/cancel_request``.
CANCEL_NOTIFY_TIMEOUT_S: Final = 1.0

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
#: ACP's "resource not found", e.g. for a file read of a missing file.
RESOURCE_NOT_FOUND: Final = -32002
#: ACP's "request cancelled", the answer to a request ended by ``$/cancel_request``.
REQUEST_CANCELLED: Final = -32800
CANCEL_REQUEST_METHOD: Final = "$/cancel_request"

RequestId: TypeAlias = int | str | None


class AcpError(Exception):
    """A JSON-RPC error: raised by :meth:`AcpConnection.request` when the agent
    answers with one, and raised by a handler to answer the agent with one."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data


class MethodNotFound(AcpError):
    """What a handler raises for a method it does not implement."""

    def __init__(self, method: str) -> None:
        super().__init__(METHOD_NOT_FOUND, f"method not found: {method}")


#: Mimir's domain errors as ACP errors: the first class in this order that an
#: error is an instance of gives its code. Anything else is an internal error.
_DOMAIN_CODES: Final[tuple[tuple[type[MimirError], int], ...]] = (
    (NotFound, RESOURCE_NOT_FOUND),
    (InvalidParams, INVALID_PARAMS),
)


@contextmanager
def map_exceptions() -> Iterator[None]:
    """Turn Mimir's domain errors (the file sandbox's :class:`OutsideWorkspace`,
    ...) raised inside the block into :class:`AcpError` for the agent: the one
    place where they become ACP error objects (httpcore's ``map_exceptions``)."""
    try:
        yield
    except MimirError as exc:
        code = next((c for cls, c in _DOMAIN_CODES if isinstance(exc, cls)), INTERNAL_ERROR)
        raise AcpError(code, exc.message) from exc


class AcpConnectionClosed(Exception):
    """The connection ended (agent exited, closed its stdout, stopped reading its
    stdin, or the owner left the ``async with``) before an answer came."""


class AcpHandler(Protocol):
    """What the connection calls for traffic the agent starts.

    - ``on_request`` runs in a task of its own per request, so it may await
      :meth:`AcpConnection.request`. Its return value is the result (``None`` is
      sent as ``{}``); an :class:`AcpError` becomes that JSON-RPC error, any other
      exception an internal error (-32603). When the agent sends
      ``$/cancel_request`` for it, the task is cancelled and the agent gets -32800.
    - ``on_notification`` is awaited by the reader task, so notifications and
      responses are handled strictly in wire order (an update sent before the
      ``session/new`` answer is seen before that answer returns). It must not
      await :meth:`AcpConnection.request` (the answer could never be read); hand
      slow work to a channel. While it runs, nothing more is read: backpressure
      reaches the agent through the pipe. An exception from it ends the connection.
    - ``on_protocol_error`` is told about lines that are skipped (not JSON, not a
      JSON-RPC object, too long, an answer to no request).
    """

    async def on_request(self, method: str, params: Any) -> Any: ...

    async def on_notification(self, method: str, params: Any) -> None: ...

    async def on_protocol_error(self, line_preview: str, reason: str) -> None: ...


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


class _ErrorResponse(msgspec.Struct):
    id: RequestId
    error: _ErrorObject
    jsonrpc: str = "2.0"


_message_decoder: Final = msgspec.json.Decoder(_Incoming)
_value_decoder: Final = msgspec.json.Decoder()
_encoder: Final = msgspec.json.Encoder()


def _preview(data: bytes | bytearray) -> str:
    return data[: PREVIEW_CHARS * 4].decode("utf-8", "replace")[:PREVIEW_CHARS]


class _LineTooLong(Exception):
    def __init__(self, head: bytes | bytearray) -> None:
        super().__init__("line too long")
        self.head = bytes(head[:ENVELOPE_BYTES])
        self.preview = _preview(head)


_json_decoder: Final = json.JSONDecoder()
_JSON_SPACE: Final = re.compile(r"[ \t\n\r]*")


def _skip_space(text: str, pos: int) -> int:
    """Where the next JSON token may start: ``pos`` past any JSON whitespace."""
    found = _JSON_SPACE.match(text, pos)
    assert found is not None  # "*": it matches the empty string too
    return found.end()


def _envelope(head: bytes) -> tuple[RequestId, str | None]:
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


class _LineReader:
    """Splits the agent's output into lines, holding at most ``max_line_bytes``
    plus one receive of any line. A longer line raises :class:`_LineTooLong`
    once; its rest is then discarded and reading goes on with the next line."""

    def __init__(self, stream: trio.abc.ReceiveStream, max_line_bytes: int) -> None:
        self._stream = stream
        self._max = max_line_bytes
        self._buffer = bytearray()
        self._start = 0  # where the next line begins in _buffer
        self._scanned = 0  # bytes after _start known to hold no newline
        self._skipping = False  # inside the rest of a line already reported as too long
        self._eof = False

    async def next_line(self) -> bytes | None:
        """The next line without its newline, or None at end of stream."""
        while True:
            end = self._buffer.find(b"\n", self._start + self._scanned)
            if end >= 0:
                line = bytes(self._buffer[self._start : end])
                self._start = end + 1
                self._scanned = 0
                if self._start > RECEIVE_SIZE:
                    del self._buffer[: self._start]
                    self._start = 0
                if self._skipping:
                    self._skipping = False
                    continue
                if len(line) > self._max:
                    raise _LineTooLong(line)
                return line
            pending = len(self._buffer) - self._start
            if self._skipping:
                self._buffer.clear()
                self._start = pending = 0
            elif pending > self._max:
                too_long = _LineTooLong(self._buffer[self._start : self._start + ENVELOPE_BYTES])
                self._buffer.clear()
                self._start = self._scanned = 0
                self._skipping = True
                raise too_long
            if self._eof:
                if pending and not self._skipping:
                    line = bytes(self._buffer[self._start :])
                    self._buffer.clear()
                    self._start = self._scanned = 0
                    return line
                return None
            self._scanned = pending
            data = await self._stream.receive_some(RECEIVE_SIZE)
            if data:
                self._buffer += data
            else:
                self._eof = True


class _Pending:
    """One of our requests waiting for its answer."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class _Written:
    """Tells :meth:`AcpConnection.notify` that its line reached the agent's stdin."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.ok = False


class AcpConnection:
    """A JSON-RPC peer speaking ACP to one agent; create it with :meth:`open`."""

    def __init__(
        self,
        receive: trio.abc.ReceiveStream,
        send: trio.abc.SendStream,
        handler: AcpHandler,
        nursery: trio.Nursery,
        max_line_bytes: int,
    ) -> None:
        self._receive = receive
        self._send = send
        self._handler = handler
        self._nursery = nursery
        self._max_line_bytes = max_line_bytes
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        # Ours that were cancelled: their late answer is expected, not an error.
        self._abandoned: set[int] = set()
        self._handling: dict[int | str | None, trio.CancelScope] = {}
        # Unbounded, but only ever holds what we send: a sender is never blocked
        # (or cancelled halfway through a line) by an agent that is slow to read.
        self._outbox_send, self._outbox_receive = trio.open_memory_channel[
            tuple[bytes, _Written | None]
        ](math.inf)
        self._unwritten: set[_Written] = set()
        self._closed_reason: str | None = None
        self._reader_done = trio.Event()

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        receive: trio.abc.ReceiveStream,
        send: trio.abc.SendStream,
        handler: AcpHandler,
        *,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> AsyncIterator[AcpConnection]:
        """Run a connection over ``receive`` (agent stdout) and ``send`` (agent stdin).

        Leaving the block cancels the connection's tasks (handlers included) and
        fails requests still waiting with :class:`AcpConnectionClosed`; it does
        not close the streams or stop the agent.

        Cancellation: as leaving the block; handlers the agent's requests started
        are cancelled (the agent gets no answer to them)."""
        async with trio.open_nursery() as nursery:
            connection = cls(receive, send, handler, nursery, max_line_bytes)
            nursery.start_soon(connection._read_loop)
            nursery.start_soon(connection._write_loop)
            try:
                yield connection
            finally:
                connection._close("the connection was closed by its owner")
                nursery.cancel_scope.cancel()

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    async def wait_closed(self) -> None:
        """Return once the agent's output has ended, after everything read before
        the end was handed to the handler.

        Cancellation: nothing happens; the connection goes on."""
        await self._reader_done.wait()

    async def request(self, method: str, params: Any = None) -> Any:
        """Send a request and return its result (``{}`` and ``null`` both mean an
        empty result and are returned as they came).

        Raises :class:`AcpError` for an error answer and
        :class:`AcpConnectionClosed` if the connection ends first.

        Cancellation: the request was queued (whole) or not at all; if it was,
        ``$/cancel_request`` is queued for it and its eventual answer is ignored."""
        request_id = next(self._ids)
        pending = _Pending()
        self._pending[request_id] = pending
        try:
            self._queue(_Request(id=request_id, method=method, params=_params(params)))
            await pending.done.wait()
        except trio.Cancelled:
            if self._pending.pop(request_id, None) is not None and not self.closed:
                self._abandoned.add(request_id)
                # _queue never blocks, so this cannot be held up by a slow agent.
                self._queue(
                    _Notification(method=CANCEL_REQUEST_METHOD, params={"requestId": request_id})
                )
            raise
        finally:
            self._pending.pop(request_id, None)
        if pending.error is not None:
            raise pending.error
        return pending.result

    async def notify(self, method: str, params: Any = None) -> None:
        """Send a notification (after everything queued before it) and return once
        it was written.

        Raises :class:`AcpConnectionClosed` once the connection has ended.

        Cancellation: the line is still written whole later (it was queued before
        the first await): a cancelled write never leaves half a line."""
        written = _Written()
        self._queue(_Notification(method=method, params=_params(params)), written)
        self._unwritten.add(written)
        await written.done.wait()
        if not written.ok:
            raise AcpConnectionClosed(self._closed_reason or "the connection closed")

    # -- writing -----------------------------------------------------------------

    def _queue(self, message: msgspec.Struct, written: _Written | None = None) -> None:
        if self._closed_reason is not None:
            raise AcpConnectionClosed(self._closed_reason)
        self._outbox_send.send_nowait((_encoder.encode(message) + b"\n", written))

    async def _write_loop(self) -> None:
        async with self._outbox_receive:
            async for line, written in self._outbox_receive:
                try:
                    await self._send.send_all(line)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self._close(f"the agent's stdin is closed ({exc or type(exc).__name__})")
                    return
                if written is not None:
                    written.ok = True
                    written.done.set()
                    self._unwritten.discard(written)

    def _answer(self, message: msgspec.Struct) -> None:
        # An answer to an agent that is gone has nowhere to go; that is not an error.
        if self._closed_reason is None:
            self._outbox_send.send_nowait((_encoder.encode(message) + b"\n", None))

    def _close(self, reason: str) -> None:
        if self._closed_reason is not None:
            return
        self._closed_reason = reason
        for pending in self._pending.values():
            pending.error = AcpConnectionClosed(reason)
            pending.done.set()
        self._pending.clear()
        # Lines still queued may never be written: their senders stop waiting.
        for written in self._unwritten:
            written.done.set()
        self._unwritten.clear()

    # -- reading -----------------------------------------------------------------

    async def _read_loop(self) -> None:
        reader = _LineReader(self._receive, self._max_line_bytes)
        try:
            while True:
                try:
                    line = await reader.next_line()
                except _LineTooLong as exc:
                    reason = f"line longer than {self._max_line_bytes} bytes, skipped"
                    await self._handler.on_protocol_error(exc.preview, reason)
                    self._unreadable(exc.head, INVALID_REQUEST, f"message too large: {reason}")
                    continue
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self._close(f"the agent's stdout failed ({exc or type(exc).__name__})")
                    return
                if line is None:
                    self._close("the agent closed its stdout (it probably exited)")
                    return
                if line.strip():
                    await self._dispatch(line)
        finally:
            self._reader_done.set()

    async def _dispatch(self, line: bytes) -> None:
        try:
            message = _message_decoder.decode(line)
            params = (
                _value_decoder.decode(message.params)
                if isinstance(message.params, msgspec.Raw)
                else None
            )
        except msgspec.DecodeError as exc:
            await self._handler.on_protocol_error(_preview(line), f"not a JSON-RPC object: {exc}")
            self._unreadable(line, PARSE_ERROR, f"not a JSON-RPC object: {exc}")
            return
        if isinstance(message.method, str):
            if isinstance(message.id, UnsetType):
                await self._on_notification(message.method, params)
            else:
                self._start_handler(message.id, message.method, params)
        elif not isinstance(message.id, UnsetType):
            await self._on_response(line, message)
        else:
            await self._handler.on_protocol_error(
                _preview(line), "neither a request, a notification nor a response"
            )

    async def _on_notification(self, method: str, params: Any) -> None:
        if method == CANCEL_REQUEST_METHOD:
            request_id = params.get("requestId") if isinstance(params, dict) else None
            scope = self._handling.get(request_id) if isinstance(request_id, int | str) else None
            if scope is not None:
                scope.cancel()
            return
        await self._handler.on_notification(method, params)

    def _unreadable(self, head: bytes, code: int, reason: str) -> None:
        """A message that cannot be read: if its start says it is a request, answer
        it with an error; if it is the answer to one of ours, fail that request.
        Either way nobody waits for ever on a message that was skipped."""
        request_id, method = _envelope(head)
        if request_id is None:
            return
        if method is not None:
            if request_id not in self._handling:
                self._answer(_ErrorResponse(id=request_id, error=_ErrorObject(code, reason)))
            return
        pending = self._pending.pop(request_id, None) if isinstance(request_id, int) else None
        if pending is not None:
            pending.error = AcpError(code, f"the agent's answer was unreadable: {reason}")
            pending.done.set()

    async def _on_response(self, line: bytes, message: _Incoming) -> None:
        request_id = message.id
        pending = self._pending.pop(request_id, None) if isinstance(request_id, int) else None
        if pending is None:
            if isinstance(request_id, int) and request_id in self._abandoned:
                self._abandoned.discard(request_id)
                return
            await self._handler.on_protocol_error(
                _preview(line), f"answer to a request we did not send (id {request_id!r})"
            )
            return
        try:
            if not isinstance(message.error, UnsetType):
                pending.error = _decode_error(message.error)
            elif not isinstance(message.result, UnsetType):
                pending.result = _value_decoder.decode(message.result)
            else:
                pending.error = AcpError(INVALID_REQUEST, "answer has neither result nor error")
        except msgspec.DecodeError as exc:
            pending.error = AcpError(PARSE_ERROR, f"undecodable answer: {exc}")
        pending.done.set()

    # -- requests from the agent -------------------------------------------------

    def _start_handler(self, request_id: RequestId, method: str, params: Any) -> None:
        if request_id in self._handling:
            # A reused id would make both answers ambiguous; answer the newcomer only.
            self._answer(
                _ErrorResponse(
                    id=request_id,
                    error=_ErrorObject(INVALID_REQUEST, f"request id {request_id!r} is in use"),
                )
            )
            return
        scope = trio.CancelScope()
        self._handling[request_id] = scope
        self._nursery.start_soon(self._handle, request_id, method, params, scope)

    async def _handle(
        self, request_id: RequestId, method: str, params: Any, scope: trio.CancelScope
    ) -> None:
        answer: msgspec.Struct | None = None
        try:
            with scope:
                try:
                    result = await self._handler.on_request(method, params)
                    answer = _Result(id=request_id, result={} if result is None else result)
                except AcpError as exc:
                    answer = _ErrorResponse(
                        id=request_id, error=_ErrorObject(exc.code, exc.message, exc.data)
                    )
                except Exception as exc:
                    answer = _ErrorResponse(
                        id=request_id,
                        error=_ErrorObject(INTERNAL_ERROR, f"{method} failed: {exc!r}"),
                    )
            if scope.cancelled_caught:
                answer = _ErrorResponse(
                    id=request_id, error=_ErrorObject(REQUEST_CANCELLED, "request cancelled")
                )
        finally:
            del self._handling[request_id]
        if answer is not None:
            self._answer(answer)


def _params(params: Any) -> Any:
    return {} if params is None else params


def _decode_error(raw: msgspec.Raw) -> AcpError:
    error = _value_decoder.decode(raw)
    if not isinstance(error, dict):
        return AcpError(INTERNAL_ERROR, f"malformed error: {error!r}")
    code = error.get("code")
    message = error.get("message")
    return AcpError(
        code if isinstance(code, int) else INTERNAL_ERROR,
        message if isinstance(message, str) else "error without a message",
        error.get("data"),
    )
