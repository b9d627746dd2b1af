"""``session.prompt`` cancelled at each await that matters (httpcore's
``test_cancellations.py`` is the model): whatever the point, a prompt that was
journaled gets its ``turn_ended`` (stop reason ``cancelled``), the agent is told,
the session's status is truthful, and the agent takes the next prompt.

The daemon is real (in-process, real agent subprocess, real SQLite); the call is
made on its own PromptService, inside a cancel scope the test cancels, which is what
the RPC server does when it drops a connection (its write-stall watcher, shutdown).
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

import mimird.agents
import mimird.daemon
from mimird.api.prompts import PromptService
from mimird.rpc.registry import CallContext, PeerCredentials
from mimird.wire.prompts import SessionPromptParams
from tests.support.agents import Client, agent_world, new_session, received
from tests.support.helpers import DaemonDirs

CTX = CallContext(peer=PeerCredentials(os.getpid(), os.getuid(), os.getgid()), conn_id=0)
PERMISSION = {
    "do": "request",
    "method": "session/request_permission",
    "params": {
        "sessionId": "sess-1",
        "toolCall": {"toolCallId": "t1", "title": "Write a.txt"},
        "options": [{"optionId": "yes", "name": "Allow", "kind": "allow_once"}],
    },
}


@contextlib.asynccontextmanager
async def turns_of_a_daemon(
    dirs: DaemonDirs, scenario: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Any, Client, PromptService]]:
    """A daemon playing ``scenario``, a client, and the daemon's PromptService."""
    services: list[PromptService] = []

    class Kept(PromptService):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            services.append(self)

    monkeypatch.setattr(mimird.daemon, "PromptService", Kept)
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        (service,) = services
        yield world, c, service


async def prompt_cancelled(
    service: PromptService, session_id: str, when: Callable[[], Awaitable[object]] | None
) -> bool:
    """Run a prompt and cancel it once ``when()`` returns (None: before it starts).
    True if the prompt was still running when cancelled."""
    scope = trio.CancelScope()
    finished = False

    async def prompt() -> None:
        nonlocal finished
        with scope:
            await service.prompt(CTX, SessionPromptParams(session=session_id, text="work"))
            finished = True

    with trio.fail_after(20):
        if when is None:
            scope.cancel()
            await prompt()
        else:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(prompt)
                await when()
                scope.cancel()
    return not finished and scope.cancelled_caught


def status_is(c: Client, session_id: str, status: str) -> Callable[[], Awaitable[object]]:
    async def wait() -> object:
        return await c.until(
            "session.get", {"session": session_id}, lambda s: s["status"] == status
        )

    return wait


async def events(c: Client, session_id: str) -> list[dict[str, Any]]:
    result = await c.call("session.events", {"session": session_id})
    found: list[dict[str, Any]] = result["events"]
    return found


async def assert_takes_the_next_prompt(c: Client, session_id: str) -> None:
    result = await c.call("session.prompt", {"session": session_id, "text": "again"})
    assert result["stop_reason"] == "end_turn"
    assert (await c.call("session.get", {"session": session_id}))["status"] == "idle"


async def test_cancelled_before_its_first_await_nothing_is_journaled(
    dirs: DaemonDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with turns_of_a_daemon(dirs, {}, monkeypatch) as (_, c, service):
        session_id = await new_session(_, c)
        await c.call("session.resume", {"session": session_id})
        assert await prompt_cancelled(service, session_id, None)
        kinds = [e["kind"] for e in await events(c, session_id)]
        assert "prompt" not in kinds
        assert "turn_ended" not in kinds
        assert (await c.call("session.get", {"session": session_id}))["status"] == "idle"
        await assert_takes_the_next_prompt(c, session_id)


async def test_cancelled_while_the_agent_starts_no_turn_begins_and_the_agent_starts(
    dirs: DaemonDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = {"before": {"initialize": [{"do": "sleep", "s": 0.5}]}}
    async with turns_of_a_daemon(dirs, scenario, monkeypatch) as (_, c, service):
        session_id = await new_session(_, c)
        assert await prompt_cancelled(service, session_id, status_is(c, session_id, "starting"))
        await c.until("session.get", {"session": session_id}, lambda s: s["status"] == "idle")
        kinds = [e["kind"] for e in await events(c, session_id)]
        assert "prompt" not in kinds
        assert "turn_ended" not in kinds
        await assert_takes_the_next_prompt(c, session_id)


async def test_cancelled_while_the_agent_works_the_turn_ends_cancelled_and_the_agent_is_told(
    dirs: DaemonDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = {"prompts": [[{"do": "wait_cancel"}]]}
    async with turns_of_a_daemon(dirs, scenario, monkeypatch) as (world, c, service):
        session_id = await new_session(world, c)
        assert await prompt_cancelled(service, session_id, status_is(c, session_id, "running"))
        # True as soon as the call has ended: the cleanup ran before it returned.
        assert (await c.call("session.get", {"session": session_id}))["status"] == "idle"
        found = await events(c, session_id)
        ended = [e["data"] for e in found if e["kind"] == "turn_ended"]
        # The turn changed no file in the workspace: an empty list of them.
        assert ended == [{"stop_reason": "cancelled", "files": []}]
        prompt = next(e for e in found if e["kind"] == "prompt")
        end = next(e for e in found if e["kind"] == "turn_ended")
        assert end["seq"] > prompt["seq"]
        methods = [m.get("method") for m in received(world)]
        assert "session/cancel" in methods
        assert "$/cancel_request" in methods
        await assert_takes_the_next_prompt(c, session_id)


async def test_cancelled_while_a_permission_waits_the_request_and_the_turn_end_cancelled(
    dirs: DaemonDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = {"prompts": [[PERMISSION]]}
    async with turns_of_a_daemon(dirs, scenario, monkeypatch) as (world, c, service):
        session_id = await new_session(world, c)
        waiting = status_is(c, session_id, "awaiting_permission")
        assert await prompt_cancelled(service, session_id, waiting)
        assert (await c.call("session.get", {"session": session_id}))["status"] == "idle"
        assert (await c.call("permission.list", {}))["permissions"] == []
        found = await events(c, session_id)
        assert [e["data"] for e in found if e["kind"] == "turn_ended"] == [
            {"stop_reason": "cancelled", "files": []}
        ]
        answered = await c.until(
            "session.events",
            {"session": session_id, "kind": "permission_answered"},
            lambda r: r["events"],
        )
        (event,) = answered["events"]
        assert (event["data"]["outcome"], event["data"]["by"]) == ("cancelled", "turn_ended")
        await assert_takes_the_next_prompt(c, session_id)


def test_every_public_async_method_of_the_agent_owners_says_what_cancellation_does() -> None:
    package = Path(mimird.agents.__file__).parent
    silent = []
    for module in sorted(package.glob("*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        owners: list[tuple[str, list[ast.stmt]]] = [("", tree.body)]
        owners += [
            (node.name, node.body)
            for node in tree.body
            if isinstance(node, ast.ClassDef)
            and not node.name.startswith("_")
            # Protocols say what they need; their implementations say what they do.
            and not any(isinstance(b, ast.Name) and b.id == "Protocol" for b in node.bases)
        ]
        for owner, body in owners:
            for node in body:
                if (
                    isinstance(node, ast.AsyncFunctionDef)
                    and not node.name.startswith("_")
                    and "Cancellation:" not in (ast.get_docstring(node) or "")
                ):
                    silent.append(f"{module.name}: {owner}.{node.name}")
    assert not silent, f"no 'Cancellation:' paragraph: {silent}"


async def test_a_prompt_whose_connection_stalls_ends_cancelled_when_it_is_dropped(
    dirs: DaemonDirs,
) -> None:
    # The agent floods the turn with updates; the client that prompted subscribed to
    # them and never reads, so the server's write-stall watcher drops its connection,
    # cancelling the session.prompt it was running.
    flood = [{"do": "huge", "bytes": 1 << 20} for _ in range(16)]
    scenario = {"prompts": [[*flood, {"do": "wait_cancel"}]]}
    async with agent_world(dirs, scenario, rpc={"write_stall_timeout_s": 0.5}) as world:
        async with Client.connect(world.daemon.socket) as c:
            session_id = await new_session(world, c)
            await c.call("session.resume", {"session": session_id})
        stalled = await trio.open_unix_socket(str(world.daemon.socket))
        async with stalled:
            requests = [
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "subscribe",
                    "params": {"session": session_id},
                },
                {
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "session.prompt",
                    "params": {"session": session_id, "text": "flood"},
                },
            ]
            await stalled.send_all(b"".join(json.dumps(r).encode() + b"\n" for r in requests))
            async with Client.connect(world.daemon.socket) as c:
                found = await c.until(
                    "session.events",
                    {"session": session_id, "kind": "turn_ended"},
                    lambda r: r["events"],
                )
                assert [e["data"] for e in found["events"]] == [
                    {"stop_reason": "cancelled", "files": []}
                ]
                await c.until(
                    "session.get", {"session": session_id}, lambda s: s["status"] == "idle"
                )
                assert "session/cancel" in [m.get("method") for m in received(world)]
                await assert_takes_the_next_prompt(c, session_id)
