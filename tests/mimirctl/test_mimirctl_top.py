"""``mimirctl top`` in a real terminal: tmux runs it against a real mimird whose
agents are the scripted fake agent; keys go in with ``send-keys``, the screen
comes back with ``capture-pane``."""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

import pytest

from tests.support.agents import write_config
from tests.support.helpers import DaemonDirs, daemon_process, make_repo, rpc, run_mimirctl

WAIT_S: Final = 20
TMUX: Final = shutil.which("tmux")
PERMISSION: Final = {
    "do": "request",
    "method": "session/request_permission",
    "params": {
        "sessionId": "sess-1",
        # An agent's title with a terminal escape and a bidi override: neither may
        # reach the screen raw (curses shows ESC as ^[ itself, not U+202E).
        "toolCall": {"toolCallId": "t1", "title": "Write a.txt \x1b[31mRED\u202e"},
        "options": [
            {"optionId": "yes", "name": "Allow once", "kind": "allow_once"},
            {"optionId": "no", "name": "Reject", "kind": "reject_once"},
        ],
    },
}

pytestmark = pytest.mark.skipif(
    TMUX is None, reason="tmux is not installed ('make system-deps' installs it)"
)


class Pane:
    """A tmux server of the test's own (its socket in the test's directory) with one
    120x40 window running ``command``."""

    def __init__(self, dirs: DaemonDirs, command: str) -> None:
        assert TMUX is not None
        self.base = [TMUX, "-S", str(dirs.root / "tmux.sock"), "-f", "/dev/null"]
        env = {**dirs.env(), "TERM": "xterm-256color"}
        # curses takes LINES and COLUMNS over the terminal's size (pytest-xdist's
        # workers have them set to 24x80); the window's size is the one meant.
        for name in ("TMUX", "LINES", "COLUMNS"):
            env.pop(name, None)
        self.tmux("new-session", "-d", "-x", "120", "-y", "40", command, env=env)

    def tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            [*self.base, *args], capture_output=True, text=True, timeout=WAIT_S, env=env
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", *keys)

    def wait(self, predicate: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if predicate(shown := self.screen()):
                return shown
            time.sleep(0.05)
        raise AssertionError(f"never showed {what}:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=WAIT_S)


@contextlib.contextmanager
def pane(dirs: DaemonDirs, command: str) -> Iterator[Pane]:
    opened = Pane(dirs, command)
    try:
        yield opened
    finally:
        opened.close()


def until(fetch: Callable[[], Any], predicate: Callable[[Any], bool], what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if predicate(found := fetch()):
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what} never happened: {found}")


def result(dirs: DaemonDirs, method: str, params: Any = None) -> Any:
    """The method's result (``rpc`` raises on an error)."""
    return rpc(dirs, method, params)


def top_command() -> str:
    """top, then what the terminal is left like (line discipline back to normal)."""
    top = shlex.join([sys.executable, "-m", "mimirctl", "top"])
    return (
        f"{top}; echo EXIT=$?; stty -a | tr ' ;' '\\n\\n' | grep -x -e '-*icanon' -e '-*echo'; "
        "sleep 600"
    )


def test_top_shows_sessions_live_answers_a_permission_and_quits_cleanly(
    dirs: DaemonDirs,
) -> None:
    write_config(dirs, {"prompts": [[{"do": "chunks", "count": 2, "text": "hi"}, PERMISSION]]})
    repo = make_repo(dirs.root / "repo")
    with daemon_process(dirs):
        project = result(dirs, "project.add", {"path": str(repo), "name": "demo"})
        alpha = result(dirs, "session.create", {"project": project["id"], "title": "alpha"})
        beta = result(dirs, "session.create", {"project": project["id"], "title": "beta"})
        with pane(dirs, top_command()) as screen:
            shown = screen.wait(lambda s: "alpha" in s and "beta" in s, "both sessions")
            assert "mimir top · 2 sessions · 0 in a turn" in shown
            # Newest first: beta, then alpha; both created, by the fake agent kind.
            rows = [line for line in shown.splitlines() if line.startswith("01")]
            assert [r.split()[-1] for r in rows] == ["beta", "alpha"]
            assert all(" created " in r and " fake " in r for r in rows)

            # A prompt sent elsewhere: top follows it from its subscription.
            with socket.socket(socket.AF_UNIX) as prompting:
                prompting.connect(str(dirs.socket))
                request = {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "session.prompt",
                    "params": {"session": alpha["id"], "text": "go"},
                }
                prompting.sendall(json.dumps(request).encode() + b"\n")
                shown = screen.wait(
                    lambda s: "awaiting_permission" in s and "1 permission waiting" in s,
                    "the permission request",
                )
                assert "\x1b" not in shown
                assert "\u202e" not in shown
                screen.keys("j")  # alpha
                screen.wait(
                    lambda s: "waiting: Write a.txt ^[[31mRED<U+202E> (p" in s, "the selection"
                )
                screen.keys("p")
                screen.wait(lambda s: "a: allow once" in s, "the question")
                screen.keys("a")
                until(
                    lambda: result(dirs, "permission.list")["permissions"],
                    lambda found: found == [],
                    "the answer",
                )
                answered = until(
                    lambda: result(
                        dirs,
                        "session.events",
                        {"session": alpha["id"], "kind": "permission_answered"},
                    )["events"],
                    bool,
                    "the answer journaled",
                )
                assert [e["data"]["option_id"] for e in answered] == ["yes"]
                screen.wait(lambda s: "0 permissions waiting" in s and " idle " in s, "idle")
            assert beta["id"][:10] in screen.screen()

            screen.keys("q")
            after = screen.wait(lambda s: "EXIT=" in s, "top's end").split("EXIT=")[1]
    assert after.split()[:3] == ["0", "icanon", "echo"], after


def test_top_cancels_the_selected_sessions_turn_with_c(dirs: DaemonDirs) -> None:
    turn = [{"do": "wait_cancel"}, {"do": "stop_reason", "value": "cancelled"}]
    write_config(dirs, {"prompts": [turn]})
    repo = make_repo(dirs.root / "repo")
    with daemon_process(dirs):
        project = result(dirs, "project.add", {"path": str(repo), "name": "demo"})
        alpha = result(dirs, "session.create", {"project": project["id"], "title": "alpha"})
        with pane(dirs, top_command()) as screen, socket.socket(socket.AF_UNIX) as prompting:
            screen.wait(lambda s: "alpha" in s, "the session")
            prompting.connect(str(dirs.socket))
            request = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "session.prompt",
                "params": {"session": alpha["id"], "text": "go"},
            }
            prompting.sendall(json.dumps(request).encode() + b"\n")
            screen.wait(lambda s: " running " in s and "1 in a turn" in s, "the turn")
            screen.keys("c")
            screen.wait(lambda s: " idle " in s and "0 in a turn" in s, "the turn's end")
            ended = result(dirs, "session.events", {"session": alpha["id"], "kind": "turn_ended"})
            assert [e["data"]["stop_reason"] for e in ended["events"]] == ["cancelled"]
            asked = result(
                dirs, "session.events", {"session": alpha["id"], "kind": "cancel_requested"}
            )
            assert len(asked["events"]) == 1
            # A smaller window: top redraws to its size, the keys' line at the bottom.
            screen.tmux("resize-window", "-x", "70", "-y", "12")
            shown = screen.wait(lambda s: s.splitlines()[-1].startswith("↑↓/jk"), "the redraw")
            assert len(shown.splitlines()) == 12
            assert max(len(line) for line in shown.splitlines()) <= 70
            assert "alpha" not in shown  # the title column is past the 70th
            screen.keys("q")
            screen.wait(lambda s: "EXIT=0" in s, "top's end")


def test_top_without_a_terminal_says_it_needs_one(dirs: DaemonDirs) -> None:
    dirs.config.write_text("")
    with daemon_process(dirs):
        done = run_mimirctl(dirs, "top")
    assert done.returncode == 2
    assert "top needs a terminal" in done.stderr


def test_help_lists_top_without_importing_curses() -> None:
    probe = (
        "import sys\nfrom mimirctl.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('curses' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=True
    )
    assert " top " in done.stdout
    assert done.stdout.splitlines()[-1] == "False"


def test_top_groups_a_runs_members_under_it(dirs: DaemonDirs) -> None:
    write_config(dirs, {})
    repo = make_repo(dirs.root / "repo")
    with daemon_process(dirs):
        project = result(dirs, "project.add", {"path": str(repo), "name": "demo"})
        result(dirs, "session.create", {"project": project["id"], "title": "alone"})
        run = result(
            dirs,
            "run.create",
            {"project": project["id"], "task": "do it", "title": "race", "agent": "fake", "n": 2},
        )
        until(
            lambda: result(dirs, "run.get", {"run": run["id"]}),
            lambda found: found["status"] == "deciding",
            "the run waiting for a pick",
        )
        with pane(dirs, top_command()) as screen:
            shown = screen.wait(lambda s: "alone" in s and "race" in s, "the run and the session")
            lines = [line for line in shown.splitlines()[2:] if line.strip()][:4]
            assert lines[0].startswith(f"run {run['id'][:10]}  competition · deciding  race")
            members = [m["session_id"][:10] for m in run["members"]]
            assert [line.split()[:2] for line in lines[1:3]] == [["└", m] for m in members]
            assert lines[3].split()[-1] == "alone"
            # Picked elsewhere: the run's line follows its members' moves.
            result(dirs, "run.pick", {"run": run["id"], "slot": 1})
            final = until(
                lambda: result(dirs, "run.get", {"run": run["id"]}),
                lambda found: found["status"] == "completed",
                "the run completed",
            )
            assert final["winner"] == 1
            screen.wait(lambda s: "competition · completed  race" in s, "the run's new status")
            screen.keys("q")
            screen.wait(lambda s: "EXIT=0" in s, "top's end")
