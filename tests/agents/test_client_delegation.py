"""An attached client (an editor) serves the agent's file and terminal requests
(``session.attach_client``, ``client_request`` notifications,
``client_request.respond``): against a real daemon, the scripted fake agent making
the requests, and a raw socket client as the provider.

The provider plays an editor: its "buffer" holds text that differs from what is
on disk, so a test sees whose answer the agent got."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Final

import trio

from tests.support.agents import (
    AgentWorld,
    Client,
    agent_world,
    event_data,
    new_session,
    received,
    workspace_of,
)
from tests.support.helpers import DaemonDirs

ACP_SESSION: Final = "sess-1"
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
#: Every prompt plays the steps its text holds.
SCRIPTED: Final = {"prompts": [[{"do": "script"}]] * 40}
FAST: Final = {"client_request_timeout_s": 0.5}

#: What the provider does with a request: an answer ``{"result": ...}`` or
#: ``{"error": ...}`` (sent as the respond's params), or None to stay silent.
Answer = Callable[[dict[str, Any]], dict[str, Any] | None]


class Provider:
    """A raw socket client attached as the session's provider, answering every
    ``client_request`` it gets with ``answer`` (and keeping them all)."""

    def __init__(self, client: Client, answer: Answer) -> None:
        self.client = client
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        #: The daemon's replies to our client_request.respond calls, in order.
        self.replies: list[dict[str, Any]] = []

    async def serve(self) -> None:
        seen = 0
        while True:
            for params in self.client.events[seen:]:
                if "method" in params and "subscription" not in params:
                    self.requests.append(params)
                    answer = self.answer(params)
                    if answer is not None:
                        reply = await self.client.call_raw(
                            "client_request.respond", {"id": params["id"], **answer}
                        )
                        self.replies.append(reply)
            seen = len(self.client.events)
            await trio.sleep(0.01)


@contextlib.asynccontextmanager
async def provider(
    world: AgentWorld, session_id: str, answer: Answer, **offer: Any
) -> AsyncIterator[Provider]:
    async with Client.connect(world.daemon.socket) as client, trio.open_nursery() as nursery:
        attached = await client.call(
            "session.attach_client",
            {"session": session_id, **(offer or {"fs": {"read": True, "write": True}})},
        )
        assert attached["session_id"] == session_id
        served = Provider(client, answer)
        nursery.start_soon(served.serve)
        yield served
        nursery.cancel_scope.cancel()


def buffer(text: str) -> Answer:
    """An editor whose buffers all hold ``text``, and that takes every write."""

    def answer(request: dict[str, Any]) -> dict[str, Any]:
        if request["method"] == "fs/read_text_file":
            return {"result": {"content": text}}
        return {"result": None}

    return answer


def silent(request: dict[str, Any]) -> None:
    return None


def read(request_id: str, path: str) -> dict[str, Any]:
    params = {"sessionId": ACP_SESSION, "path": path}
    return {"do": "request", "id": request_id, "method": "fs/read_text_file", "params": params}


def write(request_id: str, path: str, content: str) -> dict[str, Any]:
    params = {"sessionId": ACP_SESSION, "path": path, "content": content}
    return {"do": "request", "id": request_id, "method": "fs/write_text_file", "params": params}


async def play(c: Client, session_id: str, *steps: dict[str, Any]) -> None:
    """One prompt whose turn is the agent making these requests."""
    await c.call("session.prompt", {"session": session_id, "text": json.dumps(list(steps))})


def answer_to(world: AgentWorld, request_id: str) -> dict[str, Any]:
    found = {m["id"]: m for m in received(world) if "id" in m and "method" not in m}
    answer: dict[str, Any] = found[request_id]
    return answer


def result(world: AgentWorld, request_id: str) -> Any:
    answer = answer_to(world, request_id)
    assert "error" not in answer, answer
    return answer["result"]


def error(world: AgentWorld, request_id: str) -> dict[str, Any]:
    answer = answer_to(world, request_id)
    assert "error" in answer, answer
    found: dict[str, Any] = answer["error"]
    return found


@contextlib.asynccontextmanager
async def session_with_file(
    dirs: DaemonDirs, supervision: dict[str, Any] | None = None
) -> AsyncIterator[tuple[AgentWorld, Client, str, Path]]:
    """A running session whose workspace holds ``notes.txt`` ("on disk\\n")."""
    async with (
        agent_world(dirs, SCRIPTED, supervision=supervision) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await new_session(world, c)
        await c.call("session.resume", {"session": session_id})
        root = await workspace_of(c, session_id)
        (root / "notes.txt").write_text("on disk\n")
        yield world, c, session_id, root


# ---- files ----------------------------------------------------------------------------


async def test_a_read_sees_the_clients_unsaved_buffer_not_the_disk(dirs: DaemonDirs) -> None:
    async with session_with_file(dirs) as (world, c, session_id, root):
        async with provider(world, session_id, buffer("unsaved edit\n")) as editor:
            await play(c, session_id, read("r1", "notes.txt"))
        assert result(world, "r1") == {"content": "unsaved edit\n"}
        [request] = editor.requests
        assert request["method"] == "fs/read_text_file"
        assert request["session_id"] == session_id
        # Checked and made absolute by Mimir: the editor gets the workspace's path.
        assert request["params"] == {"sessionId": session_id, "path": str(root / "notes.txt")}
        assert await event_data(c, session_id, "file_read") == [
            {"path": "notes.txt", "chars": 13, "served_by": "client"}
        ]
        attached = await event_data(c, session_id, "client_attached")
        assert attached[0]["fs_read"] is True
        assert attached[0]["terminal"] is False


async def test_a_write_goes_to_the_client_and_not_to_the_disk(dirs: DaemonDirs) -> None:
    async with session_with_file(dirs) as (world, c, session_id, root):
        async with provider(world, session_id, buffer("")) as editor:
            await play(c, session_id, write("w1", str(root / "notes.txt"), "new text\n"))
        assert result(world, "w1") in (None, {})
        assert (root / "notes.txt").read_text() == "on disk\n", "the disk is left alone"
        [request] = editor.requests
        assert request["params"]["content"] == "new text\n"
        assert await event_data(c, session_id, "file_written") == [
            {"path": "notes.txt", "bytes": 9, "served_by": "client"}
        ]


async def test_a_path_outside_the_workspace_is_refused_before_it_reaches_the_client(
    dirs: DaemonDirs,
) -> None:
    async with session_with_file(dirs) as (world, c, session_id, root):
        (root / "out").symlink_to(dirs.root)
        async with provider(world, session_id, buffer("editor\n")) as editor:
            await play(
                c,
                session_id,
                read("r1", "/etc/passwd"),
                read("r2", "../../x"),
                write("w1", "out/escape.txt", "x"),
                read("r3", "notes.txt"),
            )
        assert [r["params"]["path"] for r in editor.requests] == [str(root / "notes.txt")]
        assert result(world, "r3") == {"content": "editor\n"}
        for request_id in ("r1", "r2", "w1"):
            assert error(world, request_id)["code"] == INVALID_PARAMS
        assert not (dirs.root / "escape.txt").exists()
        refused = await event_data(c, session_id, "file_refused")
        assert [r["path"] for r in refused] == ["/etc/passwd", "../../x", "out/escape.txt"]


async def test_a_client_error_reaches_the_agent(dirs: DaemonDirs) -> None:
    def no_such_buffer(request: dict[str, Any]) -> dict[str, Any]:
        return {"error": {"code": -32002, "message": "no such buffer"}}

    async with session_with_file(dirs) as (world, c, session_id, _root):
        async with provider(world, session_id, no_such_buffer):
            await play(c, session_id, read("r1", "gone.txt"))
        assert error(world, "r1") == {"code": -32002, "message": "no such buffer"}


async def test_a_silent_client_is_detached_and_mimir_serves_the_request(
    dirs: DaemonDirs,
) -> None:
    async with session_with_file(dirs, FAST) as (world, c, session_id, _root):
        async with provider(world, session_id, silent) as editor:
            await play(c, session_id, read("r1", "notes.txt"), read("r2", "notes.txt"))
            # Its late answer is refused: the request is no longer waiting.
            late = await editor.client.call_raw(
                "client_request.respond",
                {"id": editor.requests[0]["id"], "result": {"content": "late"}},
            )
        assert late["error"]["data"]["kind"] == "not_found"
        assert result(world, "r1") == {"content": "on disk\n"}
        assert result(world, "r2") == {"content": "on disk\n"}
        assert len(editor.requests) == 1, "detached after the first silence"
        [failed] = await event_data(c, session_id, "client_request_failed")
        assert failed["method"] == "fs/read_text_file"
        assert failed["fallback"] == "mimird"
        assert "did not answer" in failed["reason"]
        detached = await event_data(c, session_id, "client_detached")
        assert "did not answer" in detached[0]["reason"]
        assert [
            e.get("served_by", "mimird") for e in await event_data(c, session_id, "file_read")
        ] == [
            "mimird",
            "mimird",
        ]


async def test_a_client_that_disconnects_mid_request_falls_back_to_mimir(
    dirs: DaemonDirs,
) -> None:
    async with session_with_file(dirs) as (world, c, session_id, _root):
        gone = trio.Event()

        def hang_up(request: dict[str, Any]) -> None:
            gone.set()

        async with trio.open_nursery() as nursery:

            async def editor_that_closes() -> None:
                async with provider(world, session_id, hang_up):
                    await gone.wait()  # leaving closes the connection, request pending

            nursery.start_soon(editor_that_closes)
            await c.until(
                "session.events",
                {"session": session_id, "kind": "client_attached"},
                lambda r: r["events"],
            )
            await play(c, session_id, read("r1", "notes.txt"))
        assert result(world, "r1") == {"content": "on disk\n"}
        detached = await event_data(c, session_id, "client_detached")
        assert detached[0]["reason"] == "closed its connection"


async def test_malformed_or_oversized_answers_are_refused_and_mimir_serves(
    dirs: DaemonDirs,
) -> None:
    answers: Iterator[dict[str, Any]] = iter(
        [
            {"result": {"content": 5}},
            {"result": {"content": "x" * 3000}},
            {"result": "text"},
            {"error": {"code": 7, "message": "not a JSON-RPC code"}},
            {"result": {"content": "fine\n"}},
        ]
    )

    def malformed(request: dict[str, Any]) -> dict[str, Any]:
        return next(answers)

    async with session_with_file(dirs, {"file_max_bytes": 2048}) as (world, c, session_id, _):
        async with provider(world, session_id, malformed) as editor:
            await play(c, session_id, *(read(f"r{n}", "notes.txt") for n in range(5)))
        for n in range(4):
            assert result(world, f"r{n}") == {"content": "on disk\n"}, n
        assert result(world, "r4") == {"content": "fine\n"}
        kinds = [reply.get("error", {}).get("data", {}).get("kind") for reply in editor.replies]
        assert kinds == ["invalid_params"] * 4 + [None]
        assert "2048 bytes" in editor.replies[1]["error"]["message"]
        failed = await event_data(c, session_id, "client_request_failed")
        assert len(failed) == 4
        assert all(f["fallback"] == "mimird" for f in failed)


#: Another process attaching to a session: prints the daemon's answer.
ATTACH_FROM_ANOTHER_PROCESS: Final = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
request = {"jsonrpc": "2.0", "id": 1, "method": "session.attach_client",
           "params": {"session": sys.argv[2], "fs": {"read": True}}}
s.sendall(json.dumps(request).encode() + b"\\n")
print(s.makefile().readline(), end="")
"""


async def attach_from_another_process(world: AgentWorld, session_id: str) -> dict[str, Any]:
    done = await trio.run_process(
        [sys.executable, "-c", ATTACH_FROM_ANOTHER_PROCESS, str(world.daemon.socket), session_id],
        capture_stdout=True,
    )
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


async def test_a_second_client_is_refused_until_the_first_detaches(dirs: DaemonDirs) -> None:
    async with session_with_file(dirs) as (world, c, session_id, _root):
        async with provider(world, session_id, buffer("first\n")):
            refused = (await attach_from_another_process(world, session_id))["error"]
            assert refused["data"]["kind"] == "invalid_state"
            assert "another client" in refused["message"]
            await play(c, session_id, read("r1", "notes.txt"))
        assert result(world, "r1") == {"content": "first\n"}
        async with provider(world, session_id, buffer("second\n")) as editor:
            await play(c, session_id, read("r2", "notes.txt"))
            assert (await editor.client.call("session.detach_client", {"session": session_id}))[
                "detached"
            ]
            await play(c, session_id, read("r3", "notes.txt"))
        assert result(world, "r2") == {"content": "second\n"}
        assert result(world, "r3") == {"content": "on disk\n"}, "detached: Mimir serves"
        # Nobody attached: another process may.
        assert "result" in await attach_from_another_process(world, session_id)


async def test_the_same_process_on_a_new_connection_replaces_its_old_one(
    dirs: DaemonDirs,
) -> None:
    # A bridge that follows a session again closes its old connection and attaches on
    # a new one: mimird may not have seen the old one close yet.
    async with session_with_file(dirs) as (world, c, session_id, _root):
        async with (
            provider(world, session_id, buffer("old\n")) as old,
            provider(world, session_id, buffer("new\n")) as new,
        ):
            await play(c, session_id, read("r1", "notes.txt"))
        assert result(world, "r1") == {"content": "new\n"}
        assert (len(old.requests), len(new.requests)) == (0, 1)
        detached = await event_data(c, session_id, "client_detached")
        assert detached[0]["reason"] == "replaced by another connection of the same client"


async def test_only_what_the_client_offers_goes_to_it(dirs: DaemonDirs) -> None:
    async with session_with_file(dirs) as (world, c, session_id, root):
        reads_only = {"fs": {"read": True}}
        async with provider(world, session_id, buffer("buffer\n"), **reads_only) as editor:
            await play(
                c, session_id, write("w1", "notes.txt", "to disk\n"), read("r1", "notes.txt")
            )
        assert [r["method"] for r in editor.requests] == ["fs/read_text_file"]
        assert (root / "notes.txt").read_text() == "to disk\n"
        assert result(world, "r1") == {"content": "buffer\n"}


async def test_answers_from_another_connection_are_refused(dirs: DaemonDirs) -> None:
    async with session_with_file(dirs) as (world, c, session_id, _root):
        async with provider(world, session_id, silent) as editor, trio.open_nursery() as nursery:
            nursery.start_soon(play, c, session_id, read("r1", "notes.txt"))
            with trio.fail_after(10):
                while not editor.requests:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            request_id = editor.requests[0]["id"]
            stranger = await c.error(
                "client_request.respond", {"id": request_id, "result": {"content": "forged"}}
            )
            assert stranger["data"]["kind"] == "not_found"
            await editor.client.call(
                "client_request.respond", {"id": request_id, "result": {"content": "real\n"}}
            )
        assert result(world, "r1") == {"content": "real\n"}


# ---- terminals ------------------------------------------------------------------------


def terminal(request_id: str, method: str, **params: Any) -> dict[str, Any]:
    return {
        "do": "request",
        "id": request_id,
        "method": f"terminal/{method}",
        "params": {"sessionId": ACP_SESSION, **params},
    }


def editor_terminal(request: dict[str, Any]) -> dict[str, Any]:
    method = request["method"]
    if method == "terminal/create":
        return {"result": {"terminalId": "zed-1"}}
    if method == "terminal/output":
        return {"result": {"output": "from the editor\n", "truncated": False}}
    if method == "terminal/wait_for_exit":
        return {"result": {"exitCode": 0, "signal": None}}
    return {"result": {}}


async def test_terminals_run_in_the_client_when_it_offers_them(dirs: DaemonDirs) -> None:
    async with session_with_file(dirs) as (world, c, session_id, root):
        (root / "sub").mkdir()
        async with provider(world, session_id, editor_terminal, terminal=True) as editor:
            await play(
                c,
                session_id,
                terminal("c1", "create", command="make", args=["test"], cwd=str(root / "sub")),
                terminal("o1", "output", terminalId="$c1"),
                terminal("x1", "wait_for_exit", terminalId="$c1"),
                terminal("r1", "release", terminalId="$c1"),
                terminal("o2", "output", terminalId="$c1"),
                terminal("c2", "create", command="ls", cwd="/etc"),
            )
        agent_id = result(world, "c1")["terminalId"]
        assert agent_id.startswith("editor-"), "the client's own id is not shown"
        assert result(world, "o1") == {"output": "from the editor\n", "truncated": False}
        assert result(world, "x1") == {"exitCode": 0, "signal": None}
        assert error(world, "o2")["code"] == INVALID_PARAMS, "released"
        assert error(world, "c2")["code"] == INVALID_PARAMS, "a cwd outside: refused by Mimir"
        create, *rest = editor.requests
        assert create["params"]["cwd"] == str(root / "sub")
        assert create["params"]["command"] == "make"
        assert [r["params"]["terminalId"] for r in rest] == ["zed-1"] * 3
        [started] = await event_data(c, session_id, "terminal_started")
        assert started["served_by"] == "client"
        assert started["cwd"] == "sub"


async def test_a_terminal_of_a_client_that_left_answers_with_an_error(dirs: DaemonDirs) -> None:
    async with session_with_file(dirs) as (world, c, session_id, _root):
        async with provider(world, session_id, editor_terminal, terminal=True):
            await play(c, session_id, terminal("c1", "create", command="sleep", args=["9"]))
        terminal_id = result(world, "c1")["terminalId"]
        await play(
            c,
            session_id,
            terminal("o1", "output", terminalId=terminal_id),
            terminal("c2", "create", command="true"),
        )
        assert error(world, "o1")["code"] == INVALID_PARAMS
        assert "detached" in error(world, "o1")["message"]
        assert "terminalId" in result(world, "c2"), "detached: Mimir runs the next one"
