"""The reaper after a crash: which members of a stored process group are ours.

Real processes in groups of their own; the rule is that a member is killed only
if it carries its session's MIMIR_SESSION or works inside its workspace."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mimird.processes import SESSION_ENV, group_alive, kill_group
from mimird.sessions import recovery

SESSION = "01sessionid"


@pytest.fixture
def groups() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        kill_group(process.pid, signal.SIGKILL)
        process.wait(10)


def spawn(
    groups: list[subprocess.Popen[bytes]], cwd: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(1000)"],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], **env},
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    groups.append(process)
    assert process.stdout is not None
    assert process.stdout.readline() == b"up\n", "running, with its own cwd and environment"
    return process


@pytest.mark.parametrize(
    ("where", "env", "ours"),
    [
        ("workspace", {}, True),
        ("elsewhere", {SESSION_ENV: SESSION}, True),
        ("workspace", {SESSION_ENV: "another-session"}, True),
        ("elsewhere", {}, False),
        ("elsewhere", {SESSION_ENV: "another-session"}, False),
        ("elsewhere", {"X": f"{SESSION_ENV}={SESSION}"}, False),
    ],
)
def test_only_the_sessions_own_processes_are_reaped(
    tmp_path: Path,
    groups: list[subprocess.Popen[bytes]],
    where: str,
    env: dict[str, str],
    ours: bool,
) -> None:
    workspace = tmp_path / "workspace"
    elsewhere = tmp_path / "elsewhere"
    workspace.mkdir()
    elsewhere.mkdir()
    process = spawn(groups, workspace if where == "workspace" else elsewhere, env)
    found = recovery.leftovers(process.pid, workspace, SESSION)
    assert found == ([process.pid] if ours else [])
    assert recovery.reap(process.pid, workspace, SESSION) == found
    if ours:
        process.wait(10)
        assert not group_alive(process.pid)
    else:
        assert process.poll() is None, "a stranger is left alone"
