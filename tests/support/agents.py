"""Support for tests of sessions with agents: a daemon whose config defines a
``fake`` agent kind (tests/support/fake_acp_agent.py driven by a scenario file), fast
supervision settings, and a client that tells responses from notifications."""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import trio

from tests.support.helpers import DaemonDirs, InProcessDaemon, in_process_daemon, make_repo

FAKE_AGENT = Path(__file__).with_name("fake_acp_agent.py")


def write_config(
    dirs: DaemonDirs,
    scenario: dict[str, Any],
    *,
    supervision: dict[str, Any] | None = None,
    rpc: dict[str, Any] | None = None,
    agent: dict[str, Any] | None = None,
) -> Path:
    """Config with an [agents.fake] kind playing ``scenario`` (``agent``: more keys of
    its section, e.g. its quirks); returns the scenario file."""
    dirs.root.mkdir(parents=True, exist_ok=True)
    scenario_path = dirs.root / "scenario.json"
    scenario_path.write_text(json.dumps(scenario))
    options = {
        "max_restarts": 2,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
        "start_timeout_s": 10,
        "cancel_grace_s": 1.0,
        "stop_grace_s": 0.5,
        **(supervision or {}),
    }
    lines = [
        "[supervision]",
        *(f"{k} = {json.dumps(v)}" for k, v in options.items()),
        "",
        "[defaults]",
        'agent = "fake"',
        "",
        "[agents.fake]",
        f"command = {json.dumps(sys.executable)}",
        f"args = [{json.dumps(str(FAKE_AGENT))}, {json.dumps(str(scenario_path))}]",
        *(f"{k} = {json.dumps(v)}" for k, v in (agent or {}).items()),
    ]
    if rpc:
        lines += ["", "[rpc]", *(f"{k} = {json.dumps(v)}" for k, v in rpc.items())]
    dirs.config.write_text("\n".join(lines) + "\n")
    return scenario_path


class Client:
    """A JSON-RPC client that routes responses by id and collects notifications."""

    def __init__(self, stream: trio.SocketStream, nursery: trio.Nursery) -> None:
        self.stream = stream
        self._ids = itertools.count(1)
        self._waiting: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._arrived = trio.Event()
        self.closed = False
        self._send_lock = trio.Lock()
        nursery.start_soon(self._read)

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, path: Path) -> AsyncIterator[Client]:
        stream = await trio.open_unix_socket(str(path))
        async with stream, trio.open_nursery() as nursery:
            client = cls(stream, nursery)
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()

    async def _read(self) -> None:
        buffer = bytearray()
        while True:
            data = await self.stream.receive_some(1 << 16)
            if not data:
                self.closed = True
                self._arrived.set()
                return
            buffer += data
            *lines, rest = buffer.split(b"\n")
            buffer = bytearray(rest)
            for line in lines:
                message = msgspec.json.decode(line)
                if "method" in message:
                    self.events.append(message["params"])
                    self._arrived.set()
                    self._arrived = trio.Event()
                else:
                    channel = self._waiting.pop(message["id"], None)
                    if channel is not None:
                        channel.send_nowait(message)

    async def call_raw(self, method: str, params: Any = None) -> dict[str, Any]:
        request_id = next(self._ids)
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self._waiting[request_id] = send
        request = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
        async with self._send_lock:
            await self.stream.send_all(msgspec.json.encode(request) + b"\n")
        return await receive.receive()

    async def call(self, method: str, params: Any = None) -> Any:
        response = await self.call_raw(method, params)
        assert "error" not in response, response
        return response["result"]

    async def error(self, method: str, params: Any = None) -> dict[str, Any]:
        response = await self.call_raw(method, params)
        assert "error" in response, response
        error: dict[str, Any] = response["error"]
        return error

    async def until(self, method: str, params: Any, predicate: Any) -> Any:
        """Call ``method`` every 20 ms until its result satisfies ``predicate`` (10 s at most)."""
        for _ in range(500):
            result = await self.call(method, params)
            if predicate(result):
                return result
            await trio.sleep(0.02)
        raise AssertionError(f"{method} never satisfied the condition: {result}")

    async def wait_for(
        self, predicate: Any, wait_s: float = 10, *, subscription: int | None = None
    ) -> dict[str, Any]:
        """The first collected event (its ``event`` object) matching ``predicate``, of
        one subscription if given."""
        with trio.fail_after(wait_s):
            seen = 0
            while True:
                for params in self.events[seen:]:
                    if subscription is not None and params["subscription"] != subscription:
                        continue
                    if predicate(params["event"]):
                        event: dict[str, Any] = params["event"]
                        return event
                seen = len(self.events)
                await self._arrived.wait()

    def kinds(self, session_id: str | None = None) -> list[str]:
        return [
            p["event"]["kind"]
            for p in self.events
            if session_id is None or p["event"]["session_id"] == session_id
        ]


@dataclass
class AgentWorld:
    daemon: InProcessDaemon
    repo: Path
    project: str
    scenario_path: Path
    record: Path
    sessions: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def agent_world(
    dirs: DaemonDirs,
    scenario: dict[str, Any],
    *,
    supervision: dict[str, Any] | None = None,
    rpc: dict[str, Any] | None = None,
    agent: dict[str, Any] | None = None,
) -> AsyncIterator[AgentWorld]:
    record = dirs.root / "received.jsonl"
    scenario = {"record": str(record), **scenario}
    scenario_path = write_config(dirs, scenario, supervision=supervision, rpc=rpc, agent=agent)
    repo = make_repo(dirs.root / "repo")
    async with in_process_daemon(dirs) as daemon, Client.connect(daemon.socket) as client:
        project = await client.call("project.add", {"path": str(repo), "name": "demo"})
        yield AgentWorld(daemon, repo, project["id"], scenario_path, record)


async def new_session(world: AgentWorld, client: Client) -> str:
    session = await client.call("session.create", {"project": world.project, "title": "t"})
    session_id: str = session["id"]
    return session_id


async def event_data(client: Client, session_id: str, kind: str) -> list[dict[str, Any]]:
    """The data of the session's journaled events of one kind, in order."""
    found = (await client.call("session.events", {"session": session_id, "kind": kind}))["events"]
    return [e["data"] for e in found]


async def workspace_of(client: Client, session_id: str) -> Path:
    session = await client.call("session.get", {"session": session_id})
    return Path(session["workspace"]["path"])


def received(world: AgentWorld) -> list[dict[str, Any]]:
    """Every message the fake agent received, in order."""
    if not world.record.exists():
        return []
    return [json.loads(line) for line in world.record.read_text().splitlines() if line.strip()]
