"""Claude Code's ACP adapter (claude-agent-acp, the second real agent of the agents
tier) under the real daemon, driven through mimirctl, with the fake LLM speaking
Anthropic Messages: a text turn, and a turn in which the agent asks permission to
write a file in the session's worktree and the session's tool policy answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.real_agents.claude_env import ClaudeHome, claude_config_section, make_claude_home
from tests.support.fake_llm import FakeLlm, Text, ToolCall
from tests.support.helpers import DaemonDirs, daemon_process, make_repo, run_mimirctl

pytestmark = [pytest.mark.agents, pytest.mark.timeout(240)]


def _config(dirs: DaemonDirs, claude_bin: Path, home: ClaudeHome) -> None:
    dirs.root.mkdir(parents=True, exist_ok=True)
    dirs.config.write_text(
        '[defaults]\nagent = "claude"\n\n' + claude_config_section(claude_bin, home)
    )


def _ctl(dirs: DaemonDirs, *args: str) -> str:
    done = run_mimirctl(dirs, *args, timeout=120)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def _events(dirs: DaemonDirs, session_id: str, kind: str) -> list[dict[str, Any]]:
    lines = _ctl(dirs, "log", session_id, "--json").splitlines()
    return [e["data"] for e in map(json.loads, lines) if e["kind"] == kind]


def _write_call(target: Path, content: str) -> ToolCall:
    """Claude Code's own ``Write`` tool, as the model would call it."""
    return ToolCall("Write", {"file_path": str(target), "content": content}, call_id="toolu_w1")


def _tool_results(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        block
        for message in request["messages"]
        if message["role"] == "user" and isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]


def test_claude_turns_through_mimirctl_with_an_edit_allowed_by_policy(
    dirs: DaemonDirs, claude_bin: Path, fake_llm: FakeLlm, claude_home: ClaudeHome
) -> None:
    _config(dirs, claude_bin, claude_home)
    repo = make_repo(dirs.root / "repo")
    policy = json.dumps({"tool_policy": {"edit": {"allow": ["notes/**"]}}})
    with daemon_process(dirs) as daemon:
        daemon.wait_ready()
        _ctl(dirs, "project", "add", str(repo), "--name", "demo")
        session = json.loads(
            _ctl(dirs, "session", "new", "demo", "--title", "claude", "--config", policy, "--json")
        )
        session_id = session["id"]
        assert session["agent"] == "claude"
        worktree = Path(session["workspace"]["path"])

        # A text turn.
        fake_llm.script(Text("Hello from the fake model, streamed in pieces.", chunks=5))
        out = _ctl(dirs, "prompt", session_id, "say hello")
        assert "Hello from the fake model, streamed in pieces." in out
        assert "[turn ended: end_turn]" in out
        shown = json.loads(_ctl(dirs, "session", "show", session_id, "--json"))
        assert shown["status"] == "idle"
        assert shown["agent_state"]["capabilities"]["loadSession"] is True
        assert shown["usage"]["input_tokens"] > 0
        [first] = fake_llm.main_requests()
        assert first["stream"] is True
        assert "say hello" in json.dumps(first["messages"])

        # A turn in which Claude Code asks to write a file; the policy allows it.
        target = worktree / "notes" / "hello.txt"
        fake_llm.script(_write_call(target, "written by claude\n"), Text("The file is written."))
        out = _ctl(dirs, "prompt", session_id, "write the file")
        assert "The file is written." in out
        assert "[turn ended: end_turn; 1 file +1 -0]" in out
        assert target.read_text() == "written by claude\n"
        [requested] = _events(dirs, session_id, "permission_requested")
        assert "notes/hello.txt" in json.dumps(requested)
        [decided] = _events(dirs, session_id, "permission_decided")
        assert decided["decision"] == "allow"
        assert decided["rule"] == {
            "layer": "session",
            "key": "tool_policy.edit",
            "pattern": "notes/**",
        }
        assert _events(dirs, session_id, "permission_answered") == []
        # The tool's result went back to the model under the tool call's id.
        _, asked, after = fake_llm.main_requests()
        assert _tool_results(asked) == []
        assert [r["tool_use_id"] for r in _tool_results(after)] == ["toolu_w1"]
        # Every call went to the Messages endpoint: nothing else was asked of the server.
        assert {call.split("?")[0] for call in fake_llm.calls} == {"POST /v1/messages"}

        assert "stopped" in _ctl(dirs, "stop", session_id)


def test_claude_edit_denied_by_policy_writes_nothing(
    dirs: DaemonDirs, claude_bin: Path, fake_llm: FakeLlm, claude_home: ClaudeHome
) -> None:
    _config(dirs, claude_bin, claude_home)
    repo = make_repo(dirs.root / "repo")
    policy = json.dumps({"tool_policy": {"edit": "deny"}})
    with daemon_process(dirs) as daemon:
        daemon.wait_ready()
        _ctl(dirs, "project", "add", str(repo), "--name", "demo")
        session = json.loads(_ctl(dirs, "session", "new", "demo", "--config", policy, "--json"))
        target = Path(session["workspace"]["path"]) / "notes" / "hello.txt"
        fake_llm.script(_write_call(target, "must not land\n"), Text("I was not allowed."))
        out = _ctl(dirs, "prompt", session["id"], "write the file")
        assert "I was not allowed." in out
        assert "[turn ended: end_turn]" in out
        assert not target.parent.exists()
        [decided] = _events(dirs, session["id"], "permission_decided")
        assert (decided["decision"], decided["outcome"]) == ("deny", "selected")
        # Claude Code told the model that the write was refused.
        _, after = fake_llm.main_requests()
        [result] = _tool_results(after)
        assert result["tool_use_id"] == "toolu_w1"
        assert result.get("is_error") is True, result


def test_claude_preset_makes_it_ask_unless_the_session_sets_auto(
    dirs: DaemonDirs, claude_bin: Path, fake_llm: FakeLlm, tmp_path: Path
) -> None:
    """Without settings Claude Code starts in ``auto`` mode, where it writes without
    asking anyone; the ``claude`` preset's default mode (set by Mimir right after it
    starts, when no config layer sets ``mode``) puts it in ``default`` mode, and the
    write goes through the session's policy. A session's ``mode`` wins: ``auto``."""
    home = make_claude_home(tmp_path / "bare", fake_llm.anthropic_base_url, settings=False)
    _config(dirs, claude_bin, home)
    repo = make_repo(dirs.root / "repo")
    policy = json.dumps({"tool_policy": {"edit": "deny"}})
    with daemon_process(dirs) as daemon:
        daemon.wait_ready()
        _ctl(dirs, "project", "add", str(repo), "--name", "demo")
        args = ("session", "new", "demo", "--config", policy, "--json")
        asking = json.loads(_ctl(dirs, *args))
        auto = json.loads(_ctl(dirs, *args, "--mode", "auto"))
        written = {}
        for session in (auto, asking):
            target = Path(session["workspace"]["path"]) / "notes" / "hello.txt"
            fake_llm.script(_write_call(target, "written\n"), Text("Turn over."))
            out = _ctl(dirs, "prompt", session["id"], "write the file")
            assert "[turn ended: end_turn" in out
            written[session["id"]] = target.exists()
            state = json.loads(_ctl(dirs, "session", "show", session["id"], "--json"))
            options = {o["id"]: o for o in state["agent_state"]["config_options"]}
            assert options["mode"]["currentValue"] == ("auto" if session is auto else "default")
        # In auto mode the policy was never asked, and its deny did not hold.
        assert written == {auto["id"]: True, asking["id"]: False}
        assert _events(dirs, auto["id"], "permission_requested") == []
        [changed] = _events(dirs, asking["id"], "mode_changed")
        assert (changed["mode"], changed["by"], changed["previous"]) == (
            "default",
            "config",
            "auto",
        )
        [decided] = _events(dirs, asking["id"], "permission_decided")
        assert decided["decision"] == "deny"
