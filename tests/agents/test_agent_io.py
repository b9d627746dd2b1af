"""A hostile agent's file requests against a real daemon (the scripted fake agent):
it cannot stall the daemon or other sessions with reads that never end (a FIFO, a
file leased by another process), nor hold more requests in flight than allowed, nor
write outside its workspace by swapping the workspace for a symlink while it runs;
every refusal is journaled; the store's writer needs none of the threads it could take.

Each prompt's text is a JSON list of the fake agent's steps (its ``script`` step).
The ``trio.fail_after`` bounds are hang guards, generous on purpose: the defects
they catch made the daemon wait for ever."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Final

import pytest
import trio

from mimird.errors import ConfigError
from mimird.wire.errors import ErrorCode
from tests.support.agents import (
    AgentWorld,
    Client,
    agent_world,
    event_data,
    new_session,
    received,
    workspace_of,
    write_config,
)
from tests.support.helpers import DaemonDirs, make_repo, rpc, start_daemon_process

SCRIPTED: Final = {"prompts": [[{"do": "script"}]] * 20}
#: More reads than trio's default thread limit (40), which the store's writer uses.
MANY: Final = 45
HANG_GUARD_S: Final = 60.0
RELEASE_IDLE_ROUNDS: Final = 50
PERMISSION: Final = {
    "do": "request",
    "id": "p",
    "method": "session/request_permission",
    "params": {
        "sessionId": "sess-1",
        "toolCall": {"toolCallId": "t1", "title": "Write a.txt"},
        "options": [{"optionId": "yes", "name": "Allow", "kind": "allow_once"}],
    },
}
#: The agent asks to read the FIFO, then writes a marker (so that the test knows the
#: read was asked for: it has no answer without the fix), then waits for ever.
READ_THEN_HANG: Final = json.dumps(
    [
        {
            "do": "request",
            "id": "r",
            "method": "fs/read_text_file",
            "params": {"sessionId": "sess-1", "path": "fifo"},
            "wait": False,
        },
        {
            "do": "request",
            "id": "m",
            "method": "fs/write_text_file",
            "params": {"sessionId": "sess-1", "path": "marker.txt", "content": "sent"},
        },
        {"do": "hang"},
    ]
)


def read(request_id: str, path: str, *, wait: bool = True) -> dict[str, Any]:
    return {
        "do": "request",
        "id": request_id,
        "method": "fs/read_text_file",
        "params": {"sessionId": "sess-1", "path": path},
        "wait": wait,
    }


def write(request_id: str, path: str, content: str) -> dict[str, Any]:
    params = {"sessionId": "sess-1", "path": path, "content": content}
    return {"do": "request", "id": request_id, "method": "fs/write_text_file", "params": params}


def text(*steps: dict[str, Any]) -> str:
    return json.dumps(list(steps))


def answers(world: AgentWorld) -> dict[Any, dict[str, Any]]:
    """The answers the agent got, by request id."""
    return {m["id"]: m for m in received(world) if "id" in m and "method" not in m}


@contextlib.asynccontextmanager
async def released(fifo: Path) -> AsyncIterator[None]:
    """Whatever the test finds, no reader stays blocked on the FIFO (a daemon without
    the fix would otherwise never end): each reader gets a writer that closes at once,
    until none has come for a while (readers that waited for a thread come later)."""
    try:
        yield
    finally:
        idle = 0
        while idle < RELEASE_IDLE_ROUNDS:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no reader now
                idle += 1
                await trio.sleep(0.01)
                continue
            os.close(fd)
            idle = 0


async def test_fifo_reads_past_the_thread_limit_stall_neither_the_daemon_nor_other_sessions(
    dirs: DaemonDirs,
) -> None:
    # The reads, then a permission request: the test acts while the turn waits for it.
    steps = [read(f"r{i}", "fifo", wait=False) for i in range(MANY)]
    steps.append(PERMISSION)
    steps.append({"do": "await", "ids": [f"r{i}" for i in range(MANY)]})
    async with agent_world(dirs, SCRIPTED) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        fifo = await workspace_of(c, session_id) / "fifo"
        os.mkfifo(fifo)
        async with released(fifo):
            with trio.fail_after(HANG_GUARD_S):
                await c.call("session.resume", {"session": session_id})
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(
                        c.call, "session.prompt", {"session": session_id, "text": text(*steps)}
                    )
                    [parked] = (
                        await c.until(
                            "permission.list", {"session": session_id}, lambda r: r["permissions"]
                        )
                    )["permissions"]
                    # Store writes, a new worktree and another session's turn are answered.
                    await c.call("project.update", {"project": world.project, "description": "d"})
                    other = await new_session(world, c)
                    done = await c.call("session.prompt", {"session": other, "text": text()})
                    assert done["stop_reason"] == "end_turn"
                    await c.call(
                        "permission.respond", {"permission": parked["id"], "kind": "allow_once"}
                    )
        got = answers(world)
        for i in range(MANY):
            error = got[f"r{i}"]["error"]
            assert error["code"] == ErrorCode.INVALID_PARAMS
            assert "fifo is a named pipe (FIFO)" in error["message"]
        refused = await event_data(c, session_id, "file_refused")
        assert len(refused) == MANY
        assert all(r["op"] == "read" and r["path"] == "fifo" for r in refused)


@pytest.mark.slow
async def test_stop_answers_while_the_agent_reads_a_fifo(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, SCRIPTED) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        fifo = await workspace_of(c, session_id) / "fifo"
        os.mkfifo(fifo)
        async with released(fifo):
            with trio.fail_after(HANG_GUARD_S):
                await c.call("session.resume", {"session": session_id})
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(
                        c.call_raw,
                        "session.prompt",
                        {"session": session_id, "text": READ_THEN_HANG},
                    )
                    await c.until(
                        "session.events",
                        {"session": session_id, "kind": "file_written"},
                        lambda r: r["events"],
                    )
                    stopped = await c.call("session.stop", {"session": session_id})
        assert stopped["status"] == "stopped"


#: Holds a write lease on a file (argv[1]) until killed, deaf to the kernel's request
#: to give it back (SIGIO): any other open of it waits for the lease to be broken by
#: force (/proc/sys/fs/lease-break-time, 45 s by default).
LEASE_HOLDER: Final = (
    "import fcntl, os, signal, sys, time; signal.signal(signal.SIGIO, signal.SIG_IGN); "
    "fd = os.open(sys.argv[1], os.O_RDONLY); "
    "fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK); print('held', flush=True); "
    "time.sleep(600)"
)
#: Shorter than the kernel's lease break time: a read that waited for the lease fails it.
LEASE_GUARD_S: Final = 20.0


async def test_a_read_of_a_leased_file_is_refused_at_once_not_waited_for(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, SCRIPTED) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        leased = await workspace_of(c, session_id) / "leased.txt"
        leased.write_text("mine\n")
        holder = await trio.lowlevel.open_process(
            [sys.executable, "-c", LEASE_HOLDER, str(leased)], stdout=subprocess.PIPE
        )
        try:
            assert holder.stdout is not None
            said = b""
            with trio.fail_after(HANG_GUARD_S):
                while not said.endswith(b"\n"):
                    said += await holder.stdout.receive_some()
            assert said == b"held\n"
            with trio.fail_after(LEASE_GUARD_S):
                steps = text(read("r", "leased.txt"))
                await c.call("session.prompt", {"session": session_id, "text": steps})
        finally:
            holder.kill()
            with trio.CancelScope(shield=True):
                await holder.wait()
        error = answers(world)["r"]["error"]
        assert "holds a lease or lock on it" in error["message"]
        [refused] = await event_data(c, session_id, "file_refused")
        assert refused["reason"] == error["message"]


@pytest.mark.slow
def test_sigterm_ends_the_daemon_while_its_agent_reads_a_fifo(dirs: DaemonDirs) -> None:
    write_config(dirs, dict(SCRIPTED))
    repo = make_repo(dirs.root / "repo")
    daemon = start_daemon_process(dirs)
    try:
        project = rpc(dirs, "project.add", {"path": str(repo)})
        session = rpc(dirs, "session.create", {"project": project["id"], "title": "t"})
        root = Path(session["workspace"]["path"])
        os.mkfifo(root / "fifo")
        rpc(dirs, "session.resume", {"session": session["id"]})
        prompt = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "session.prompt",
            "params": {"session": session["id"], "text": READ_THEN_HANG},
        }
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(dirs.socket))
            sock.sendall(json.dumps(prompt).encode() + b"\n")  # its answer comes at the end
            _wait_for(lambda: (root / "marker.txt").exists(), "the agent's marker write")
            assert daemon.terminate(timeout=HANG_GUARD_S / 2) == 0, daemon.stderr
    except subprocess.TimeoutExpired:
        pytest.fail("mimird did not end on SIGTERM while its agent read a FIFO")
    finally:
        daemon.kill()  # its threads blocked on the FIFO go with it


async def test_requests_past_the_agents_cap_are_answered_busy(dirs: DaemonDirs) -> None:
    steps = [PERMISSION | {"id": f"p{i}", "wait": False} for i in range(2)]
    steps += [read("over", "README.md"), {"do": "await", "ids": ["p0", "p1"]}]
    steps.append(read("after", "README.md"))
    async with (
        agent_world(dirs, SCRIPTED, supervision={"max_agent_requests": 2}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await new_session(world, c)
        with trio.fail_after(HANG_GUARD_S):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    c.call, "session.prompt", {"session": session_id, "text": text(*steps)}
                )
                pending = await c.until(
                    "permission.list", {"session": session_id}, lambda r: len(r["permissions"]) == 2
                )
                # Answered busy while the two permission requests were in flight.
                await trio.to_thread.run_sync(
                    _wait_for, lambda: "over" in answers(world), "the answer to 'over'"
                )
                for parked in pending["permissions"]:
                    await c.call(
                        "permission.respond", {"permission": parked["id"], "kind": "allow_once"}
                    )
        got = answers(world)
        busy = got["over"]["error"]
        assert busy["code"] == ErrorCode.BUSY
        assert "max_agent_requests" in busy["message"]
        assert "fs/read_text_file" in busy["message"]
        assert got["after"]["result"]["content"] == "hello\n", "served again once answered"


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not condition():
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.02)


async def test_a_workspace_swapped_for_a_symlink_keeps_the_agents_files_and_terminals_inside(
    dirs: DaemonDirs,
) -> None:
    """``mv $WS $WS.moved && ln -s /elsewhere $WS`` while the agent runs: what the agent
    has Mimir write, read or run goes to the pinned (moved) directory, journaled."""
    elsewhere = dirs.root / "elsewhere"
    elsewhere.mkdir()
    async with agent_world(dirs, SCRIPTED) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        root = await workspace_of(c, session_id)
        (root / "sub").mkdir()
        await c.call("session.resume", {"session": session_id})
        moved = root.with_name(root.name + ".moved")
        root.rename(moved)
        root.symlink_to(elsewhere)
        create = {"sessionId": "sess-1", "command": "pwd", "cwd": str(root / "sub")}
        steps = [
            write("w1", "a.txt", "relative\n"),
            write("w2", str(root / "b.txt"), "absolute\n"),
            read("r1", str(root / "README.md")),
            {"do": "request", "id": "t1", "method": "terminal/create", "params": create},
            {
                "do": "request",
                "id": "t1-exit",
                "method": "terminal/wait_for_exit",
                "params": {"sessionId": "sess-1", "terminalId": "$t1"},
            },
            {
                "do": "request",
                "id": "t1-out",
                "method": "terminal/output",
                "params": {"sessionId": "sess-1", "terminalId": "$t1"},
            },
            write("w3", str(elsewhere / "c.txt"), "outside\n"),
        ]
        with trio.fail_after(HANG_GUARD_S):
            await c.call("session.prompt", {"session": session_id, "text": text(*steps)})
        assert os.listdir(elsewhere) == [], "nothing lands where the path now leads"
        assert (moved / "a.txt").read_text() == "relative\n"
        assert (moved / "b.txt").read_text() == "absolute\n"
        got = answers(world)
        assert got["r1"]["result"]["content"] == "hello\n"
        assert got["t1-out"]["result"]["output"] == f"{moved / 'sub'}\n"
        assert "outside the session's workspace" in got["w3"]["error"]["message"]
        written = await event_data(c, session_id, "file_written")
        assert [(w["path"], w["bytes"]) for w in written] == [("a.txt", 9), ("b.txt", 9)]
        [started] = await event_data(c, session_id, "terminal_started")
        assert started["cwd"] == "sub"
        [refused] = await event_data(c, session_id, "file_refused")
        assert refused["op"] == "write"
        assert refused["path"] == str(elsewhere / "c.txt")


async def test_a_terminal_cwd_that_leads_out_of_the_pinned_workspace_is_refused(
    dirs: DaemonDirs,
) -> None:
    elsewhere = dirs.root / "elsewhere"
    elsewhere.mkdir()
    async with agent_world(dirs, SCRIPTED) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        root = await workspace_of(c, session_id)
        await c.call("session.resume", {"session": session_id})
        root.rename(root.with_name(root.name + ".moved"))
        root.symlink_to(elsewhere)
        steps = [
            {
                "do": "request",
                "id": f"t-{name}",
                "method": "terminal/create",
                "params": {"sessionId": "sess-1", "command": "touch", "args": ["x"], "cwd": cwd},
            }
            for name, cwd in (("there", str(elsewhere)), ("up", f"{root}/.."), ("gone", "nope"))
        ]
        with trio.fail_after(HANG_GUARD_S):
            await c.call("session.prompt", {"session": session_id, "text": text(*steps)})
        got = answers(world)
        for name in ("there", "up"):
            assert "outside the session's workspace" in got[f"t-{name}"]["error"]["message"]
        assert "cwd nope does not exist" in got["t-gone"]["error"]["message"]
        refused = await event_data(c, session_id, "terminal_refused")
        assert [r["cwd"] for r in refused] == [str(elsewhere), f"{root}/..", "nope"]
        assert await event_data(c, session_id, "terminal_started") == []
        assert os.listdir(elsewhere) == []


async def test_every_file_refusal_is_journaled(dirs: DaemonDirs) -> None:
    async with (
        agent_world(dirs, SCRIPTED, supervision={"file_max_bytes": 1024}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await new_session(world, c)
        root = await workspace_of(c, session_id)
        (root / "big.txt").write_text("x" * 2048)
        steps = [
            read("dir", "src"),
            read("big", "big.txt"),
            write("huge", "new.txt", "y" * 2048),
            read("missing", "missing.txt"),
        ]
        with trio.fail_after(HANG_GUARD_S):
            await c.call("session.prompt", {"session": session_id, "text": text(*steps)})
        got = answers(world)
        assert "src is a directory" in got["dir"]["error"]["message"]
        assert "larger than 1024 bytes" in got["big"]["error"]["message"]
        assert "file_max_bytes" in got["huge"]["error"]["message"]
        assert got["missing"]["error"]["code"] == -32002, "a missing file is no refusal"
        assert not (root / "new.txt").exists()
        refused = await event_data(c, session_id, "file_refused")
        assert [(r["op"], r["path"]) for r in refused] == [
            ("read", "src"),
            ("read", "big.txt"),
            ("write", "new.txt"),
        ]
        assert all(
            r["reason"] == got[k]["error"]["message"]
            for r, k in zip(refused, ("dir", "big", "huge"), strict=True)
        )


@pytest.mark.parametrize(
    ("key", "value", "bound"),
    [
        ("max_agent_requests", 0, ">= 1"),
        ("max_agent_requests", 10_001, "<= 10000"),
        ("file_timeout_s", 0, "> 0"),
        ("file_timeout_s", 3601, "<= 3600"),
        ("file_max_bytes", 1023, ">= 1024"),
        ("file_max_bytes", (64 << 20) + 1, f"<= {64 << 20}"),
    ],
)
def test_the_agent_io_settings_are_bounded(
    dirs: DaemonDirs, key: str, value: int, bound: str
) -> None:
    dirs.root.mkdir(parents=True, exist_ok=True)
    dirs.config.write_text(f"[supervision]\n{key} = {value}\n")
    with pytest.raises(ConfigError) as refused:
        dirs.settings()
    assert f"supervision.{key}" in str(refused.value)
    assert bound in str(refused.value)


async def test_the_stores_writes_never_wait_for_trios_default_threads(dirs: DaemonDirs) -> None:
    """Whatever holds trio's default worker threads (an agent's I/O did), store writes
    and what they serve go on: the writer has a thread of its own."""
    async with agent_world(dirs, SCRIPTED) as world, Client.connect(world.daemon.socket) as c:
        default = trio.to_thread.current_default_thread_limiter()
        holders = [object() for _ in range(int(default.total_tokens))]
        for holder in holders:
            await default.acquire_on_behalf_of(holder)
        try:
            with trio.fail_after(HANG_GUARD_S):
                await c.call("project.update", {"project": world.project, "description": "d"})
                project = await c.call("project.get", {"project": world.project})
        finally:
            for holder in holders:
                default.release_on_behalf_of(holder)
        assert project["description"] == "d"
