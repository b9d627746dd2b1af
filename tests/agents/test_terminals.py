"""ACP terminals: commands an agent runs through Mimir (``terminal/*``), with real
subprocesses started for the scripted fake agent.

Each prompt's text is a JSON list of the fake agent's steps (its ``script`` step),
so a test says exactly which requests the agent makes; the agent records the answers
it gets, and the test reads them back."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, Final

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from mimird.agents.terminals import OutputBuffer
from mimird.processes import group_alive, group_members
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
from tests.support.helpers import DaemonDirs, blocking_call, daemon_process, make_repo, run_mimirctl
from tests.support.processes import killing

ACP_SESSION: Final = "sess-1"
INVALID_PARAMS: Final = -32602
#: Every prompt plays the steps its text holds.
SCRIPTED: Final = {"prompts": [[{"do": "script"}]] * 40}
GONE_TIMEOUT_S: Final = 10.0


# ---- the agent's side ---------------------------------------------------------------


def create(request_id: str, command: str, *args: str, **extra: Any) -> dict[str, Any]:
    params = {"sessionId": ACP_SESSION, "command": command, "args": list(args), **extra}
    return {"do": "request", "id": request_id, "method": "terminal/create", "params": params}


def call(request_id: str, method: str, terminal: str, *, wait: bool = True) -> dict[str, Any]:
    """A terminal/* request about the terminal made by request ``terminal`` (or, when
    it starts with ``=``, the terminal id that follows)."""
    terminal_id = terminal[1:] if terminal.startswith("=") else f"${terminal}"
    return {
        "do": "request",
        "id": request_id,
        "method": f"terminal/{method}",
        "params": {"sessionId": ACP_SESSION, "terminalId": terminal_id},
        "wait": wait,
    }


async def play(c: Client, session_id: str, *steps: dict[str, Any]) -> None:
    """One prompt whose turn is the agent making these requests."""
    await c.call("session.prompt", {"session": session_id, "text": json.dumps(list(steps))})


def answers(world: AgentWorld) -> dict[Any, dict[str, Any]]:
    """The answers the agent got, by request id."""
    return {m["id"]: m for m in received(world) if "id" in m and "method" not in m}


def result(world: AgentWorld, request_id: str) -> Any:
    answer = answers(world)[request_id]
    assert "error" not in answer, answer
    return answer["result"]


def error(world: AgentWorld, request_id: str) -> dict[str, Any]:
    answer = answers(world)[request_id]
    assert "error" in answer, answer
    found: dict[str, Any] = answer["error"]
    return found


def python(code: str) -> tuple[str, str, str]:
    return (sys.executable, "-c", code)


async def wait_gone(pgid: int) -> None:
    with trio.fail_after(GONE_TIMEOUT_S):
        while group_alive(pgid):  # noqa: ASYNC110 (no event says a group is empty)
            await trio.sleep(0.02)


async def written(path: Path) -> str:
    """The text of a file some command writes, once it is there."""
    file = trio.Path(path)
    with trio.fail_after(GONE_TIMEOUT_S):
        while True:
            if await file.exists() and (text := await file.read_text()):
                return text
            await trio.sleep(0.02)


def recorded_groups(dirs: DaemonDirs) -> list[int]:
    """The terminals' process groups the database holds for reaping after a crash."""
    with contextlib.closing(sqlite3.connect(dirs.database)) as db:
        return [row[0] for row in db.execute("SELECT process_group FROM terminals")]


# ---- the output buffer --------------------------------------------------------------


def _cut(data: bytes, limit: int) -> bytes:
    """What is left of ``data`` under ``limit``: its tail, from a character boundary."""
    if len(data) <= limit:
        return data
    tail = data[len(data) - limit :]
    skip = 0
    while skip < min(3, len(tail)) and tail[skip] & 0xC0 == 0x80:
        skip += 1
    return tail[skip:]


@given(
    text=st.text(max_size=200),
    cuts=st.lists(st.integers(min_value=0, max_value=800), max_size=6),
    limit=st.integers(min_value=0, max_value=300),
)
def test_output_keeps_the_newest_bytes_from_a_character_boundary(
    text: str, cuts: list[int], limit: int
) -> None:
    data = text.encode()
    buffer = OutputBuffer(limit)
    start = 0
    for cut in sorted(cuts):  # chunks split anywhere, in the middle of characters too
        buffer.append(data[start:cut])
        start = max(start, cut)
    buffer.append(data[start:])
    kept = buffer.data
    assert data.endswith(kept)
    assert len(kept) <= limit
    assert len(kept) >= min(len(data), limit) - 3
    assert buffer.truncated == (len(kept) < len(data))
    assert buffer.total == len(data)
    # Cut at a boundary: what is kept decodes, and is the end of the text.
    assert text.endswith(kept.decode("utf-8"))
    assert buffer.text(final=True) == kept.decode("utf-8")
    # However the output came in chunks, the cut is the one a single cut would make.
    assert kept == _cut(data, limit)


@given(
    head=st.text(max_size=50),
    last=st.characters(min_codepoint=0x80, codec="utf-8"),  # no lone surrogates
    missing=st.integers(min_value=1, max_value=3),
)
def test_output_of_a_running_command_leaves_out_a_half_arrived_character(
    head: str, last: str, missing: int
) -> None:
    encoded = last.encode()  # 2 to 4 bytes
    buffer = OutputBuffer(1000)
    buffer.append(head.encode() + encoded[: len(encoded) - min(missing, len(encoded) - 1)])
    assert buffer.text(final=False) == head
    assert buffer.text(final=True) == head + "\ufffd", "once it exited, the output is all there"
    buffer.append(encoded[len(encoded) - min(missing, len(encoded) - 1) :])
    assert buffer.text(final=False) == head + last


def test_output_that_is_not_utf8_is_shown_with_replacement_characters() -> None:
    buffer = OutputBuffer(4)
    buffer.append(b"\xff\xfe\x80\x80\x80\x80\x80ab")
    # Not UTF-8 at all: the cut moves past three continuation bytes at most.
    assert buffer.data == b"ab"
    assert buffer.text(final=True) == "ab"
    buffer = OutputBuffer(10)
    buffer.append(b"ok \xff")
    assert buffer.text(final=True) == "ok \ufffd"


# ---- terminals of a session's agent -------------------------------------------------


async def test_a_command_runs_in_the_workspace_and_reports_its_exit_and_output(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, SCRIPTED) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await c.call("session.resume", {"session": session_id})
        root = await workspace_of(c, session_id)
        (root / "sub").mkdir()
        await play(
            c,
            session_id,
            create("c1", "sh", "-c", "pwd; echo oops >&2; exit 3"),
            call("w1", "wait_for_exit", "c1"),
            call("o1", "output", "c1"),
            create("c2", "pwd", cwd=str(root / "sub")),
            call("w2", "wait_for_exit", "c2"),
            call("o2", "output", "c2"),
            call("r1", "release", "c1"),
            call("r2", "release", "c2"),
        )
        terminal_id = result(world, "c1")["terminalId"]
        real = await trio.Path(root).resolve()
        assert result(world, "w1") == {"exitCode": 3, "signal": None}
        assert result(world, "o1") == {
            "output": f"{real}\noops\n",
            "truncated": False,
            "exitStatus": {"exitCode": 3, "signal": None},
        }
        assert result(world, "o2")["output"] == f"{real / 'sub'}\n"
        assert result(world, "r1") == {}
        assert recorded_groups(dirs) == [], "forgotten once their groups are gone"
        started = await event_data(c, session_id, "terminal_started")
        assert [(s["terminal"], s["command"], s["cwd"]) for s in started] == [
            (terminal_id, "sh", "."),
            (result(world, "c2")["terminalId"], "pwd", "sub"),
        ]
        assert started[0]["args"] == ["-c", "pwd; echo oops >&2; exit 3"]
        exited = await event_data(c, session_id, "terminal_exited")
        assert {"terminal": terminal_id, "exit_code": 3, "signal": None} in exited
        # A command line is found by search, like a tool call's title.
        hits = (await c.call("search", {"query": '"echo oops"'}))["hits"]
        assert "terminal_started" in [h["kind"] for h in hits]


async def test_mimirctl_log_shows_the_commands_and_how_they_ended(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, SCRIPTED) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        root = await workspace_of(c, session_id)
        await play(
            c,
            session_id,
            create("c1", "sh", "-c", "exit 4"),
            call("w1", "wait_for_exit", "c1"),
            call("r1", "release", "c1"),
            create("c2", "true", cwd=str(root.parent)),
        )
        done = await trio.to_thread.run_sync(run_mimirctl, dirs, "log", session_id)
        assert done.returncode == 0, done.stderr
        assert "$ sh -c exit 4" in done.stdout
        assert "[command exited: code 4]" in done.stdout
        assert "refused to run true:" in done.stdout


async def test_waiting_for_a_command_does_not_hold_up_the_agents_other_requests(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, SCRIPTED) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        with trio.fail_after(20):
            await play(
                c,
                session_id,
                create("slow", "sleep", "1000"),
                call("wait-slow", "wait_for_exit", "slow", wait=False),
                create("fast", "echo", "hi"),
                call("wait-fast", "wait_for_exit", "fast"),
                call("out-fast", "output", "fast"),
                call("kill-slow", "kill", "slow"),
                {"do": "await", "ids": ["wait-slow"]},
                call("r1", "release", "slow"),
                call("r2", "release", "fast"),
            )
        assert result(world, "out-fast")["output"] == "hi\n"
        assert result(world, "wait-slow") == {"exitCode": None, "signal": "SIGTERM"}


async def test_a_working_directory_outside_the_workspace_is_refused(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, SCRIPTED) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await c.call("session.resume", {"session": session_id})
        root = await workspace_of(c, session_id)
        (root / "escape").symlink_to(dirs.root)
        await play(
            c,
            session_id,
            create("dotdot", "pwd", cwd=f"{root}/.."),
            create("link", "pwd", cwd=str(root / "escape")),
            create("absolute", "pwd", cwd="/"),
            create("file", "pwd", cwd=str(root / "README.md")),
        )
        for request_id in ("dotdot", "link", "absolute"):
            refused = error(world, request_id)
            assert refused["code"] == INVALID_PARAMS
            assert "outside the session's workspace" in refused["message"]
        assert "not a directory" in error(world, "file")["message"]
        refusals = await event_data(c, session_id, "terminal_refused")
        assert [r["cwd"] for r in refusals] == [
            f"{root}/..",
            str(root / "escape"),
            "/",
            str(root / "README.md"),
        ]
        assert all(r["command"] == "pwd" for r in refusals)
        assert await event_data(c, session_id, "terminal_started") == []


async def test_output_over_the_limit_is_cut_from_the_beginning_at_a_character_boundary(
    dirs: DaemonDirs,
) -> None:
    text = "aé€😀" * 50  # 1 + 2 + 3 + 4 bytes, 500 in all
    write = f"import sys; sys.stdout.buffer.write({text!r}.encode())"
    async with agent_world(dirs, SCRIPTED) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await play(
            c,
            session_id,
            create("c", *python(write), outputByteLimit=103),
            call("w", "wait_for_exit", "c"),
            call("o", "output", "c"),
            create("all", *python(write), outputByteLimit=500),
            call("w2", "wait_for_exit", "all"),
            call("o2", "output", "all"),
            call("r", "release", "c"),
            call("r2", "release", "all"),
        )
        output = result(world, "o")
        assert output["truncated"] is True
        # The last 103 bytes begin with the last 3 bytes of a 4-byte character: they go
        # too, and what is left is 10 whole repetitions.
        assert output["output"] == "aé€😀" * 10
        assert result(world, "o2") == {
            "output": text,
            "truncated": False,
            "exitStatus": {"exitCode": 0, "signal": None},
        }


async def test_kill_ends_the_command_and_keeps_its_terminal(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, SCRIPTED) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await play(
            c,
            session_id,
            create("c", "sh", "-c", "echo started; exec sleep 1000"),
            {**call("running", "output", "c"), "until": "started"},
            call("k", "kill", "c"),
            call("o", "output", "c"),
            call("w", "wait_for_exit", "c"),
            call("k2", "kill", "c"),
            call("r", "release", "c"),
        )
        assert result(world, "running") == {"output": "started\n", "truncated": False}
        assert result(world, "k") == {}
        killed = {"exitCode": None, "signal": "SIGTERM"}
        assert result(world, "o") == {
            "output": "started\n",
            "truncated": False,
            "exitStatus": killed,
        }
        assert result(world, "w") == killed
        assert result(world, "k2") == {}, "killing what has exited is no error"
        assert result(world, "r") == {}
        [exited] = await event_data(c, session_id, "terminal_exited")
        assert exited["signal"] == "SIGTERM"


async def test_release_kills_the_command_and_forgets_the_terminal(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, SCRIPTED) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await play(
            c,
            session_id,
            create("c", "sleep", "1000"),
            call("r", "release", "c"),
            call("o", "output", "c"),
            call("w", "wait_for_exit", "c"),
            call("k", "kill", "c"),
            call("r2", "release", "c"),
            call("unknown", "output", "=no-such-terminal"),
        )
        assert result(world, "r") == {}
        [started] = await event_data(c, session_id, "terminal_started")
        assert not group_alive(started["pid"])
        for request_id in ("o", "w", "k", "r2", "unknown"):
            refused = error(world, request_id)
            assert refused["code"] == INVALID_PARAMS
            assert "no terminal" in refused["message"]
        assert "no-such-terminal" in error(world, "unknown")["message"]
        [exited] = await event_data(c, session_id, "terminal_exited")
        assert exited["signal"] == "SIGTERM"


async def test_a_command_that_leaves_a_process_behind_exits_and_release_ends_that_too(
    dirs: DaemonDirs,
) -> None:
    async with agent_world(dirs, SCRIPTED) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        with trio.fail_after(20):
            await play(
                c,
                session_id,
                # The background sleep holds the output pipe open: the exit must not wait for it.
                create("c", "sh", "-c", "sleep 1000 & echo $! > sleeper.pid; echo bye"),
                call("w", "wait_for_exit", "c"),
                call("o", "output", "c"),
            )
        assert result(world, "w") == {"exitCode": 0, "signal": None}
        assert result(world, "o")["output"] == "bye\n"
        [started] = await event_data(c, session_id, "terminal_started")
        pgid = started["pid"]
        sleeper = int(await written((await workspace_of(c, session_id)) / "sleeper.pid"))
        with killing([pgid]):
            assert group_members(pgid) == [sleeper]
            assert recorded_groups(dirs) == [pgid], "kept while its group may be alive"
            await play(c, session_id, call("r", "release", "c"))
            assert group_members(pgid) == []
            assert recorded_groups(dirs) == []


async def test_a_terminal_of_another_session_is_unknown(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, SCRIPTED) as world, Client.connect(world.daemon.socket) as c:
        first = await new_session(world, c)
        second = await new_session(world, c)
        await play(c, first, create("mine", "sleep", "1000"))
        theirs = result(world, "mine")["terminalId"]
        await play(
            c,
            second,
            call("peek", "output", f"={theirs}"),
            call("kill", "kill", f"={theirs}"),
            call("release", "release", f"={theirs}"),
        )
        for request_id in ("peek", "kill", "release"):
            assert error(world, request_id)["code"] == INVALID_PARAMS
        await play(c, first, call("still", "output", "mine"))
        assert "exitStatus" not in result(world, "still"), "it still runs"
        await play(c, first, call("done", "release", "mine"))


async def test_a_request_for_another_acp_session_is_refused(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, SCRIPTED) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        step = create("c", "true")
        step["params"]["sessionId"] = "someone-else"
        await play(c, session_id, step)
        assert error(world, "c")["code"] == INVALID_PARAMS
        assert await event_data(c, session_id, "terminal_started") == []


async def test_bad_create_params_get_clear_errors(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, SCRIPTED) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await play(
            c,
            session_id,
            create("empty", ""),
            create("args", "echo", outputByteLimit=-1),
            {
                "do": "request",
                "id": "env",
                "method": "terminal/create",
                "params": {"sessionId": ACP_SESSION, "command": "env", "env": {"A": "b"}},
            },
            create("missing", "/nonexistent/command"),
        )
        assert "command" in error(world, "empty")["message"]
        assert "outputByteLimit" in error(world, "args")["message"]
        assert "env" in error(world, "env")["message"]
        missing = error(world, "missing")
        assert missing["code"] == INVALID_PARAMS
        assert "cannot start /nonexistent/command" in missing["message"]
        session = await c.call("session.get", {"session": session_id})
        assert session["status"] == "idle"


async def test_a_terminal_gets_the_agents_environment_and_not_the_daemons_secrets(
    dirs: DaemonDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What systemd and the user give the daemon itself (dirs.env() keeps them out of
    # the daemon's settings; the agent's environment starts from os.environ).
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("MIMIR_DB_KEY", "not-for-agents")
    monkeypatch.setenv("SOME_DAEMON_ONLY_VARIABLE", "x")
    async with agent_world(dirs, SCRIPTED) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await play(
            c,
            session_id,
            create("c", "env", env=[{"name": "GREETING", "value": "hello there"}]),
            call("w", "wait_for_exit", "c"),
            call("o", "output", "c"),
            call("r", "release", "c"),
        )
        lines = result(world, "o")["output"].splitlines()
        names = {line.split("=", 1)[0] for line in lines}
        assert "GREETING=hello there" in lines
        assert "PATH" in names
        assert not names & {"NOTIFY_SOCKET", "LISTEN_FDS", "MIMIR_DB_KEY"}
        assert "SOME_DAEMON_ONLY_VARIABLE" not in names
        assert not any("not-for-agents" in line for line in lines)


async def test_a_session_may_hold_only_so_many_terminals(dirs: DaemonDirs) -> None:
    async with (
        agent_world(dirs, SCRIPTED, supervision={"max_terminals": 2}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await new_session(world, c)
        await play(
            c,
            session_id,
            create("a", "sleep", "1000"),
            create("b", "true"),
            call("wb", "wait_for_exit", "b"),
            create("c", "true"),
            call("ra", "release", "a"),
            create("d", "true"),
            call("rb", "release", "b"),
            call("rd", "release", "d"),
        )
        refused = error(world, "c")
        assert "max_terminals" in refused["message"]
        assert "release" in refused["message"]
        assert "terminalId" in result(world, "d")


async def test_stop_ends_a_terminal_that_ignores_sigterm_and_its_grandchild(
    dirs: DaemonDirs,
) -> None:
    stubborn = (
        "import signal, subprocess, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        # SIG_IGN survives exec: the grandchild ignores SIGTERM too.
        "child = subprocess.Popen(['sleep', '1000']); "
        "open('grandchild.pid', 'w').write(str(child.pid)); time.sleep(1000)"
    )
    async with agent_world(dirs, SCRIPTED) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await play(c, session_id, create("c", *python(stubborn)))
        [started] = await event_data(c, session_id, "terminal_started")
        pgid = started["pid"]
        pid_file = (await workspace_of(c, session_id)) / "grandchild.pid"
        with killing([pgid]):
            grandchild = int(await written(pid_file))
            assert grandchild in group_members(pgid)
            assert os.getpgid(pgid) == pgid, "its own process group"
            stopped = await c.call("session.stop", {"session": session_id})
            assert stopped["status"] == "stopped"
            # Stopped before session.stop answered: no member of the group is left.
            assert group_members(pgid) == []
            assert recorded_groups(dirs) == []
        [exited] = await event_data(c, session_id, "terminal_exited")
        assert exited["signal"] == "SIGKILL"


async def test_terminals_end_when_their_agent_crashes(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, SCRIPTED) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await play(c, session_id, create("c", "sleep", "1000"))
        [started] = await event_data(c, session_id, "terminal_started")
        with killing([started["pid"]]):
            error = await c.error(
                "session.prompt",
                {"session": session_id, "text": json.dumps([{"do": "crash"}])},
            )
            assert "exited during the turn" in error["message"]
            await wait_gone(started["pid"])
        await c.until("session.get", {"session": session_id}, lambda s: s["status"] == "idle")
        [exited] = await event_data(c, session_id, "terminal_exited")
        assert exited["signal"] == "SIGTERM"


async def test_terminals_end_when_the_daemon_shuts_down(dirs: DaemonDirs) -> None:
    async with agent_world(dirs, SCRIPTED) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        await play(c, session_id, create("c", "sleep", "1000"))
        [started] = await event_data(c, session_id, "terminal_started")
        assert group_alive(started["pid"])
    with killing([started["pid"]]):
        assert not group_alive(started["pid"]), "stopped before the daemon was done"
        assert recorded_groups(dirs) == []


# ---- a crash of the daemon ----------------------------------------------------------


def _rpc(dirs: DaemonDirs, method: str, params: Any = None) -> Any:
    response = blocking_call(dirs.socket, method, params, timeout=20)
    assert "error" not in response, response
    return response["result"]


@pytest.mark.slow
def test_a_terminal_left_by_a_killed_daemon_is_reaped_at_the_next_start(dirs: DaemonDirs) -> None:
    write_config(dirs, dict(SCRIPTED))
    repo = make_repo(dirs.root / "repo")
    with daemon_process(dirs) as daemon:
        project = _rpc(dirs, "project.add", {"path": str(repo)})
        session = _rpc(dirs, "session.create", {"project": project["id"], "title": "t"})
        # Out of the workspace: the reaper knows it by its MIMIR_SESSION, not its cwd.
        steps = [create("c", "sh", "-c", "cd / && sleep 1000")]
        _rpc(dirs, "session.prompt", {"session": session["id"], "text": json.dumps(steps)})
        found = _rpc(dirs, "session.events", {"session": session["id"]})["events"]
        [started] = [e["data"] for e in found if e["kind"] == "terminal_started"]
        pgid = started["pid"]
        daemon.kill()
    with killing([pgid]):
        assert group_alive(pgid), "SIGKILL leaves the terminal's group behind"
        with daemon_process(dirs):
            deadline = time.monotonic() + GONE_TIMEOUT_S
            while group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not group_alive(pgid), "the next start reaps it"
            found = _rpc(dirs, "session.events", {"session": session["id"]})["events"]
            after = _rpc(dirs, "session.get", {"session": session["id"]})
    exited = [e["data"] for e in found if e["kind"] == "terminal_exited"]
    assert exited == [
        {"terminal": started["terminal"], "exit_code": None, "signal": None, "after_crash": True}
    ]
    assert after["status"] == "interrupted"
