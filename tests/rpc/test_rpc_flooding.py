"""A client of the user's own uid that floods the socket (issue 10): too many
connections, unfinished frames that stall or add up, and accept() out of fds.

Each test runs a real daemon (in-process, or as a process when the fd limit of
the process is the point) with small limits in its config file, and talks to it
through real sockets."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, ExitStack
from typing import Any, Final

import msgspec
import pytest
import trio
import trio.testing

from mimird.rpc.server import FD_RESERVE
from mimird.wire.errors import ErrorCode
from tests.support.helpers import (
    DaemonDirs,
    InProcessDaemon,
    TrioClient,
    blocking_call,
    daemon_process,
    in_process_daemon,
    run_mimirctl,
)

DEADLINE_S: Final = 10.0
STATUS: Final = {"jsonrpc": "2.0", "id": 1, "method": "daemon.status"}
MAX_CONNECTIONS: Final = 3
IDLE_FRAME_TIMEOUT_S: Final = 0.5
FRAME_LIMIT: Final = 100_000
FRAMES_BUDGET: Final = 150_000
#: More than half the budget, less than all of it: one such frame fits, two do not.
PARTIAL_BYTES: Final = 90_000


def padded_request(size: int) -> bytes:
    """A valid daemon.status request exactly ``size`` bytes long."""
    head, tail = b'{"jsonrpc":"2.0","id":1,"method":"daemon.status"', b"}"
    return head + b" " * (size - len(head) - len(tail)) + tail


def only_error(lines: list[bytes], code: ErrorCode) -> dict[str, Any]:
    """The one line is error ``code`` with id null; its ``error.data``."""
    assert len(lines) == 1, lines
    response = msgspec.json.decode(lines[0])
    assert response["id"] is None
    assert response["error"]["code"] == code, response
    data: dict[str, Any] = response["error"]["data"]
    assert data["kind"] == code.kind
    return data


async def answers(client: TrioClient) -> bool:
    with trio.fail_after(DEADLINE_S):
        response = await client.call_raw("daemon.status")
    return "result" in response


def unsent_bytes(stream: trio.SocketStream) -> int:
    """Bytes this side sent that the daemon has not read yet."""
    raw = fcntl.ioctl(stream.socket.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    count: int = struct.unpack("i", raw)[0]
    return count


async def until_read_by_the_daemon(client: TrioClient) -> None:
    """Until the (in-process) daemon has read and handled all this client sent."""
    with trio.fail_after(DEADLINE_S):
        while unsent_bytes(client.stream):  # noqa: ASYNC110 (a kernel counter, no event)
            await trio.sleep(0.01)
        # trio reschedules the reader after its recv() before it goes on.
        await trio.testing.wait_all_tasks_blocked()


@pytest.fixture
async def capped(dirs: DaemonDirs) -> AsyncIterator[InProcessDaemon]:
    dirs.config.write_text(f"[rpc]\nmax_connections = {MAX_CONNECTIONS}\n")
    async with in_process_daemon(dirs) as running:
        yield running


# ---- the connection cap -----------------------------------------------------------------


async def test_a_connection_past_the_cap_gets_one_refusal_then_eof(
    capped: InProcessDaemon,
) -> None:
    async with AsyncExitStack() as stack:
        for _ in range(MAX_CONNECTIONS):
            held = await stack.enter_async_context(TrioClient.connect(capped.socket))
            assert await answers(held)
        async with TrioClient.connect(capped.socket) as extra:
            lines = await extra.lines_until_closed()
    data = only_error(lines, ErrorCode.CONNECTION_LIMIT)
    assert data["detail"] == {"reason": "max_connections", "limit": MAX_CONNECTIONS}
    assert msgspec.json.decode(lines[0])["error"]["message"] == (
        f"mimird is at its limit of {MAX_CONNECTIONS} connections; close another one, "
        "or raise [rpc] max_connections; this connection is closed"
    )


async def test_connections_under_the_cap_keep_working_while_extra_ones_are_refused(
    capped: InProcessDaemon,
) -> None:
    async with AsyncExitStack() as stack:
        held = [
            await stack.enter_async_context(TrioClient.connect(capped.socket))
            for _ in range(MAX_CONNECTIONS)
        ]
        for _ in range(3):
            async with TrioClient.connect(capped.socket) as extra:
                await extra.lines_until_closed()
        for client in held:
            assert await answers(client)


async def test_daemon_status_counts_the_open_connections(capped: InProcessDaemon) -> None:
    async def counted(client: TrioClient) -> int:
        with trio.fail_after(DEADLINE_S):
            response = await client.call_raw("daemon.status")
        connections: int = response["result"]["counts"]["connections"]
        return connections

    async with TrioClient.connect(capped.socket) as first:
        assert await counted(first) == 1
        async with TrioClient.connect(capped.socket) as second:
            assert await counted(second) == 2
            async with TrioClient.connect(capped.socket) as third:
                assert await counted(third) == 3
            # The daemon notices the close when it reads its EOF: until then, ask again.
            with trio.fail_after(DEADLINE_S):
                while True:
                    count = await counted(second)
                    if count != 3:
                        break
                    await trio.sleep(0.02)
            assert count == 2


async def test_a_new_connection_is_served_once_others_closed(capped: InProcessDaemon) -> None:
    async with AsyncExitStack() as stack:
        for _ in range(MAX_CONNECTIONS):
            held = await stack.enter_async_context(TrioClient.connect(capped.socket))
            assert await answers(held)
    # The daemon notices the closes when it reads their EOFs: until then, retry.
    with trio.fail_after(DEADLINE_S):
        while True:
            async with TrioClient.connect(capped.socket) as client:
                with trio.fail_after(DEADLINE_S):
                    await client.send_line(json.dumps(STATUS).encode())
                    reply = await client.read_line()
            assert reply is not None
            if "result" in msgspec.json.decode(reply):
                break
            await trio.sleep(0.05)


@pytest.mark.parametrize(
    ("soft", "hard", "configured", "cap"),
    [
        pytest.param(300, 300, 1000, 300 - FD_RESERVE, id="clamped"),
        pytest.param(300, 400, 1000, 400 - FD_RESERVE, id="soft-raised-to-hard-first"),
        pytest.param(1024, 1024, 10, 10, id="configured-fits"),
    ],
)
def test_the_cap_leaves_room_under_the_fd_limit(
    soft: int, hard: int, configured: int, cap: int
) -> None:
    """In a process of its own: the limit of this one must not change."""
    code = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))\n"
        "from mimird.rpc.server import connection_cap\n"
        f"print(connection_cap({configured}), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    # The last line: the clamp is logged (to stdout, no logging set up) before it.
    assert result.stdout.splitlines()[-1].split() == [str(cap), str(hard)]


@contextlib.contextmanager
def served_connection(dirs: DaemonDirs) -> Iterator[socket.socket]:
    """A connection the daemon serves (until it noticed others close, it may refuse)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as held:
            held.settimeout(DEADLINE_S)
            held.connect(str(dirs.socket))
            held.sendall(json.dumps(STATUS).encode() + b"\n")
            if b'"result"' in held.recv(65536):
                yield held
                return
        assert time.monotonic() < deadline, "no connection was served"
        time.sleep(0.05)


@pytest.mark.parametrize("command", [["status"], ["project", "ls"]])
def test_mimirctl_past_the_cap_says_the_daemon_is_at_its_connection_limit(
    dirs: DaemonDirs, command: list[str]
) -> None:
    dirs.config.write_text("[rpc]\nmax_connections = 1\n")
    with daemon_process(dirs), served_connection(dirs):
        result = run_mimirctl(dirs, *command)
    assert result.returncode == 1, result
    assert result.stderr.startswith("mimirctl: mimird is at its limit of 1 connections"), result


# ---- unfinished frames ------------------------------------------------------------------


async def test_a_half_sent_frame_that_stalls_is_closed_but_an_idle_subscriber_is_not(
    dirs: DaemonDirs,
) -> None:
    dirs.config.write_text(f"[rpc]\nidle_frame_timeout_s = {IDLE_FRAME_TIMEOUT_S}\n")
    async with (
        in_process_daemon(dirs) as daemon,
        TrioClient.connect(daemon.socket) as subscriber,
        TrioClient.connect(daemon.socket) as stalling,
    ):
        with trio.fail_after(DEADLINE_S):
            subscribed = await subscriber.call_raw("subscribe", {})
        assert "result" in subscribed, subscribed
        with trio.fail_after(DEADLINE_S):
            await stalling.stream.send_all(b'{"jsonrpc":"2.0","id":1,"meth')
        data = only_error(await stalling.lines_until_closed(), ErrorCode.INVALID_REQUEST)
        assert data["detail"] == {"timeout_s": IDLE_FRAME_TIMEOUT_S, "reason": "frame_stalled"}
        # The subscriber sat idle all that time, between whole frames.
        assert await answers(subscriber)


@pytest.mark.slow
async def test_a_frame_that_keeps_arriving_is_not_cut_by_the_idle_timeout(
    dirs: DaemonDirs,
) -> None:
    dirs.config.write_text(f"[rpc]\nidle_frame_timeout_s = {IDLE_FRAME_TIMEOUT_S}\n")
    frame = json.dumps(STATUS).encode() + b"\n"
    async with in_process_daemon(dirs) as daemon, TrioClient.connect(daemon.socket) as client:
        started = trio.current_time()
        # Byte by byte for longer than the timeout in all, each byte well within it.
        for byte in frame:
            await client.stream.send_all(bytes([byte]))
            await trio.sleep(IDLE_FRAME_TIMEOUT_S / 5)
        assert trio.current_time() - started > IDLE_FRAME_TIMEOUT_S
        with trio.fail_after(DEADLINE_S):
            assert "result" in await client.read_json()


async def test_unfinished_frames_past_the_total_budget_are_refused(dirs: DaemonDirs) -> None:
    dirs.config.write_text(
        f"[rpc]\nmax_frame_bytes = {FRAME_LIMIT}\nmax_partial_frame_bytes_total = {FRAMES_BUDGET}\n"
    )
    request = padded_request(PARTIAL_BYTES + 1)
    async with (
        in_process_daemon(dirs) as daemon,
        TrioClient.connect(daemon.socket) as first,
        TrioClient.connect(daemon.socket) as second,
    ):
        with trio.fail_after(DEADLINE_S):
            await first.stream.send_all(request[:PARTIAL_BYTES])
        await until_read_by_the_daemon(first)
        with trio.fail_after(DEADLINE_S):
            await second.stream.send_all(request[:PARTIAL_BYTES])
        data = only_error(await second.lines_until_closed(), ErrorCode.INVALID_REQUEST)
        assert data["detail"] == {"limit": FRAMES_BUDGET, "reason": "partial_frames_over_budget"}
        # The frame within the budget is served, and gives its share back.
        with trio.fail_after(DEADLINE_S):
            await first.stream.send_all(request[PARTIAL_BYTES:] + b"\n")
            assert "result" in await first.read_json()
        async with TrioClient.connect(daemon.socket) as third:
            with trio.fail_after(DEADLINE_S):
                await third.send_line(request)
                assert "result" in await third.read_json()
        assert await answers(first)


async def leave_with_eof(client: TrioClient, request: bytes) -> None:
    await client.stream.send_all(request[:PARTIAL_BYTES])
    await until_read_by_the_daemon(client)


async def leave_too_large(client: TrioClient, request: bytes) -> None:
    await leave_with_eof(client, request)
    # Counted up to here; then too large, and the connection is closed.
    await client.stream.send_all(b" " * FRAME_LIMIT)
    await client.lines_until_closed()


async def leave_stalled(client: TrioClient, request: bytes) -> None:
    await leave_with_eof(client, request)
    await client.lines_until_closed()


@pytest.mark.parametrize("leave", [leave_with_eof, leave_too_large, leave_stalled])
async def test_the_budget_is_given_back_by_connections_that_end(
    dirs: DaemonDirs, leave: Callable[[TrioClient, bytes], Awaitable[None]]
) -> None:
    dirs.config.write_text(
        f"[rpc]\nmax_frame_bytes = {FRAME_LIMIT}\n"
        f"max_partial_frame_bytes_total = {FRAMES_BUDGET}\n"
        f"idle_frame_timeout_s = {IDLE_FRAME_TIMEOUT_S}\n"
    )
    request = padded_request(PARTIAL_BYTES + 1)
    async with in_process_daemon(dirs) as daemon:
        for _ in range(2):
            async with TrioClient.connect(daemon.socket) as leaving:
                with trio.fail_after(DEADLINE_S):
                    await leave(leaving, request)
            # Served once the daemon has seen the end (until then: refused).
            with trio.fail_after(DEADLINE_S):
                while True:
                    async with TrioClient.connect(daemon.socket) as client:
                        await client.send_line(request)
                        reply = await client.read_json()
                    if "result" in reply:
                        break
                    await trio.sleep(0.05)


# ---- accept() out of file descriptors ---------------------------------------------------


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def log_events(daemon_stderr: str, event: str) -> list[dict[str, Any]]:
    events = []
    for line in daemon_stderr.splitlines():
        if f'"{event}"' in line:
            record = json.loads(line)
            if record.get("event") == event:
                events.append(record)
    return events


@pytest.mark.slow
def test_out_of_fds_new_clients_are_turned_away_with_a_few_log_lines_and_it_recovers(
    dirs: DaemonDirs,
) -> None:
    with daemon_process(dirs) as daemon, ExitStack() as stack:
        pid = daemon.proc.pid
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        # Room for a few connections more than the daemon holds now, no more.
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_fds(pid) + 4, hard))
        replies = []
        for _ in range(20):
            client = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            client.settimeout(DEADLINE_S)
            client.connect(str(dirs.socket))
            with contextlib.suppress(BrokenPipeError):  # refused before it sent
                client.sendall(json.dumps(STATUS).encode() + b"\n")
            reply = client.recv(65536)
            assert reply.endswith(b"\n"), reply
            replies.append(json.loads(reply))
        assert daemon.proc.poll() is None
        refused = [reply for reply in replies if "error" in reply]
        assert refused, replies
        for reply in refused:
            assert reply["id"] is None
            assert reply["error"]["code"] == ErrorCode.CONNECTION_LIMIT
            detail = reply["error"]["data"]["detail"]
            assert detail["reason"] == "out_of_file_descriptors"
            assert set(detail) == {"reason", "connections"}
            assert detail["connections"] >= 1
            assert reply["error"]["message"] == (
                f"mimird is out of file descriptors ({detail['connections']} connections "
                "open); close some, or raise its open-files limit (LimitNOFILE); this "
                "connection is closed"
            )
        failures = log_events(daemon.stderr, "rpc_accept_failed")
        assert 1 <= len(failures) <= 2, failures
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        stack.close()
        response = blocking_call(dirs.socket, "daemon.status")
        assert "result" in response, response
        assert log_events(daemon.stderr, "rpc_accept_recovered")
