"""Real codex-acp (Codex's ACP adapter) under the real daemon, its permission
requests decided by the session's tool policy, with the fake LLM speaking OpenAI
Responses and making codex call its shell tool, ``exec_command``.

codex-acp sends every command as ``["/bin/bash", "-lc", "<line>"]`` with a kind
guessed from the line: ``find . -name '*.md' -delete`` comes as a ``search``, which
``search = "allow"`` must not allow (the execute rule decides a call that runs a
command); ``touch`` comes as an ``execute`` that an allow prefix matches through
the shell wrapper."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.real_agents.codex_env import CodexHome, codex_config_section, make_codex_home
from tests.real_agents.policy_session import asked, policy_session
from tests.support.agents import Client, event_data
from tests.support.fake_llm import FakeLlm, Text, ToolCall
from tests.support.helpers import DaemonDirs

pytestmark = [pytest.mark.agents, pytest.mark.timeout(120)]

#: One turn takes a second or two; the bound is for a slow shared machine.
DEADLINE_S = 90.0
FILES = {"README.md": "# Demo\nA repository for codex.\n", "docs/a.md": "Notes.\n"}


def _exec(cmd: str) -> ToolCall:
    """codex's shell tool, as the model would call it."""
    return ToolCall("exec_command", {"cmd": cmd}, call_id="call_exec_1")


def _outputs(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``function_call_output`` items of a Responses request's input."""
    return [
        item
        for item in request.get("input", [])
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    ]


@asynccontextmanager
async def _codex_session(
    dirs: DaemonDirs,
    codex_bin: Path,
    home: CodexHome,
    tool_policy: dict[str, Any],
    args: tuple[str, ...] = (),
) -> AsyncIterator[tuple[Client, str, Path]]:
    """The session of :func:`~tests.real_agents.policy_session.policy_session`,
    running codex in a repository holding :data:`FILES`."""
    section = codex_config_section(codex_bin, home, args)
    async with policy_session(dirs, "codex", section, FILES, tool_policy) as found:
        yield found


async def test_a_search_that_deletes_is_decided_by_the_execute_rule_and_asked(
    dirs: DaemonDirs, codex_bin: Path, codex_home: CodexHome, fake_llm: FakeLlm
) -> None:
    fake_llm.script(_exec("find . -name '*.md' -delete"), Text("Deleted them."))
    with trio.fail_after(DEADLINE_S):
        async with _codex_session(dirs, codex_bin, codex_home, {"search": "allow"}) as (
            c,
            session_id,
            worktree,
        ):
            assert sorted(p.name for p in worktree.rglob("*.md")) == ["README.md", "a.md"]
            async with asked(c, session_id, "clean up") as (pending, requested, result):
                # The adapter says "search"; the policy reads the command it runs.
                assert pending["tool_call"]["kind"] == "search"
                assert pending["tool_call"]["rawInput"]["command"] == [
                    "/bin/bash",
                    "-lc",
                    "find . -name '*.md' -delete",
                ]
                policy = requested["policy"]
                assert policy["decision"] == "ask"
                assert policy["reason"].startswith(
                    "the search call runs a command, which the execute rule decides"
                )
                assert policy["rule"]["key"] == "tool_policy.execute"
                assert await event_data(c, session_id, "permission_decided") == []
                await c.call(
                    "permission.respond", {"permission": pending["id"], "kind": "reject_once"}
                )

            # codex's reject_once option ("abort") ends the whole turn.
            assert result["stop_reason"] == "cancelled"
            [answered] = await event_data(c, session_id, "permission_answered")
            assert answered["option_id"] == "abort"
            assert (await c.call("permission.list", {"session": session_id}))["permissions"] == []
            shown = await c.call("session.get", {"session": session_id})
            assert shown["status"] == "idle"
            for name in FILES:
                assert (worktree / name).read_text() == FILES[name]
    assert len(fake_llm.main_requests()) == 1


async def test_an_execute_allow_prefix_lets_codex_run_a_command_through_its_shell(
    dirs: DaemonDirs, codex_bin: Path, codex_home: CodexHome, fake_llm: FakeLlm
) -> None:
    fake_llm.script(_exec("touch made-by-codex.txt"), Text("Made the file."))
    policy = {"execute": {"allow": ["touch"]}}
    with trio.fail_after(DEADLINE_S):
        async with _codex_session(dirs, codex_bin, codex_home, policy) as (
            c,
            session_id,
            worktree,
        ):
            # Nobody answers: the policy must decide, or the turn would wait for ever.
            result = await c.call("session.prompt", {"session": session_id, "text": "make it"})
            assert result["stop_reason"] == "end_turn"
            [requested] = await event_data(c, session_id, "permission_requested")
            assert requested["tool_call"]["kind"] == "execute"
            assert requested["policy"]["decision"] == "allow"
            [decided] = await event_data(c, session_id, "permission_decided")
            assert decided["decision"] == "allow"
            assert decided["rule"] == {
                "layer": "session",
                "key": "tool_policy.execute",
                "pattern": "touch",
            }
            assert decided["option_id"] == "approved"  # codex's allow_once
            assert await event_data(c, session_id, "permission_answered") == []
            assert (worktree / "made-by-codex.txt").is_file()
            messages = await event_data(c, session_id, "message")
            text = "".join(m["text"] for m in messages if m.get("role") == "agent")
            assert text.endswith("Made the file.")
    first, second = fake_llm.main_requests()
    assert "exec_command" in [tool.get("name") for tool in first["tools"]]
    [output] = _outputs(second)
    assert output["call_id"] == "call_exec_1"


@pytest.mark.parametrize("override", [False, True])
async def test_by_its_own_default_codex_asks_nothing_for_a_command_unless_told_untrusted(
    dirs: DaemonDirs, codex_bin: Path, fake_llm: FakeLlm, tmp_path: Path, override: bool
) -> None:
    """With codex's own approval default (``on-request``, a read-only sandbox) its
    ``touch`` runs in the sandbox unasked, and fails there: the tool policy never
    sees it. ``-c approval_policy="untrusted"`` in the kind's ``args`` (as
    docs/security.md says) makes it ask, and ``execute = "deny"`` refuses it."""
    home = make_codex_home(tmp_path / "codex", fake_llm.base_url, untrusted=False)
    assert "approval_policy" not in home.config.read_text()
    args = ("-c", 'approval_policy="untrusted"') if override else ()
    fake_llm.script(_exec("touch made-by-codex.txt"), Text("Tried."))
    with trio.fail_after(DEADLINE_S):
        async with _codex_session(dirs, codex_bin, home, {"execute": "deny"}, args) as (
            c,
            session_id,
            worktree,
        ):
            result = await c.call("session.prompt", {"session": session_id, "text": "make it"})
            requested = await event_data(c, session_id, "permission_requested")
            decided = await event_data(c, session_id, "permission_decided")
    assert not (worktree / "made-by-codex.txt").exists()
    if not override:
        assert (result["stop_reason"], requested, decided) == ("end_turn", [], [])
    else:
        # codex's only reject option ("abort") ends the whole turn.
        assert result["stop_reason"] == "cancelled"
        assert [d["decision"] for d in decided] == ["deny"]
        assert requested[0]["tool_call"]["rawInput"]["command"][-1] == "touch made-by-codex.txt"
