"""NDJSON framing: one JSON text per ``\\n``-terminated line, with a size limit.

The splitting is :class:`mimird.wire.lines.LineSplitter`'s (shared with the ACP
connection and clients); this module only reads the socket for it, and bounds
what unfinished frames may cost: in time per connection (a frame that stops
arriving), and in bytes across all connections (:class:`FrameBudget`).

It reads the (non-blocking) socket itself rather than through a trio stream: a
``recv`` that finds bytes waiting returns them at once, and only an empty socket
waits (``trio.lowlevel.wait_readable``). That wait is the connection's one
schedule point per request; a frame that needed none gets an explicit one, so a
client that pipelines requests cannot keep the others from running. (Through
``SocketStream``, each ``receive_some`` and each ``send_all`` that succeed at once
pay a scheduler round of their own: two per request, most of a request's cost.)"""

from __future__ import annotations

import errno
import math
import socket
from typing import Final

import trio

from mimird.wire.lines import END, NEED_DATA, LineSplitter, TooLong

RECEIVE_SIZE: Final = 64 * 1024
#: What a socket operation fails with once the socket is closed (as trio's streams
#: tell them apart: closed here, or broken by the peer).
CLOSED_ERRNOS: Final = frozenset({errno.EBADF, errno.ENOTSOCK})


def stream_error(exc: OSError) -> trio.ClosedResourceError | trio.BrokenResourceError:
    """The trio stream error for a failed socket call (what ``SocketStream`` raises)."""
    if exc.errno in CLOSED_ERRNOS:
        return trio.ClosedResourceError("the connection's socket was already closed")
    return trio.BrokenResourceError(f"connection broken: {exc}")


class FrameTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"frame exceeds the limit of {limit} bytes")
        self.limit = limit


class FrameStalled(Exception):
    """Part of a frame arrived, then nothing more for the idle timeout."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"no more of an unfinished frame arrived for {timeout:g} s")
        self.timeout = timeout


class FrameBudgetExceeded(Exception):
    """This connection's unfinished frame would take the total past the budget."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"unfinished frames of all connections would exceed the daemon's budget of "
            f"{limit} bytes"
        )
        self.limit = limit


class FrameBudget:
    """Bytes of unfinished frames held by all connections together, and their limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0


class FrameReader:
    """Splits a byte stream into frames without ever holding more than the limit
    (plus one receive) of an unterminated frame.

    With a ``budget``, the bytes of its unfinished frame count against it (call
    :meth:`release` when the connection ends); with an ``idle_timeout``, a frame
    begun and then left without a byte for that long raises :class:`FrameStalled`.
    Waiting between whole frames is never timed."""

    def __init__(
        self,
        sock: socket.socket,
        max_frame_bytes: int,
        *,
        idle_timeout: float = math.inf,
        budget: FrameBudget | None = None,
    ) -> None:
        self._sock = sock  # non-blocking
        self._splitter = LineSplitter(max_frame_bytes)
        self._idle_timeout = idle_timeout
        self._budget = budget
        self._held = 0  # what this reader counts in the budget
        self._waited = False  # passed a schedule point since the last frame

    async def next_frame(self) -> bytes | None:
        """The next frame without its newline, or None at end of stream.

        A last frame without a trailing newline is returned at EOF. Raises
        :class:`FrameTooLarge` as soon as a frame is known to exceed the limit,
        :class:`FrameBudgetExceeded` when the unfinished frame grew past what the
        budget has left, :class:`FrameStalled` when it stopped growing, and
        ``trio.BrokenResourceError`` / ``trio.ClosedResourceError`` as a stream
        would.

        A checkpoint for every frame: the wait for its bytes, or, for a frame that
        needed none (buffered, or already in the socket), one of its own.

        Cancellation: bytes received stay buffered; the next call goes on."""
        splitter = self._splitter
        while True:
            if not self._waited and splitter.has_line():
                await trio.lowlevel.checkpoint()  # cancelled here, the frame stays buffered
                self._waited = True
            event = splitter.next_event()
            if isinstance(event, bytes):
                self._waited = False
                if self._held:  # the frame it counted is out of the buffer now
                    self._account(splitter.pending)
                return event
            if event is NEED_DATA:
                pending = splitter.pending
                if pending != self._held and self._budget is not None:
                    self._account(pending)
                if not pending:
                    splitter.feed(await self._receive())
                    continue
                # A timer per receive of a frame's rest, not per request: most
                # frames arrive in one receive.
                with trio.move_on_after(self._idle_timeout) as waiting:
                    data = await self._receive()
                if waiting.cancelled_caught:
                    raise FrameStalled(self._idle_timeout)
                splitter.feed(data)
            elif event is END:
                return None
            else:
                assert isinstance(event, TooLong)
                raise FrameTooLarge(event.limit)

    async def _receive(self) -> bytes:
        """What the socket holds, waiting only when it holds nothing."""
        sock = self._sock
        while True:
            try:
                return sock.recv(RECEIVE_SIZE)
            except BlockingIOError:
                pass
            except OSError as exc:
                raise stream_error(exc) from exc
            await trio.lowlevel.wait_readable(sock)
            self._waited = True

    def _account(self, pending: int) -> None:
        budget = self._budget
        assert budget is not None
        grown = pending - self._held
        budget.held += grown
        self._held = pending
        if grown > 0 and budget.held > budget.limit:
            self.release()
            raise FrameBudgetExceeded(budget.limit)

    def release(self) -> None:
        """Stop counting this reader's bytes in the budget (its connection ended)."""
        if self._budget is not None:
            self._budget.held -= self._held
        self._held = 0
