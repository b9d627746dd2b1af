"""The Unix-socket JSON-RPC server: accept, check the peer, serve each connection.

Each connection is served by one task that reads frames and runs the calls they
hold in order, inline; methods marked ``concurrent`` (long ones) get a task of
their own, at most ``max_inflight_per_connection`` at a time. Responses are
written straight to the socket under a per-connection lock, so what waits to be
sent is bounded by the calls that can be in flight: a client that stops reading
fills its socket buffer and then stalls only its own connection (its task stops
reading its requests). A send that makes no progress for
``write_stall_timeout_s`` (the kernel takes none of it, and the client reads
none of what the socket holds) disconnects the client. Nothing a client does can
block the accept loop or another connection: connections are capped (below what
the fd limit allows), an unfinished frame that stops arriving is dropped with its
connection, and unfinished frames share one budget of bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import itertools
import math
import os
import resource
import socket
import struct
import termios
from collections.abc import Callable
from typing import Final

import structlog
import trio

from mimird.config import RpcSection
from mimird.rpc.dispatch import Call, Dispatcher, Rejected, encode_error
from mimird.rpc.framing import (
    FrameBudget,
    FrameBudgetExceeded,
    FrameReader,
    FrameStalled,
    FrameTooLarge,
    stream_error,
)
from mimird.rpc.registry import CallContext, Connection, PeerCredentials
from mimird.wire.errors import ErrorCode

log = structlog.get_logger("mimird.rpc")

_UCRED: Final = struct.Struct("=iII")  # pid_t is signed, uid_t and gid_t unsigned
_INT: Final = struct.Struct("i")
#: Errors from accept() that mean "out of resources now", not "listener broken".
_ACCEPT_RESOURCE_ERRORS: Final = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
ACCEPT_BACKOFF_S: Final = 0.1
#: At most one log line per this long about failing accepts, and one about
#: refused connections (each with a count of those left out).
FLOOD_LOG_INTERVAL_S: Final = 10.0
#: File descriptors kept free of connections, for agents' pipes, the database,
#: logs and worktree work.
FD_RESERVE: Final = 256
#: How long the refusal of a connection past the cap may take to send.
REFUSAL_TIMEOUT_S: Final = 1.0
#: Writes larger than this go out in pieces of this size, each one progress.
WRITE_PIECE_BYTES: Final = 64 * 1024
#: How often, as a fraction of the stall timeout, a connection checks its sends.
STALL_CHECKS_PER_TIMEOUT: Final = 4
SHUTTING_DOWN_MESSAGE: Final = "mimird is shutting down; retry once it is back"
#: The bytes a blank line may hold (skipped without an answer).
_BLANK: Final = b" \t\r"

CredentialsFn = Callable[[socket.socket], PeerCredentials]


class _Throttle:
    """Lets one log line through per ``interval`` about something that may happen
    many times a second, and counts the ones it held back."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._last = -math.inf
        self._held_back = 0

    def allow(self) -> int | None:
        """None if this one is held back; else how many were since the last line."""
        now = trio.current_time()
        if now - self._last < self._interval:
            self._held_back += 1
            return None
        self._last = now
        held_back, self._held_back = self._held_back, 0
        return held_back


class _SpareFd:
    """A file descriptor held in reserve (on /dev/null) so that, out of them, the
    accept loop can still take a waiting client, to tell it why it is turned away
    rather than leave it hanging (the trick of libev and nginx)."""

    def __init__(self) -> None:
        self._fd: int | None = None

    def hold(self) -> bool:
        """Hold one (again); False while there is none to take."""
        if self._fd is None:
            try:
                self._fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return False
        return True

    def release(self) -> bool:
        """Free the one held for the next accept; False if none was held."""
        if self._fd is None:
            return False
        os.close(self._fd)
        self._fd = None
        return True


def connection_cap(configured: int) -> int:
    """How many connections may be open: ``configured``, or less if the fd limit
    leaves no room for that many plus :data:`FD_RESERVE`.

    Raises this process's soft ``RLIMIT_NOFILE`` to its hard limit first (the
    soft default, 1024, is for programs that use ``select``; trio does not)."""
    infinity = resource.RLIM_INFINITY  # -1 in Python: compare to it before ordering
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != infinity and (hard == infinity or soft < hard):
        # Linux takes no more than fs.nr_open (2^20 by default) for "infinity".
        wanted = hard if hard != infinity else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    if soft == infinity:
        return configured
    room = max(1, soft - FD_RESERVE)
    if room < configured:
        log.warning("rpc_connection_cap_clamped", configured=configured, cap=room, fd_limit=soft)
        return room
    return configured


def _unread_bytes(sock: socket.socket) -> int:
    """Bytes sent on ``sock`` that its peer has not read yet, or -1.

    ``SIOCOUTQ``, which has ``TIOCOUTQ``'s number; for a Unix stream socket it
    counts what the peer has not consumed (it sits in our send buffer)."""
    try:
        out = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, bytes(_INT.size))
    except OSError:
        return -1
    value: int = _INT.unpack(out)[0]
    return value


def _with_socket(stream: trio.SocketStream) -> tuple[socket.socket, trio.SocketStream]:
    """An accepted connection as its (non-blocking) stdlib socket, which the
    connection reads and writes itself when that needs no wait, and a stream over
    that same socket for the waits (and closing)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=stream.socket.detach())
    return sock, trio.SocketStream(trio.socket.from_stdlib_socket(sock))


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    pid, uid, gid = _UCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    )
    return PeerCredentials(pid=pid, uid=uid, gid=gid)


class _Sender:
    """Writes whole messages to one connection, one at a time, and notices stalls.

    A message the kernel takes whole at once (the common case: the socket buffer
    has room) is sent with one ``send`` and no schedule point; the rest of one it
    does not take goes through ``stream.send_all``, which waits for room. The
    connection's read is its schedule point (see :mod:`mimird.rpc.framing`)."""

    def __init__(self, stream: trio.SocketStream, sock: socket.socket) -> None:
        self._stream = stream
        self._sock = sock  # the stream's socket, non-blocking
        # A FIFO lock of our own: a flag, and a parking lot for the rare writer that
        # finds it taken (a subscription's events while an answer is written).
        # trio's Lock would cost a scheduler round per acquire, and registering a
        # parking-lot breaker per acquire; responses are written once per request.
        self._busy = False
        self._waiting = trio.lowlevel.ParkingLot()
        #: trio.current_time() when the send in progress started or last sent a
        #: piece, +inf when idle.
        self.progressed_at = math.inf

    async def send(self, message: bytes) -> None:
        await self.write(message + b"\n")

    async def send_many(self, messages: list[bytes]) -> None:
        """Several messages in one write (a subscription's batch of events)."""
        if messages:
            await self.write(b"\n".join(messages) + b"\n")

    async def write(self, data: bytes) -> None:
        """Write ``data`` after the writes before it. Not a checkpoint when the
        turn is free and the kernel takes ``data`` whole at once.

        Cancelled while waiting for its turn, nothing was written; cancelled while
        waiting for room in the socket, a part may have been, and the connection is
        closed by whoever cancelled it."""
        if self._busy or self._waiting:
            await self._waiting.park()  # woken by the writer before us, with the turn
        else:
            self._busy = True
        try:
            try:
                sent = self._sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise stream_error(exc) from exc
            if sent < len(data):
                self.progressed_at = trio.current_time()
                try:
                    with memoryview(data) as view:
                        await self._write_in_pieces(view[sent:])
                finally:
                    self.progressed_at = math.inf
        finally:
            if self._waiting:
                self._waiting.unpark()  # the turn goes to the next writer, still busy
            else:
                self._busy = False

    async def close(self) -> None:
        """Let the write in progress (and those already waiting) finish, then take
        the turn for good: a connection that ends after its client's EOF never cuts
        a message in the middle of its line. What a writer starts later waits, and
        ends with the connection, unwritten. The stall watch still bounds the wait."""
        if self._busy or self._waiting:
            await self._waiting.park()
        else:
            self._busy = True

    async def _write_in_pieces(self, view: memoryview) -> None:
        # So that a client reading a long answer slowly but steadily is not taken
        # for one that stopped: the clock runs from the last piece the kernel took.
        for start in range(0, len(view), WRITE_PIECE_BYTES):
            await self._stream.send_all(view[start : start + WRITE_PIECE_BYTES])
            self.progressed_at = trio.current_time()

    async def watch_stalls(self, stall_timeout: float, connection: trio.CancelScope) -> None:
        """Cancel ``connection`` once a send made no progress for ``stall_timeout``.

        Progress is a piece of the send taken by the kernel, or the client reading
        some of what waits in the socket (between two looks, the bytes the socket
        holds changed): the kernel wakes a blocked writer only once most of the
        buffer is read, which a slow reader may take longer than the timeout for."""
        sock = self._sock
        queued = -1  # what the socket held at the last look, -1 when not sending
        read_at = -math.inf  # when the client was last seen reading
        while True:
            await trio.sleep(stall_timeout / STALL_CHECKS_PER_TIMEOUT)
            progressed_at = self.progressed_at
            if progressed_at == math.inf:
                queued = -1
                continue
            now = trio.current_time()
            unread = _unread_bytes(sock)
            if unread != queued:
                if queued >= 0:
                    read_at = now
                queued = unread
            if now - max(progressed_at, read_at) > stall_timeout:
                log.warning("rpc_client_stalled", timeout_s=stall_timeout)
                connection.cancel()
                return


class RpcServer:
    def __init__(
        self,
        listen_socket: socket.socket,
        dispatcher: Dispatcher,
        options: RpcSection,
        *,
        credentials: CredentialsFn = peer_credentials,
    ) -> None:
        self._listener = trio.SocketListener(trio.socket.from_stdlib_socket(listen_socket))
        self._dispatcher = dispatcher
        self._options = options
        self._credentials = credentials
        self._conn_ids = itertools.count(1)
        self._closing = False
        self._active_calls = 0
        self._idle: trio.Event | None = None
        self._max_connections = connection_cap(options.max_connections)
        self._open = 0  # accepted and not closed yet, peers not checked included
        self._frame_budget = FrameBudget(options.max_partial_frame_bytes_total)
        self._refusals = _Throttle(FLOOD_LOG_INTERVAL_S)
        self._over_budget = _Throttle(FLOOD_LOG_INTERVAL_S)
        #: Connections of our own uid being served.
        self.connections = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept connections until cancelled or drained. Cancelling closes every connection."""
        # Out of fds, every retry fails alike (and every pending client with it):
        # a line per interval, not one per retry.
        failures, recoveries = _Throttle(FLOOD_LOG_INTERVAL_S), _Throttle(FLOOD_LOG_INTERVAL_S)
        failing = False
        spare = _SpareFd()
        spare.hold()
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                while True:
                    try:
                        stream = await self._listener.accept()
                    except trio.ClosedResourceError:
                        return  # drain() closed the listener; connections carry on
                    except OSError as exc:
                        if exc.errno not in _ACCEPT_RESOURCE_ERRORS:
                            raise
                        failing = True
                        if (held_back := failures.allow()) is not None:
                            log.error(
                                "rpc_accept_failed",
                                error=os.strerror(exc.errno or 0),
                                suppressed=held_back,
                                open_connections=self._open,
                            )
                        if spare.release():
                            continue  # the next accept takes it (or waits for a client)
                        await trio.sleep(ACCEPT_BACKOFF_S)
                        spare.hold()  # one freed meanwhile is kept for the next client
                        continue
                    if not spare.hold():  # taken with the spare: no fd to serve it with
                        await self._refuse(stream, out_of_fds=True)
                        spare.hold()
                        continue
                    if failing:
                        failing = False
                        if recoveries.allow() is not None:
                            log.info("rpc_accept_recovered", open_connections=self._open)
                    if self._open >= self._max_connections:
                        await self._refuse(stream)
                        continue
                    self._open += 1
                    nursery.start_soon(self._serve_connection, stream)
        finally:
            spare.release()

    async def _refuse(self, stream: trio.SocketStream, *, out_of_fds: bool = False) -> None:
        """Tell a connection past the cap (or taken while out of fds) why it is
        closed, and close it."""
        if out_of_fds:
            message = (
                f"mimird is out of file descriptors ({self._open} connections open); close "
                "some, or raise its open-files limit (LimitNOFILE)"
            )
            detail: dict[str, object] = {
                "reason": "out_of_file_descriptors",
                "connections": self._open,
            }
        else:
            message = (
                f"mimird is at its limit of {self._max_connections} connections; close "
                "another one, or raise [rpc] max_connections"
            )
            detail = {"reason": "max_connections", "limit": self._max_connections}
        try:
            peer = self._credentials(stream.socket)  # type: ignore[arg-type]
            if peer.uid == os.geteuid():
                if (held_back := self._refusals.allow()) is not None:
                    log.warning(
                        "rpc_connection_refused", pid=peer.pid, suppressed=held_back, **detail
                    )
                refusal = encode_error(
                    None,
                    ErrorCode.CONNECTION_LIMIT,
                    f"{message}; this connection is closed",
                    detail=detail,
                )
                # A new connection's socket buffer is empty: this does not wait.
                with trio.move_on_after(REFUSAL_TIMEOUT_S):
                    await stream.send_all(refusal + b"\n")
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            with trio.move_on_after(REFUSAL_TIMEOUT_S, shield=True):
                await stream.aclose()

    async def stop_accepting(self) -> None:
        """Accept no more connections, and answer new calls with "shutting down"."""
        self._closing = True
        await self._listener.aclose()

    async def drain(self, grace: float) -> None:
        """Stop accepting, answer new calls with "shutting down", and wait up to
        ``grace`` seconds for the calls in progress to finish."""
        await self.stop_accepting()
        with trio.move_on_after(grace):
            while self._active_calls:
                self._idle = trio.Event()
                await self._idle.wait()

    async def aclose(self) -> None:
        await self._listener.aclose()

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        """Serve one accepted connection (counted in ``_open`` by the accept loop)."""
        conn_id = next(self._conn_ids)
        sock, stream = _with_socket(stream)
        try:
            try:
                peer = self._credentials(sock)
            except OSError as exc:
                log.warning("rpc_peer_unknown", conn_id=conn_id, error=str(exc))
                return
            if peer.uid != os.geteuid():
                log.warning("rpc_peer_refused", conn_id=conn_id, uid=peer.uid, pid=peer.pid)
                return
            self.connections += 1
            try:
                await self._run_connection(sock, stream, CallContext(peer=peer, conn_id=conn_id))
            except Exception:
                log.exception("rpc_connection_crashed", conn_id=conn_id)
            finally:
                self.connections -= 1
        finally:
            with trio.move_on_after(1, shield=True):
                await stream.aclose()
            self._open -= 1

    async def _run_connection(
        self, sock: socket.socket, stream: trio.SocketStream, ctx: CallContext
    ) -> None:
        options = self._options
        reader = FrameReader(
            sock,
            options.max_frame_bytes,
            idle_timeout=options.idle_frame_timeout_s,
            budget=self._frame_budget,
        )
        try:
            await self._run_reader(_Sender(stream, sock), reader, ctx)
        finally:
            reader.release()

    async def _run_reader(self, sender: _Sender, reader: FrameReader, ctx: CallContext) -> None:
        options = self._options
        inflight = trio.Semaphore(options.max_inflight_per_connection)
        async with trio.open_nursery() as connection:
            connection.start_soon(
                sender.watch_stalls, options.write_stall_timeout_s, connection.cancel_scope
            )
            # One context for the calls run inline, one at a time: its after_response
            # list is emptied after each call (tasks get contexts of their own).
            ctx = dataclasses.replace(
                ctx,
                connection=Connection(ctx.conn_id, sender.send_many, connection),
                after_response=[],
            )
            async with trio.open_nursery() as handlers:
                # Caught inside the nursery: out of it, the error would come wrapped in an
                # ExceptionGroup (with Cancelled too at shutdown, escaping to run_daemon).
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self._read_loop(reader, sender, inflight, handlers, ctx)
            await sender.close()  # the subscriptions' message in progress goes out whole
            connection.cancel_scope.cancel()

    async def _read_loop(
        self,
        reader: FrameReader,
        sender: _Sender,
        inflight: trio.Semaphore,
        handlers: trio.Nursery,
        ctx: CallContext,
    ) -> None:
        dispatcher = self._dispatcher
        while True:
            try:
                frame = await reader.next_frame()
            except FrameTooLarge as exc:
                log.warning("rpc_frame_too_large", conn_id=ctx.conn_id, limit=exc.limit)
                await _send_last_words(sender, exc, limit=exc.limit, reason="frame_too_large")
                return
            except FrameBudgetExceeded as exc:
                if (held_back := self._over_budget.allow()) is not None:
                    log.warning(
                        "rpc_frame_budget_exceeded",
                        conn_id=ctx.conn_id,
                        limit=exc.limit,
                        suppressed=held_back,
                    )
                await _send_last_words(
                    sender, exc, limit=exc.limit, reason="partial_frames_over_budget"
                )
                return
            except FrameStalled as exc:
                log.warning("rpc_frame_stalled", conn_id=ctx.conn_id, timeout_s=exc.timeout)
                await _send_last_words(sender, exc, timeout_s=exc.timeout, reason="frame_stalled")
                return
            if frame is None:
                return
            if frame[:1] in _BLANK and not frame.strip(_BLANK):
                continue  # a blank line; other control bytes get a parse error
            prepared = dispatcher.prepare(frame)
            if prepared is None:
                continue
            if isinstance(prepared, bytes):
                await sender.send(prepared)
            elif self._closing:
                refusal = dispatcher.refuse(
                    prepared, ErrorCode.SHUTTING_DOWN, SHUTTING_DOWN_MESSAGE
                )
                if refusal is not None:
                    await sender.send(refusal)
            elif dispatcher.is_concurrent(prepared):
                await inflight.acquire()
                own = CallContext(ctx.peer, ctx.conn_id, ctx.connection, [])
                handlers.start_soon(self._execute_in_task, prepared, own, sender, inflight)
            else:
                await self._execute(prepared, ctx, sender)

    async def _execute(
        self,
        prepared: Call | Rejected | list[bytes | Call | Rejected],
        ctx: CallContext,
        sender: _Sender,
    ) -> None:
        """Run the call(s), send the answer, then run what the call asked to run after
        it (``ctx.after_response``, a list this empties, whatever happens)."""
        after = ctx.after_response
        assert after is not None
        try:
            response: bytes | None
            self._active_calls += 1
            try:
                if isinstance(prepared, Call | Rejected):  # one coroutine less than execute()
                    response = await self._dispatcher.call(prepared, ctx)
                    if prepared.notification:
                        response = None
                else:
                    response = await self._dispatcher.execute(prepared, ctx)
            finally:
                self._active_calls -= 1
                if not self._active_calls and self._idle is not None:
                    self._idle.set()
            if response is not None:
                await sender.write(response + b"\n")
            for callback in after:
                callback()
        finally:
            after.clear()

    async def _execute_in_task(
        self,
        prepared: Call | Rejected | list[bytes | Call | Rejected],
        ctx: CallContext,
        sender: _Sender,
        inflight: trio.Semaphore,
    ) -> None:
        try:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._execute(prepared, ctx, sender)
        finally:
            inflight.release()


async def _send_last_words(sender: _Sender, error: Exception, **detail: object) -> None:
    """The error a connection is closed for (``invalid_request``, ``id`` null)."""
    await sender.send(
        encode_error(
            None,
            ErrorCode.INVALID_REQUEST,
            f"{error}; the connection is closed",
            detail=detail,
        )
    )
