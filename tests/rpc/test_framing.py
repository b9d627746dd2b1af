"""The RPC server's frame reader on a real socket pair: a checkpoint per frame,
and nothing lost to a cancellation."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import trio

from mimird.rpc.framing import FrameReader


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setblocking(False)
    with ours, theirs:
        yield ours, theirs


async def test_a_frame_already_received_is_still_a_checkpoint_and_kept_if_cancelled_there(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    theirs.sendall(b"one\ntwo\n")
    reader = FrameReader(ours, 1024)
    assert await reader.next_frame() == b"one"
    with trio.CancelScope() as scope:
        scope.cancel()
        await reader.next_frame()  # "two" is buffered: no wait, but a checkpoint
    assert scope.cancelled_caught
    assert await reader.next_frame() == b"two"


async def test_a_frame_that_waited_for_its_bytes_needs_no_other_schedule_point(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    reader = FrameReader(ours, 1024)

    async def later() -> None:
        await trio.sleep(0.05)
        theirs.sendall(b"three\n")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(later)
        task = trio.lowlevel.current_task()
        before = task._schedule_points  # the count trio keeps per task
        assert await reader.next_frame() == b"three"
        assert task._schedule_points - before == 1


async def test_a_closed_socket_reads_as_a_closed_stream(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = pair
    reader = FrameReader(ours, 1024)
    ours.close()
    with pytest.raises(trio.ClosedResourceError):
        await reader.next_frame()


async def test_eof_ends_the_frames(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.sendall(b"last")
    theirs.shutdown(socket.SHUT_WR)
    reader = FrameReader(ours, 1024)
    assert await reader.next_frame() == b"last"
    assert await reader.next_frame() is None
