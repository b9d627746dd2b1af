"""A run in which two real agents compete: opencode and Claude Code (claude-agent-acp)
are given one task under the real daemon, each in its own worktree, each against a
fake LLM of its own wire format; the project's check passes for one member's change
and fails for the other's, ``judge: "checks"`` decides for the one that passed, and
its branch is merged into the project's checked-out branch."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Final

import pytest

from tests.real_agents.claude_env import claude_config_section, make_claude_home
from tests.real_agents.opencode_env import OpencodeHome
from tests.support.fake_llm import FakeLlm, Text, ToolCall, serve_fake_llm
from tests.support.helpers import DaemonDirs, daemon_process, git, make_repo, rpc, run_mimirctl

pytestmark = [pytest.mark.agents, pytest.mark.timeout(300)]

DEADLINE_S: Final = 240.0
#: A run in one of these has nothing more to do on its own.
SETTLED: Final = frozenset({"decided", "deciding", "completed", "failed", "cancelled"})
#: Passes for "good", fails for anything else.
CHECK: Final = "grep -qx good result.txt"


def _config(dirs: DaemonDirs, opencode_bin: Path, opencode: OpencodeHome, claude: str) -> None:
    env = ", ".join(f"{k} = {json.dumps(v)}" for k, v in opencode.layered_env().items())
    dirs.root.mkdir(parents=True, exist_ok=True)
    dirs.config.write_text(
        "[agents.opencode]\n"
        f"command = {json.dumps(str(opencode_bin))}\n"
        'args = ["acp"]\n'
        f"env = {{ {env} }}\n\n" + claude
    )


def _settled(dirs: DaemonDirs, run_id: str) -> dict[str, Any]:
    """``run.get`` once the run has nothing more to do on its own."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        run: dict[str, Any] = rpc(dirs, "run.get", {"run": run_id})
        if run["status"] in SETTLED:
            return run
        assert time.monotonic() < deadline, f"the run did not settle: {json.dumps(run)}"
        time.sleep(0.5)


def test_opencode_and_claude_compete_and_the_checks_pick_the_member_whose_check_passed(
    dirs: DaemonDirs,
    opencode_bin: Path,
    claude_bin: Path,
    fake_llm: FakeLlm,
    opencode_home: OpencodeHome,
    tmp_path: Path,
) -> None:
    # Each agent has a fake LLM of its own, so that each one's script is its own
    # whatever order their calls come in. Paths are relative: each agent resolves
    # them in its own worktree, which is made only by run.create.
    fake_llm.script(
        ToolCall("write", {"filePath": "result.txt", "content": "bad\n"}, call_id="call_o1"),
        Text("opencode wrote its answer."),
    )
    with serve_fake_llm() as claude_llm:
        claude_llm.script(
            ToolCall("Write", {"file_path": "result.txt", "content": "good\n"}, call_id="toolu_c1"),
            Text("Claude wrote its answer."),
        )
        claude_home = make_claude_home(tmp_path / "claude", claude_llm.anthropic_base_url)
        _config(dirs, opencode_bin, opencode_home, claude_config_section(claude_bin, claude_home))
        repo = make_repo(dirs.root / "repo")
        with daemon_process(dirs) as daemon:
            daemon.wait_ready()
            rpc(dirs, "project.add", {"path": str(repo), "name": "demo"})
            created = rpc(
                dirs,
                "run.create",
                {
                    "project": "demo",
                    "task": "Write your answer to result.txt.",
                    "mode": "competition",
                    "agents": ["opencode", "claude"],
                    "check_command": CHECK,
                    "judge": "checks",
                    "preserve_worktrees": True,
                    "config": {"tool_policy": {"edit": "allow"}},
                },
                timeout=120,
            )
            run = _settled(dirs, created["id"])
            shown = run_mimirctl(dirs, "run", "show", created["id"], timeout=60)
            workspaces = {
                m["slot"]: Path(
                    rpc(dirs, "session.get", {"session": m["session_id"]})["workspace"]["path"]
                )
                for m in run["members"]
            }

    members = {m["agent"]: m for m in run["members"]}
    assert sorted(members) == ["claude", "opencode"], run["members"]
    opencode, claude = members["opencode"], members["claude"]
    # Each agent wrote its own answer in its own worktree.
    assert (workspaces[opencode["slot"]] / "result.txt").read_text() == "bad\n"
    assert (workspaces[claude["slot"]] / "result.txt").read_text() == "good\n"
    for member in (opencode, claude):
        assert member["outcome"] == "finished", member
        assert member["stop_reason"] == "end_turn", member
        assert (member["files_changed"], member["lines_added"], member["lines_deleted"]) == (
            1,
            1,
            0,
        ), member
        assert member["usage"]["total_tokens"] > 0, member
    # The check ran in each worktree: it failed for opencode's change, passed for Claude's.
    assert opencode["check"]["exit_code"] == 1, opencode
    assert opencode["check"]["passed"] is False
    assert claude["check"]["exit_code"] == 0, claude
    assert claude["check"]["passed"] is True
    # And the checks decided, and the winner's work was brought home.
    assert run["status"] == "completed", run
    assert run["winner"] == claude["slot"]
    assert run["decision"]["winner"] == claude["slot"]
    assert run["decision"]["by"] == "checks"
    assert run["totals"]["total_files_changed"] == 2
    assert run["totals"]["total_lines_added"] == 2
    assert (repo / "result.txt").read_text() == "good\n"
    assert git(repo, "status", "--porcelain") == ""
    assert shown.returncode == 0, shown.stderr
    assert "claude" in shown.stdout
    assert "opencode" in shown.stdout
    # Both agents' tool results went back to their models under their call ids.
    assert "call_o1" in json.dumps(fake_llm.main_requests()[-1]["messages"])
    assert "toolu_c1" in json.dumps(claude_llm.main_requests()[-1]["messages"])
