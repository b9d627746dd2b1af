"""The Unix-socket JSON-RPC server: accept, check the peer, serve each connection.

Each connection runs a reader (frames in), one task per request (bounded by
``max_inflight_per_connection``) and a writer that drains a bounded outgoing
queue. A client that stops reading fills its own queue and then stalls only
its own requests; after ``write_stall_timeout_s`` without progress it is
disconnected. Nothing a client does can block the accept loop or another
connection.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import socket
import struct
from collections.abc import Callable
from typing import Final

import structlog
import trio

from mimird.config import RpcSection
from mimird.rpc.dispatch import Dispatcher, encode_error
from mimird.rpc.framing import FrameReader, FrameTooLarge
from mimird.rpc.registry import CallContext, PeerCredentials
from mimird.wire.errors import ErrorCode

log = structlog.get_logger("mimird.rpc")

_UCRED: Final = struct.Struct("=iII")  # pid_t is signed, uid_t and gid_t unsigned
#: Most messages the writer joins into one send.
MAX_COALESCE: Final = 64
#: Errors from accept() that mean "out of resources now", not "listener broken".
_ACCEPT_RESOURCE_ERRORS: Final = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
ACCEPT_BACKOFF_S: Final = 0.1

CredentialsFn = Callable[[socket.socket], PeerCredentials]


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    pid, uid, gid = _UCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    )
    return PeerCredentials(pid=pid, uid=uid, gid=gid)


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
        self.connections = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept connections until cancelled. Cancelling closes every connection."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                try:
                    stream = await self._listener.accept()
                except OSError as exc:
                    if exc.errno not in _ACCEPT_RESOURCE_ERRORS:
                        raise
                    log.error("rpc_accept_failed", error=os.strerror(exc.errno or 0))
                    await trio.sleep(ACCEPT_BACKOFF_S)
                    continue
                nursery.start_soon(self._serve_connection, stream)

    async def aclose(self) -> None:
        await self._listener.aclose()

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        conn_id = next(self._conn_ids)
        try:
            try:
                peer = self._credentials(stream.socket)  # type: ignore[arg-type]
            except OSError as exc:
                log.warning("rpc_peer_unknown", conn_id=conn_id, error=str(exc))
                return
            if peer.uid != os.geteuid():
                log.warning("rpc_peer_refused", conn_id=conn_id, uid=peer.uid, pid=peer.pid)
                return
            self.connections += 1
            try:
                await self._run_connection(stream, CallContext(peer=peer, conn_id=conn_id))
            except Exception:
                log.exception("rpc_connection_crashed", conn_id=conn_id)
            finally:
                self.connections -= 1
        finally:
            with trio.move_on_after(1, shield=True):
                await stream.aclose()

    async def _run_connection(self, stream: trio.SocketStream, ctx: CallContext) -> None:
        options = self._options
        reader = FrameReader(stream, options.max_frame_bytes)
        inflight = trio.Semaphore(options.max_inflight_per_connection)
        send, receive = trio.open_memory_channel[bytes](options.outgoing_queue)
        async with trio.open_nursery() as conn_nursery:
            conn_nursery.start_soon(self._write_loop, stream, receive, conn_nursery.cancel_scope)
            async with send:
                oversize: FrameTooLarge | None = None
                async with trio.open_nursery() as handlers:
                    while True:
                        try:
                            frame = await reader.next_frame()
                        except FrameTooLarge as exc:
                            oversize = exc
                            break
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            break
                        if frame is None:
                            break
                        if not frame.strip():
                            continue
                        await inflight.acquire()
                        handlers.start_soon(self._handle, frame, ctx, send, inflight)
                if oversize is not None:
                    log.warning("rpc_frame_too_large", conn_id=ctx.conn_id, limit=oversize.limit)
                    message = encode_error(
                        None,
                        ErrorCode.INVALID_REQUEST,
                        f"{oversize}; the connection is closed",
                        detail={"limit": oversize.limit, "reason": "frame_too_large"},
                    )
                    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        await send.send(message)

    async def _handle(
        self,
        frame: bytes,
        ctx: CallContext,
        send: trio.MemorySendChannel[bytes],
        inflight: trio.Semaphore,
    ) -> None:
        try:
            response = await self._dispatcher.handle_frame(frame, ctx)
            if response is not None:
                await send.send(response)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the writer is gone: the client disconnected
        finally:
            inflight.release()

    async def _write_loop(
        self,
        stream: trio.SocketStream,
        receive: trio.MemoryReceiveChannel[bytes],
        connection_scope: trio.CancelScope,
    ) -> None:
        async with receive:
            async for message in receive:
                chunks = [message, b"\n"]
                while len(chunks) < 2 * MAX_COALESCE:
                    try:
                        chunks += (receive.receive_nowait(), b"\n")
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                with trio.move_on_after(self._options.write_stall_timeout_s) as stall:
                    try:
                        await stream.send_all(b"".join(chunks))
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        connection_scope.cancel()
                        return
                if stall.cancelled_caught:
                    log.warning("rpc_client_stalled", timeout_s=self._options.write_stall_timeout_s)
                    connection_scope.cancel()
                    return
