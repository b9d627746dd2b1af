"""The client side of an ACP (Agent Client Protocol) connection to one agent.

ACP is JSON-RPC 2.0 with one JSON object per ``\\n``-terminated line, over the
agent's stdin (our :class:`trio.abc.SendStream`) and stdout (our
:class:`trio.abc.ReceiveStream`). Both sides send requests, so there are two
id spaces: ours (ints from 1) and the agent's (ints from 0, strings, anything).

This module is a thin trio wrapper around two sans-IO cores that a blocking
client can reuse as well: :class:`mimird.wire.lines.LineSplitter` splits the
agent's output into lines, and :class:`mimird.wire.jsonrpc.JsonRpcPeer` turns
lines into events and keeps the ids (pending, abandoned, being handled). What
is left here is I/O: the tasks, the waiting callers, the handler's tasks.

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

import math
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Final, Protocol

import trio

from mimird.errors import InvalidParams, MimirError, NotFound
from mimird.wire import jsonrpc
from mimird.wire.codes import ErrorCode
from mimird.wire.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RequestId,
)
from mimird.wire.lines import END, NEED_DATA, LineSplitter, TooLong

#: A line longer than this is skipped (and reported). Real agents send whole
#: files and base64 images in one line, so this is far above any real message;
#: it only bounds memory.
MAX_LINE_BYTES: Final = 64 * 1024 * 1024
RECEIVE_SIZE: Final = 64 * 1024
#: ACP's "resource not found", e.g. for a file read of a missing file.
RESOURCE_NOT_FOUND: Final = -32002
#: ACP's "request cancelled", the answer to a request ended by ``$/cancel_request``.
REQUEST_CANCELLED: Final = -32800
CANCEL_REQUEST_METHOD: Final = "$/cancel_request"
#: The answer to a request past the agent's cap on requests in flight (Mimir's
#: ``busy``: the agent may ask again once some are answered).
BUSY: Final = int(ErrorCode.BUSY)
#: Requests of the agent handled at once unless the owner says otherwise.
MAX_REQUESTS: Final = 64

__all__ = [
    "BUSY",
    "CANCEL_REQUEST_METHOD",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "REQUEST_CANCELLED",
    "RESOURCE_NOT_FOUND",
    "AcpConnection",
    "AcpConnectionClosed",
    "AcpError",
    "AcpHandler",
    "MethodNotFound",
    "RequestId",
    "map_exceptions",
]


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
        max_requests: int = MAX_REQUESTS,
    ) -> None:
        self._receive = receive
        self._send = send
        self._handler = handler
        self._nursery = nursery
        self._max_line_bytes = max_line_bytes
        self._max_requests = max_requests
        self._peer = jsonrpc.JsonRpcPeer(cancel_method=CANCEL_REQUEST_METHOD)
        self._pending: dict[int, _Pending] = {}
        self._handling: dict[int | str | None, trio.CancelScope] = {}
        #: The method of each request in ``_handling``.
        self._handling_methods: dict[int | str | None, str] = {}
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
        max_requests: int = MAX_REQUESTS,
    ) -> AsyncIterator[AcpConnection]:
        """Run a connection over ``receive`` (agent stdout) and ``send`` (agent stdin).

        At most ``max_requests`` requests of the agent are handled at once; one more
        is answered at once with :data:`BUSY` (no task is started for it).

        Leaving the block cancels the connection's tasks (handlers included) and
        fails requests still waiting with :class:`AcpConnectionClosed`; it does
        not close the streams or stop the agent.

        Cancellation: as leaving the block; handlers the agent's requests started
        are cancelled (the agent gets no answer to them)."""
        async with trio.open_nursery() as nursery:
            connection = cls(receive, send, handler, nursery, max_line_bytes, max_requests)
            nursery.start_soon(connection._read_loop)
            nursery.start_soon(connection._write_loop)
            try:
                yield connection
            finally:
                connection._close("the connection was closed by its owner")
                nursery.cancel_scope.cancel()

    def handling(self, method: str) -> int:
        """How many requests of ``method`` from the agent are read and not answered yet
        (also those whose handler has not begun)."""
        return sum(1 for m in self._handling_methods.values() if m == method)

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
        if self._closed_reason is not None:
            raise AcpConnectionClosed(self._closed_reason)
        request_id, line = self._peer.request(method, params)
        pending = self._pending[request_id] = _Pending()
        try:
            self._queue(line)
            await pending.done.wait()
        except trio.Cancelled:
            if self._pending.pop(request_id, None) is not None and not self.closed:
                cancel = self._peer.abandon(request_id)
                if cancel is not None:
                    # _queue never blocks, so this cannot be held up by a slow agent.
                    self._queue(cancel)
            raise
        finally:
            self._pending.pop(request_id, None)
            self._peer.forget(request_id)
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
        self._queue(self._peer.notify(method, params), written)
        self._unwritten.add(written)
        await written.done.wait()
        if not written.ok:
            raise AcpConnectionClosed(self._closed_reason or "the connection closed")

    # -- writing -----------------------------------------------------------------

    def _queue(self, line: bytes, written: _Written | None = None) -> None:
        if self._closed_reason is not None:
            raise AcpConnectionClosed(self._closed_reason)
        self._outbox_send.send_nowait((line, written))

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

    def _answer(self, line: bytes) -> None:
        # An answer to an agent that is gone has nowhere to go; that is not an error.
        if self._closed_reason is None:
            self._outbox_send.send_nowait((line, None))

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
        splitter = LineSplitter(self._max_line_bytes)
        peer = self._peer
        try:
            while True:
                event = splitter.next_event()
                if isinstance(event, bytes):
                    await self._dispatch(peer.receive(event))
                elif isinstance(event, TooLong):
                    await self._dispatch(peer.receive_too_long(event.head, event.limit))
                elif event is NEED_DATA:
                    try:
                        data = await self._receive.receive_some(RECEIVE_SIZE)
                    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                        self._close(f"the agent's stdout failed ({exc or type(exc).__name__})")
                        return
                    splitter.feed(data)
                else:
                    assert event is END
                    self._close("the agent closed its stdout (it probably exited)")
                    return
        finally:
            self._reader_done.set()

    async def _dispatch(self, events: list[jsonrpc.Event]) -> None:
        """Act on the events of one line, in order."""
        for event in events:
            if isinstance(event, jsonrpc.Notification):
                await self._handler.on_notification(event.method, event.params)
            elif isinstance(event, jsonrpc.Request):
                if len(self._handling) >= self._max_requests:
                    # Counted here, before any task starts: a flood costs one line each.
                    self._answer(self._peer.answer_error(event.id, BUSY, self._busy(event)))
                    continue
                scope = self._handling[event.id] = trio.CancelScope()
                self._handling_methods[event.id] = event.method
                self._nursery.start_soon(self._handle, event, scope)
            elif isinstance(event, jsonrpc.Response | jsonrpc.ErrorResponse):
                pending = self._pending.pop(event.id, None)
                if pending is not None:
                    if isinstance(event, jsonrpc.Response):
                        pending.result = event.result
                    else:
                        pending.error = AcpError(event.code, event.message, event.data)
                    pending.done.set()
            elif isinstance(event, jsonrpc.CancelRequested):
                handling = self._handling.get(event.id)
                if handling is not None:
                    handling.cancel()
            elif isinstance(event, jsonrpc.ProtocolError):
                await self._handler.on_protocol_error(event.preview, event.reason)
            else:
                assert isinstance(event, jsonrpc.Outgoing)
                self._answer(event.data)

    # -- requests from the agent -------------------------------------------------

    def _busy(self, request: jsonrpc.Request) -> str:
        return (
            f"{request.method} refused: {len(self._handling)} requests of this agent are "
            "being answered already, the most Mimir takes at once ([supervision] "
            "max_agent_requests); send it again once some are answered"
        )

    async def _handle(self, request: jsonrpc.Request, scope: trio.CancelScope) -> None:
        peer, request_id = self._peer, request.id
        answer: bytes | None = None
        try:
            with scope:
                try:
                    result = await self._handler.on_request(request.method, request.params)
                    answer = peer.answer(request_id, {} if result is None else result)
                except AcpError as exc:
                    answer = peer.answer_error(request_id, exc.code, exc.message, exc.data)
                except Exception as exc:
                    answer = peer.answer_error(
                        request_id, INTERNAL_ERROR, f"{request.method} failed: {exc!r}"
                    )
            if scope.cancelled_caught:
                answer = peer.answer_error(request_id, REQUEST_CANCELLED, "request cancelled")
        finally:
            del self._handling[request_id]
            del self._handling_methods[request_id]
            peer.handling.discard(request_id)
        if answer is not None:
            self._answer(answer)
