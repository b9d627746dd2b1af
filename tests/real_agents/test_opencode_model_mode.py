"""Real opencode under the real daemon: the configured mode set right after it
starts (opencode offers its model and mode as ACP config options), a mode changed
while it runs, a mode it does not offer refused with the list, and a prompt made
from a template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.real_agents.opencode_env import OpencodeHome
from tests.real_agents.test_opencode_mimirctl import _config, _ctl
from tests.support.fake_llm import FakeLlm, Text
from tests.support.helpers import DaemonDirs, daemon_process, make_repo, rpc, run_mimirctl

pytestmark = pytest.mark.agents


def _events(dirs: DaemonDirs, session_id: str, kind: str) -> list[dict[str, Any]]:
    found = rpc(dirs, "session.events", {"session": session_id, "kind": kind})["events"]
    return [event["data"] for event in found]


def test_opencode_mode_set_at_start_and_changed_while_it_runs(
    dirs: DaemonDirs, opencode_bin: Path, fake_llm: FakeLlm, opencode_home: OpencodeHome
) -> None:
    _config(dirs, opencode_bin, opencode_home)
    repo = make_repo(dirs.root / "repo")
    with daemon_process(dirs) as daemon:
        daemon.wait_ready()
        templates = json.dumps({"prompt_templates": {"hi": "Say hello to {who} on {branch}."}})
        _ctl(dirs, "project", "add", str(repo), "--name", "demo", "--config", templates)
        session = json.loads(
            _ctl(
                dirs,
                "session",
                "new",
                "demo",
                "--title",
                "modes",
                "--model",
                "fake/m",
                "--mode",
                "plan",
                "--json",
            )
        )
        session_id = session["id"]
        _ctl(dirs, "resume", session_id)
        state = rpc(dirs, "session.get", {"session": session_id})["agent_state"]
        options = {o["category"]: o for o in state["config_options"] if "category" in o}
        assert options["mode"]["currentValue"] == "plan"
        # Its one model (the fake LLM's) is current already: it is not set again.
        assert options["model"]["currentValue"] == "fake/m"
        assert _events(dirs, session_id, "model_changed") == []
        [changed] = _events(dirs, session_id, "mode_changed")
        assert (changed["mode"], changed["by"]) == ("plan", "config")
        assert changed["via"] == "session/set_config_option"
        assert _events(dirs, session_id, "setting_failed") == []

        out = _ctl(dirs, "session", "mode", session_id, "build")
        assert out == "mode set to build (the agent was told: session/set_config_option)\n"
        refused = run_mimirctl(dirs, "session", "mode", session_id, "no-such-mode", timeout=60)
        assert refused.returncode == 2
        assert "does not offer the mode 'no-such-mode'; it offers: " in refused.stderr
        assert "build" in refused.stderr.rsplit("it offers: ", 1)[1]

        fake_llm.script(Text("Hello, world."))
        out = _ctl(dirs, "prompt", session_id, "--template", "hi", "--var", "who=world")
        assert f"> Say hello to world on {session['workspace']['branch']}." in out
        assert "[turn ended: end_turn]" in out
        _ctl(dirs, "stop", session_id)
