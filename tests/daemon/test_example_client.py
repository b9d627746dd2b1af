"""docs/examples/follow.py, the example client of docs/clients.md, against a real daemon
process: it follows a session's events, answers its permission request, survives a
restart of the daemon, and prints every event exactly once, agent text made safe."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from tests.support.agents import write_config
from tests.support.helpers import (
    DaemonDirs,
    daemon_process,
    make_repo,
    rpc,
    start_daemon_process,
)

FOLLOW: Final = Path(__file__).resolve().parents[2] / "docs" / "examples" / "follow.py"
WAIT_S: Final = 30.0
PERMISSION: Final = {
    "do": "request",
    "method": "session/request_permission",
    "params": {
        "sessionId": "sess-1",
        "toolCall": {"toolCallId": "t1", "title": "Write a.txt"},
        "options": [
            {"optionId": "yes", "name": "Allow", "kind": "allow_once"},
            {"optionId": "no", "name": "Reject", "kind": "reject_once"},
        ],
    },
}
HOSTILE: Final = "look\x1b[2J\x1b]0;owned\x07 here\u202eevil"


class Follower:
    """follow.py as a subprocess, its output lines gathered by a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._threads = [
            threading.Thread(target=self._gather, args=(proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._gather, args=(proc.stderr, self.errors), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _gather(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def seqs(self) -> list[int]:
        return [int(line.split(" ", 1)[0]) for line in self.lines if not line.startswith("#")]

    def wait_until(self, predicate: Any, what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not predicate():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"follow.py never {what}: {self.lines} {self.errors}")
            time.sleep(0.05)


@contextlib.contextmanager
def following(dirs: DaemonDirs, *args: str) -> Iterator[Follower]:
    proc = subprocess.Popen(
        [sys.executable, str(FOLLOW), *args],
        env=dirs.env(),  # MIMIR_RUNTIME_DIR: it finds the socket as documented
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    try:
        yield Follower(proc)
    finally:
        proc.kill()
        proc.wait(10)


def _journal(dirs: DaemonDirs, session_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = rpc(dirs, "session.events", {"session": session_id})["events"]
    return events


@pytest.mark.slow
def test_the_example_client_follows_answers_and_resumes_after_a_daemon_restart(
    dirs: DaemonDirs,
) -> None:
    text = {"type": "text", "text": HOSTILE}
    hostile = {"do": "update", "update": {"sessionUpdate": "agent_message_chunk", "content": text}}
    scenario = {
        "prompts": [[{"do": "chunks", "count": 2, "text": "before"}, PERMISSION, hostile]],
    }
    write_config(dirs, scenario)
    repo = make_repo(dirs.root / "repo")
    first = start_daemon_process(dirs)
    try:
        project = rpc(dirs, "project.add", {"path": str(repo), "name": "demo"})
        session_id = rpc(dirs, "session.create", {"project": project["id"], "title": "t"})["id"]
        with following(dirs, session_id, "--allow") as follower:
            follower.wait_until(lambda: follower.seqs(), "printed the session's first events")
            # The turn waits on the permission request until follow.py answers it.
            result = rpc(dirs, "session.prompt", {"session": session_id, "text": "go"})
            assert result["stop_reason"] == "end_turn"
            first.terminate()
            follower.wait_until(
                lambda: any("reconnecting" in line for line in follower.errors),
                "noticed that the daemon stopped",
            )
            # A new agent process counts its prompts from the first again.
            write_config(dirs, {"prompts": [[{"do": "chunks", "count": 2, "text": "after"}]]})
            with daemon_process(dirs):
                result = rpc(dirs, "session.prompt", {"session": session_id, "text": "again"})
                assert result["stop_reason"] == "end_turn"
                journal = _journal(dirs, session_id)
                follower.wait_until(
                    lambda: journal[-1]["seq"] in follower.seqs(), "caught up after the restart"
                )
    finally:
        first.kill()
    # Every event once, in order (seq is gapless); the stopping daemon may have journaled
    # (and sent) a few more after the journal was read.
    seqs = follower.seqs()
    assert seqs == list(range(1, len(seqs) + 1))
    assert seqs[: len(journal)] == [e["seq"] for e in journal]
    printed = "\n".join(follower.lines)
    assert "agent: before0before1" in printed
    assert "agent: after0after1" in printed
    answered = next(e["data"] for e in journal if e["kind"] == "permission_answered")
    assert answered["by"] == f"client pid {follower.proc.pid}"
    assert answered["option_id"] == "yes"
    # The agent's escape sequences and bidi override were shown, not played.
    assert "\x1b" not in printed
    assert "\u202e" not in printed
    assert "look\\u001b[2J\\u001b]0;owned\\u0007 here\\u202eevil" in printed


def test_the_example_client_stays_under_120_lines_of_standard_library_python() -> None:
    source = FOLLOW.read_text(encoding="utf-8")
    assert len(source.splitlines()) < 120
    imported = {
        line.split()[1].split(".")[0]
        for line in source.splitlines()
        if line.startswith(("import ", "from "))
    }
    assert imported <= set(sys.stdlib_module_names)


def test_the_example_client_says_so_and_exits_for_an_unknown_session(dirs: DaemonDirs) -> None:
    with daemon_process(dirs):
        done = subprocess.run(
            [sys.executable, str(FOLLOW), "nosuchsession"],
            env=dirs.env(),
            capture_output=True,
            text=True,
            timeout=WAIT_S,
            check=False,
        )
    assert done.returncode == 1
    assert "subscribe: no session" in done.stderr, done.stderr
