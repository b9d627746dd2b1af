"""The "bare JSON-RPC" baseline for bench/rpc.py: a minimal trio NDJSON server.

It listens on a Unix socket, reads one line per request, decodes it with
msgspec into a small request Struct, and answers one line
``{"jsonrpc":"2.0","id":<id>,"result":{}}``. No method table, no params
validation, no per-request task, no audit: what is left is the floor any trio
JSON-RPC server on this machine pays (socket I/O, framing, one decode, one
encode). Run as ``python bench/echo_server.py SOCKET_PATH``; it serves until
SIGTERM or SIGINT and removes its socket file on the way out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from typing import Any, Final

import msgspec
import trio

RECEIVE_SIZE: Final = 64 * 1024
LISTEN_BACKLOG: Final = 128


class Request(msgspec.Struct):
    jsonrpc: str
    method: str
    id: int | str | None = None
    params: msgspec.Raw | None = None


class Response(msgspec.Struct):
    jsonrpc: str
    id: int | str | None
    result: dict[str, Any]


_DECODER: Final = msgspec.json.Decoder(Request)
_ENCODER: Final = msgspec.json.Encoder()
_EMPTY: Final[dict[str, Any]] = {}


async def serve_connection(stream: trio.SocketStream) -> None:
    buffer = bytearray()
    async with stream:
        while True:
            try:
                data = await stream.receive_some(RECEIVE_SIZE)
            except trio.BrokenResourceError:
                return
            if not data:
                return
            buffer += data
            answers = []
            while (end := buffer.find(b"\n")) >= 0:
                request = _DECODER.decode(buffer[:end])
                del buffer[: end + 1]
                answers.append(_ENCODER.encode(Response("2.0", request.id, _EMPTY)) + b"\n")
            if answers:
                try:
                    await stream.send_all(b"".join(answers))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return


async def main(path: str) -> None:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(LISTEN_BACKLOG)
    listener = trio.SocketListener(sock)
    try:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.serve_listeners, serve_connection, [listener])
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: echo_server.py SOCKET_PATH")
    trio.run(main, sys.argv[1])
