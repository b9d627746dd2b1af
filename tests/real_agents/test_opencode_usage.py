"""Real opencode under the real daemon: the usage the fake LLM reports reaches
``session.get`` (summed), the turn's ``turn_ended`` and ``mimirctl status``; a
token budget below it stops the session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.real_agents.opencode_env import OpencodeHome
from tests.real_agents.test_opencode_mimirctl import _config, _ctl
from tests.support.fake_llm import FakeLlm, Text
from tests.support.helpers import DaemonDirs, daemon_process, make_repo, run_mimirctl

pytestmark = pytest.mark.agents


def test_opencode_usage_reaches_session_get_and_a_budget_stops_the_session(
    dirs: DaemonDirs, opencode_bin: Path, fake_llm: FakeLlm, opencode_home: OpencodeHome
) -> None:
    _config(dirs, opencode_bin, opencode_home)
    repo = make_repo(dirs.root / "repo")
    with daemon_process(dirs) as daemon:
        daemon.wait_ready()
        _ctl(dirs, "project", "add", str(repo), "--name", "demo")
        session = json.loads(_ctl(dirs, "session", "new", "demo", "--title", "usage", "--json"))
        session_id = session["id"]
        fake_llm.script(Text("Counted.", chunks=2))
        _ctl(dirs, "prompt", session_id, "say something")
        shown = json.loads(_ctl(dirs, "session", "show", session_id, "--json"))
        events = [json.loads(line) for line in _ctl(dirs, "log", session_id, "--json").splitlines()]
        (ended,) = [e["data"] for e in events if e["kind"] == "turn_ended"]
        used = shown["usage"]
        assert ended["usage"] == used
        assert used["turns"] == 1
        assert used["input_tokens"] > 0
        assert used["output_tokens"] > 0
        assert used["total_tokens"] == used["input_tokens"] + used["output_tokens"]
        status = json.loads(_ctl(dirs, "status", "--json"))
        assert status["usage_today"]["total_tokens"] == used["total_tokens"]

        # A budget below one turn's usage: the session stops at it.
        limited = json.loads(
            _ctl(dirs, "session", "new", "demo", "--config", '{"token_budget": 100}', "--json")
        )
        fake_llm.script(Text("Too much.", chunks=2))
        run_mimirctl(dirs, "prompt", limited["id"], "say more", timeout=120)
        shown = json.loads(_ctl(dirs, "session", "show", limited["id"], "--json"))
        assert shown["status"] == "budget_exceeded"
        assert shown["usage"]["total_tokens"] >= 100
        refused = run_mimirctl(dirs, "prompt", limited["id"], "again", timeout=120)
        assert refused.returncode == 1
        assert "used of 100 tokens (set by the session config)" in refused.stderr
