"""Real opencode under the real daemon, driven only through mimirctl: a text
turn, and a turn in which opencode asks permission and writes a file into the
session's worktree."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.real_agents.opencode_env import OpencodeHome
from tests.support.fake_llm import FakeLlm, Text, ToolCall
from tests.support.helpers import DaemonDirs, daemon_process, make_repo, run_mimirctl

pytestmark = pytest.mark.agents


def _config(dirs: DaemonDirs, opencode_bin: Path, home: OpencodeHome) -> None:
    env = ", ".join(f"{k} = {json.dumps(v)}" for k, v in home.layered_env().items())
    dirs.root.mkdir(parents=True, exist_ok=True)
    dirs.config.write_text(
        "[defaults]\n"
        'agent = "opencode"\n\n'
        "[agents.opencode]\n"
        f"command = {json.dumps(str(opencode_bin))}\n"
        'args = ["acp"]\n'
        f"env = {{ {env} }}\n"
    )


def _ctl(dirs: DaemonDirs, *args: str) -> str:
    done = run_mimirctl(dirs, *args, timeout=120)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def test_opencode_turns_through_mimirctl(
    dirs: DaemonDirs, opencode_bin: Path, fake_llm: FakeLlm, opencode_home: OpencodeHome
) -> None:
    _config(dirs, opencode_bin, opencode_home)
    repo = make_repo(dirs.root / "repo")
    with daemon_process(dirs) as daemon:
        daemon.wait_ready()
        _ctl(dirs, "project", "add", str(repo), "--name", "demo")
        session = json.loads(_ctl(dirs, "session", "new", "demo", "--title", "real", "--json"))
        session_id = session["id"]
        worktree = Path(session["workspace"]["path"])

        # A text turn.
        fake_llm.script(Text("Hello from the fake model, streamed in pieces.", chunks=5))
        out = _ctl(dirs, "prompt", session_id, "say hello")
        assert "Hello from the fake model, streamed in pieces." in out
        assert "[turn ended: end_turn]" in out
        shown = json.loads(_ctl(dirs, "session", "show", session_id, "--json"))
        assert shown["status"] == "idle"
        assert shown["agent_state"]["capabilities"]["loadSession"] is True

        # A turn in which opencode asks permission to write a file.
        target = worktree / "notes" / "hello.txt"
        fake_llm.script(
            ToolCall("write", {"filePath": str(target), "content": "written by opencode\n"}),
            Text("The file is written."),
        )
        prompt = subprocess.Popen(
            [sys.executable, "-m", "mimirctl", "prompt", session_id, "write the file"],
            env=dirs.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 90
            pending: list[dict[str, object]] = []
            while not pending:
                assert time.monotonic() < deadline, "no permission request arrived"
                assert prompt.poll() is None, prompt.communicate()
                pending = json.loads(_ctl(dirs, "permission", "ls", "--json"))["permissions"]
                time.sleep(0.2)
            assert pending[0]["session_id"] == session_id
            _ctl(dirs, "permission", "allow", str(pending[0]["id"]))
            out, err = prompt.communicate(timeout=120)
        finally:
            prompt.kill()
        assert prompt.returncode == 0, (out, err)
        assert "The file is written." in out
        # The file opencode wrote, on the turn's line (whoever wrote it: the diff tells).
        assert "[turn ended: end_turn; 1 file +1 -0]" in out
        assert target.read_text() == "written by opencode\n"
        log = _ctl(dirs, "log", session_id)
        assert "permission" in log

        stopped = _ctl(dirs, "stop", session_id)
        assert "stopped" in stopped
