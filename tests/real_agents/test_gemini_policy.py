"""Real Gemini CLI (``gemini --acp``) under the real daemon, its permission requests
decided by the session's tool policy, with the fake LLM speaking the Gemini API and
making Gemini CLI call its shell tool, ``run_shell_command``.

Gemini CLI asks before a command it does not consider safe, and its request names
no command (no ``rawInput``): the command is only the tool call's ``title``. The
execute rule's deny prefixes are checked on that title, which can only deny more;
with nothing to check them on, a rule with deny prefixes never allows the call
(it asks instead)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import pytest
import trio

from tests.real_agents.gemini_env import GeminiHome, gemini_config_section
from tests.real_agents.policy_session import asked, policy_session
from tests.support.agents import Client, event_data
from tests.support.fake_llm import FakeLlm, Text, ToolCall
from tests.support.helpers import DaemonDirs

pytestmark = [pytest.mark.agents, pytest.mark.timeout(120)]

#: Gemini CLI starts in ~2.5 s and a turn takes a second; the bound is for a slow
#: shared machine.
DEADLINE_S: Final = 90.0
FILES: Final = {"README.md": "# Demo\nA repository for gemini.\n", "docs/a.md": "Notes.\n"}
#: Run anything but what starts with ``rm``.
POLICY: Final = {"execute": {"default": "allow", "deny": ["rm"]}}


def _shell(command: str) -> ToolCall:
    """Gemini CLI's shell tool, as the model would call it."""
    return ToolCall("run_shell_command", {"command": command})


def _function_responses(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``functionResponse`` parts of a Gemini API request's contents."""
    return [
        part["functionResponse"]
        for content in request.get("contents", [])
        for part in content.get("parts", [])
        if isinstance(part, dict) and "functionResponse" in part
    ]


@asynccontextmanager
async def _gemini_session(
    dirs: DaemonDirs, gemini_bin: Path, home: GeminiHome, tool_policy: dict[str, Any]
) -> AsyncIterator[tuple[Client, str, Path]]:
    """The session of :func:`~tests.real_agents.policy_session.policy_session`,
    running gemini in a repository holding :data:`FILES`."""
    section = gemini_config_section(gemini_bin, home)
    async with policy_session(dirs, "gemini", section, FILES, tool_policy) as found:
        yield found


async def test_a_deny_prefix_found_in_the_title_denies_a_command_at_once(
    dirs: DaemonDirs, gemini_bin: Path, gemini_home: GeminiHome, fake_llm: FakeLlm
) -> None:
    fake_llm.script(_shell("cat README.md && rm -rf docs"), Text("Could not."))
    with trio.fail_after(DEADLINE_S):
        async with _gemini_session(dirs, gemini_bin, gemini_home, POLICY) as (
            c,
            session_id,
            worktree,
        ):
            # Nobody answers: the policy must decide, or the turn would wait for ever.
            result = await c.call("session.prompt", {"session": session_id, "text": "tidy"})
            assert result["stop_reason"] == "end_turn"
            [requested] = await event_data(c, session_id, "permission_requested")
            tool_call = requested["tool_call"]
            assert tool_call["kind"] == "execute"
            assert "rawInput" not in tool_call
            assert "rm -rf docs" in tool_call["title"]
            [decided] = await event_data(c, session_id, "permission_decided")
            assert decided["decision"] == "deny"
            assert decided["rule"] == {
                "layer": "session",
                "key": "tool_policy.execute",
                "pattern": "rm",
            }
            assert decided["reason"] == "matched in the tool call's title"
            assert await event_data(c, session_id, "permission_answered") == []
            assert (worktree / "docs" / "a.md").read_text() == FILES["docs/a.md"]
    first, second = fake_llm.main_requests()
    declared = [f["name"] for tool in first["tools"] for f in tool.get("functionDeclarations", [])]
    assert "run_shell_command" in declared
    [response] = _function_responses(second)
    assert response["name"] == "run_shell_command"


async def test_a_command_it_cannot_read_is_not_allowed_past_deny_prefixes(
    dirs: DaemonDirs, gemini_bin: Path, gemini_home: GeminiHome, fake_llm: FakeLlm
) -> None:
    fake_llm.script(_shell("touch made-by-gemini.txt"), Text("Did not make it."))
    with trio.fail_after(DEADLINE_S):
        async with _gemini_session(dirs, gemini_bin, gemini_home, POLICY) as (
            c,
            session_id,
            worktree,
        ):
            async with asked(c, session_id, "make it") as (pending, requested, result):
                assert pending["tool_call"]["kind"] == "execute"
                assert "rawInput" not in pending["tool_call"]
                policy = requested["policy"]
                assert policy["decision"] == "ask"
                assert "deny prefixes cannot be checked" in policy["reason"]
                assert await event_data(c, session_id, "permission_decided") == []
                await c.call(
                    "permission.respond", {"permission": pending["id"], "kind": "reject_once"}
                )

            assert result["stop_reason"] == "end_turn"
            [answered] = await event_data(c, session_id, "permission_answered")
            assert answered["option_id"] == "cancel"
            assert (await c.call("permission.list", {"session": session_id}))["permissions"] == []
            assert not (worktree / "made-by-gemini.txt").exists()
    # The model heard that the user refused, and answered in the next call.
    [response] = _function_responses(fake_llm.main_requests()[-1])
    assert response["name"] == "run_shell_command"
    assert "canceled by the user" in response["response"]["error"]
