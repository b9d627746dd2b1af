"""Stopping a child's whole process group: stdin closed, SIGTERM, SIGKILL, sweep."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from mimird.processes import child_environment, group_alive, stop_group
from tests.support.processes import Doomed, killing

# A child that reports the pid of what it starts, then behaves as told.
_CHILD = """
import os, signal, subprocess, sys, time
mode = sys.argv[1]
if "ignore-term" in mode:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if "slow-term" in mode:  # says "term" for each SIGTERM, and takes its time to exit
    def on_term(signum, frame):
        print("term", flush=True)
        time.sleep(0.5)
        os._exit(0)
    signal.signal(signal.SIGTERM, on_term)
if "grandchild" in mode:
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    grandchild = subprocess.Popen([sys.executable, "-c", stubborn])
    print(grandchild.pid, flush=True)
else:
    print(os.getpid(), flush=True)
if "ignore-eof" in mode:
    time.sleep(600)
else:
    sys.stdin.read()
"""


@pytest.fixture
def doomed() -> Iterator[Doomed]:
    """The children's groups, killed when the test ends whatever stop_group did."""
    with killing() as doomed:
        yield doomed


async def _spawn(mode: str, doomed: Doomed) -> tuple[trio.Process, int]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", _CHILD, mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    doomed.group(process.pid)
    assert process.stdout is not None
    line = b""
    with trio.fail_after(10):
        while not line.endswith(b"\n"):
            line += await process.stdout.receive_some(64)
    return process, int(line)


def _dead(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def _wait_dead(pid: int, within: float = 10) -> bool:
    deadline = time.monotonic() + within
    while not _dead(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


async def test_a_child_that_exits_on_eof_stops_without_signals(doomed: Doomed) -> None:
    process, _ = await _spawn("polite", doomed)
    with trio.fail_after(10):
        code = await stop_group(process, eof_grace=5, term_grace=5)
    assert code == 0  # it exited by itself: a signal would give a negative code
    assert not group_alive(process.pid)


async def test_a_child_that_ignores_eof_is_terminated(doomed: Doomed) -> None:
    process, _ = await _spawn("ignore-eof", doomed)
    with trio.fail_after(10):
        code = await stop_group(process, eof_grace=0.2, term_grace=5)
    assert code == -15
    assert not group_alive(process.pid)


async def test_term_first_sends_sigterm_once_and_gives_it_term_grace(doomed: Doomed) -> None:
    # An agent that ignores EOF and takes a while to exit on SIGTERM gets one
    # SIGTERM and the whole term_grace, not a second SIGTERM at once.
    process, _ = await _spawn("ignore-eof slow-term", doomed)
    with trio.fail_after(10):
        code = await stop_group(process, eof_grace=5, term_grace=5, term_first=True)
        assert process.stdout is not None
        said = b""
        while chunk := await process.stdout.receive_some(64):
            said += chunk
    assert code == 0  # it exited by itself after the one SIGTERM
    assert said.decode().split() == ["term"]


async def test_a_child_that_ignores_eof_and_sigterm_is_killed(doomed: Doomed) -> None:
    process, _ = await _spawn("ignore-eof ignore-term", doomed)
    with trio.fail_after(10):
        code = await stop_group(process, eof_grace=0.2, term_grace=0.2)
    assert code == -9
    assert not group_alive(process.pid)


async def test_no_process_of_the_group_survives_even_one_that_ignores_sigterm(
    doomed: Doomed,
) -> None:
    # The leader exits on EOF, its grandchild ignores SIGTERM and would outlive
    # a stop that only watches the leader.
    process, grandchild = await _spawn("grandchild", doomed)
    with trio.fail_after(15):
        await stop_group(process, eof_grace=0.2, term_grace=0.2)
    assert _wait_dead(grandchild)
    assert not group_alive(process.pid)


async def test_a_stop_completes_even_when_its_caller_is_cancelled(doomed: Doomed) -> None:
    process, grandchild = await _spawn("grandchild ignore-eof ignore-term", doomed)
    with trio.move_on_after(0.01):
        await stop_group(process, eof_grace=0.2, term_grace=0.2)
    assert _wait_dead(grandchild)
    assert not group_alive(process.pid)


def test_children_get_the_allowlist_and_the_layered_env_only() -> None:
    base = {
        "PATH": "/bin",
        "HOME": "/h",
        "LC_ALL": "C",
        "NOTIFY_SOCKET": "/x",
        "LISTEN_FDS": "1",
        "MIMIR_DB_KEY": "k",
        "AWS_SECRET": "s",
    }
    env = child_environment({"API_KEY": "v"}, base)
    assert env == {"PATH": "/bin", "HOME": "/h", "LC_ALL": "C", "API_KEY": "v"}
