"""The write-stall clock (issue 10): a client that reads a large answer slowly but
steadily is served in full; one that stops reading is disconnected. A client that
ends its side while a notification is being written still gets it whole.

The RPC server on its own, on a real socket, with a method that answers with a
large string (cheaper to make than a large session)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import msgspec
import pytest
import trio

from mimird.config import RpcSection
from mimird.rpc.dispatch import Dispatcher
from mimird.rpc.registry import CallContext, Registry
from mimird.rpc.server import RpcServer
from mimird.wire.types import Params
from tests.support.helpers import DaemonDirs, TrioClient

STALL_TIMEOUT_S: Final = 1.0
READ_BYTES: Final = 16 * 1024
DEADLINE_S: Final = 30.0


class LargeParams(Params):
    size: int


async def large(ctx: CallContext, params: LargeParams) -> str:
    return "x" * params.size


async def notify_large(ctx: CallContext, params: LargeParams) -> None:
    """Answer, then send one notification of ``size`` bytes from a task of the
    connection's own (as a subscription does)."""
    connection, after = ctx.connection, ctx.after_response
    assert connection is not None
    assert after is not None
    notification = msgspec.json.encode(
        {"jsonrpc": "2.0", "method": "test.note", "params": {"text": "y" * params.size}}
    )
    after.append(lambda: connection.nursery.start_soon(connection.send_many, [notification]))


class NoAudit:
    async def record(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("no test method is mutating")


@pytest.fixture
async def served(dirs: DaemonDirs) -> AsyncIterator[tuple[RpcServer, Path]]:
    registry = Registry()
    registry.add("test.large", large, params=LargeParams, result=str, summary="a large answer")
    registry.add(
        "test.notify_large", notify_large, params=LargeParams, result=None, summary="a large note"
    )
    dirs.runtime.mkdir(mode=0o700, parents=True)
    path = dirs.runtime / "test.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    options = RpcSection(write_stall_timeout_s=STALL_TIMEOUT_S)
    server = RpcServer(listener, Dispatcher(registry, NoAudit()), options)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server, path
        nursery.cancel_scope.cancel()


def request(size: int) -> bytes:
    return msgspec.json.encode(
        {"jsonrpc": "2.0", "id": 1, "method": "test.large", "params": {"size": size}}
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("size", "read_bytes", "pause_s"),
    [
        # Each piece of the answer the daemon writes is taken by the kernel quickly.
        pytest.param(4 << 20, 16 * 1024, 0.01, id="1.6MB/s"),
        # Slower than the kernel frees a full socket buffer within the timeout
        # (it wakes a blocked writer once 3/4 of it was read): only the bytes the
        # socket holds show that the client reads.
        pytest.param(300_000, 4 * 1024, 0.05, id="80kB/s"),
    ],
)
async def test_a_slow_but_steady_reader_of_a_large_answer_gets_all_of_it(
    served: tuple[RpcServer, Path], size: int, read_bytes: int, pause_s: float
) -> None:
    _, path = served
    received = bytearray()
    with trio.fail_after(DEADLINE_S):
        async with TrioClient.connect(path) as client:
            await client.send_line(request(size))
            started = trio.current_time()
            while not received.endswith(b"\n"):
                data = await client.stream.receive_some(read_bytes)
                assert data, f"disconnected after {len(received)} bytes"
                received += data
                await trio.sleep(pause_s)
            took = trio.current_time() - started
    assert took > 2 * STALL_TIMEOUT_S  # else the test proves nothing
    assert msgspec.json.decode(received)["result"] == "x" * size


async def test_a_client_that_stops_reading_a_large_answer_is_disconnected(
    served: tuple[RpcServer, Path],
) -> None:
    server, path = served
    with trio.fail_after(DEADLINE_S):
        async with TrioClient.connect(path) as client:
            await client.send_line(request(4 << 20))
            await client.stream.receive_some(READ_BYTES)
            while server.connections:  # noqa: ASYNC110 (a counter, no event to wait on)
                await trio.sleep(STALL_TIMEOUT_S / 4)
            # What the socket held is still there, then the end: no whole answer.
            received = bytearray()
            while data := await client.stream.receive_some(1 << 20):
                received += data
    assert not received.endswith(b"\n")


async def test_a_notification_being_written_when_the_client_ends_its_side_goes_out_whole(
    served: tuple[RpcServer, Path],
) -> None:
    _, path = served
    size = 4 << 20  # far more than the socket holds: the write is in progress at the EOF
    frame = msgspec.json.encode(
        {"jsonrpc": "2.0", "id": 1, "method": "test.notify_large", "params": {"size": size}}
    )
    received = bytearray()
    with trio.fail_after(DEADLINE_S):
        async with TrioClient.connect(path) as client:
            await client.send_line(frame)
            while received.count(b"\n") < 1 or received.endswith(b"\n"):
                received += await client.stream.receive_some(READ_BYTES)  # the note began
            await client.stream.send_eof()
            while data := await client.stream.receive_some(1 << 20):
                received += data
    answer, note, rest = bytes(received).split(b"\n")
    assert msgspec.json.decode(answer)["result"] is None
    assert msgspec.json.decode(note)["params"]["text"] == "y" * size
    assert rest == b""
