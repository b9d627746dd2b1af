"""The RPC server on its own, with methods made for the test: ordering, concurrent
methods, and the drain at shutdown."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from mimird.config import RpcSection
from mimird.rpc.dispatch import Dispatcher
from mimird.rpc.registry import CallContext, Registry
from mimird.rpc.server import RpcServer
from mimird.wire.errors import ErrorCode
from mimird.wire.types import EmptyParams, Params
from tests.support.helpers import DaemonDirs, TrioClient


class GateParams(Params):
    name: str


class Gates:
    """Methods that wait until the test opens their gate."""

    def __init__(self) -> None:
        self.opened: dict[str, trio.Event] = {}
        self.entered: dict[str, trio.Event] = {}

    def gate(self, name: str) -> trio.Event:
        return self.opened.setdefault(name, trio.Event())

    def entry(self, name: str) -> trio.Event:
        return self.entered.setdefault(name, trio.Event())

    async def wait(self, ctx: CallContext, params: GateParams) -> str:
        self.entry(params.name).set()
        await self.gate(params.name).wait()
        return params.name

    async def ping(self, ctx: CallContext, params: EmptyParams) -> str:
        return "pong"


class NoAudit:
    async def record(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("no test method is mutating")


@pytest.fixture
async def served(dirs: DaemonDirs) -> AsyncIterator[tuple[RpcServer, Gates, Path]]:
    gates = Gates()
    registry = Registry()
    registry.add("test.wait", gates.wait, params=GateParams, result=str, summary="in order")
    registry.add(
        "test.wait_concurrently",
        gates.wait,
        params=GateParams,
        result=str,
        summary="in its own task",
        concurrent=True,
    )
    registry.add("test.ping", gates.ping, params=EmptyParams, result=str, summary="answers")
    dirs.runtime.mkdir(mode=0o700, parents=True)
    path = dirs.runtime / "test.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    server = RpcServer(listener, Dispatcher(registry, NoAudit()), RpcSection())  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server, gates, path
        nursery.cancel_scope.cancel()


async def _send(client: TrioClient, request_id: int, method: str, **params: Any) -> None:
    request = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    await client.send_line(msgspec.json.encode(request))


async def test_calls_of_one_connection_are_answered_in_order(
    served: tuple[RpcServer, Gates, Path],
) -> None:
    _, gates, path = served
    with trio.fail_after(10):
        async with TrioClient.connect(path) as client:
            await _send(client, 1, "test.wait", name="first")
            await _send(client, 2, "test.ping")
            await gates.entry("first").wait()
            gates.gate("first").set()
            assert (await client.read_json())["id"] == 1
            assert (await client.read_json())["id"] == 2


async def test_a_concurrent_call_does_not_hold_up_the_next_ones(
    served: tuple[RpcServer, Gates, Path],
) -> None:
    _, gates, path = served
    with trio.fail_after(10):
        async with TrioClient.connect(path) as client:
            await _send(client, 1, "test.wait_concurrently", name="long")
            await _send(client, 2, "test.ping")
            assert (await client.read_json()) == {"jsonrpc": "2.0", "id": 2, "result": "pong"}
            gates.gate("long").set()
            assert (await client.read_json()) == {"jsonrpc": "2.0", "id": 1, "result": "long"}


async def test_a_call_waiting_on_one_connection_does_not_hold_up_another(
    served: tuple[RpcServer, Gates, Path],
) -> None:
    _, gates, path = served
    with trio.fail_after(10):
        async with TrioClient.connect(path) as blocked, TrioClient.connect(path) as other:
            await _send(blocked, 1, "test.wait", name="never")
            await gates.entry("never").wait()
            assert await other.call("test.ping") == "pong"


async def test_drain_refuses_new_calls_and_lets_running_ones_finish(
    served: tuple[RpcServer, Gates, Path],
) -> None:
    server, gates, path = served
    with trio.fail_after(10):
        async with TrioClient.connect(path) as running, TrioClient.connect(path) as late:
            await _send(running, 1, "test.wait", name="running")
            await gates.entry("running").wait()
            drained = trio.Event()

            async def drain() -> None:
                await server.drain(grace=30)
                drained.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain)
                await trio.testing.wait_all_tasks_blocked()
                refused = await late.call_raw("test.ping")
                assert refused["error"]["code"] == ErrorCode.SHUTTING_DOWN
                assert refused["error"]["data"]["kind"] == "shutting_down"
                assert not drained.is_set()
                gates.gate("running").set()
                assert (await running.read_json())["result"] == "running"
            assert drained.is_set()


async def test_drain_gives_up_after_its_grace_period(
    served: tuple[RpcServer, Gates, Path], autojump_clock: trio.testing.MockClock
) -> None:
    server, gates, path = served
    async with TrioClient.connect(path) as client:
        await _send(client, 1, "test.wait", name="forever")
        await gates.entry("forever").wait()
        start = trio.current_time()
        await server.drain(grace=5)
        assert trio.current_time() - start == pytest.approx(5)


async def test_drain_stops_accepting_connections(served: tuple[RpcServer, Gates, Path]) -> None:
    server, _, path = served
    await server.drain(grace=1)
    with pytest.raises(OSError):  # noqa: PT011 (refused or no such file, either is right)
        await trio.open_unix_socket(str(path))


async def test_a_client_that_pipelines_requests_lets_everything_else_run_between_them(
    served: tuple[RpcServer, Gates, Path],
) -> None:
    """The connection reads and writes its socket without schedule points when that
    needs no wait; every request still gets one, so thousands of requests already
    in the socket cannot keep the daemon's other tasks from running meanwhile."""
    _, _, path = served
    requests = 3000
    frames = b"".join(
        msgspec.json.encode({"jsonrpc": "2.0", "id": i, "method": "test.ping"}) + b"\n"
        for i in range(requests)
    )
    ticks = 0
    answered = trio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not answered.is_set():
            await trio.lowlevel.checkpoint()
            ticks += 1

    with trio.fail_after(30):
        async with TrioClient.connect(path) as client, trio.open_nursery() as nursery:
            nursery.start_soon(client.stream.send_all, frames)
            nursery.start_soon(tick)
            for i in range(requests):
                assert await client.read_json() == {"jsonrpc": "2.0", "id": i, "result": "pong"}
            answered.set()
    # One schedule point per request gives the ticker about one tick each; without
    # them it would run once per 64 KiB read (about 1,200 requests).
    assert ticks >= requests // 2
