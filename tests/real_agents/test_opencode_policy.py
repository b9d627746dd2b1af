"""Real opencode under the real daemon, its permission requests decided by the
session's tool policy: an edit policy that allows lets it write without anyone
answering; ``edit = "deny"`` makes it report the refusal, and nothing is written;
the opencode preset makes it ask even when its own config would not."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.real_agents.opencode_env import OpencodeHome, make_opencode_home
from tests.support.agents import Client, event_data
from tests.support.fake_llm import FakeLlm, Text, ToolCall
from tests.support.helpers import DaemonDirs, in_process_daemon, make_repo

pytestmark = [pytest.mark.agents, pytest.mark.timeout(240)]

DEADLINE_S = 180.0


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


@asynccontextmanager
async def _opencode_session(
    dirs: DaemonDirs, opencode_bin: Path, home: OpencodeHome, tool_policy: dict[str, Any]
) -> AsyncIterator[tuple[Client, dict[str, Any]]]:
    """A daemon whose session (under ``tool_policy``) runs opencode in a worktree:
    (the client, the session). The session is stopped at the end."""
    _config(dirs, opencode_bin, home)
    repo = make_repo(dirs.root / "repo")
    async with in_process_daemon(dirs) as daemon, Client.connect(daemon.socket) as c:
        await c.call("project.add", {"path": str(repo), "name": "demo"})
        session = await c.call(
            "session.create",
            {"project": "demo", "title": "policy", "config": {"tool_policy": tool_policy}},
        )
        try:
            yield c, session
        finally:
            await c.call("session.stop", {"session": session["id"]})


async def _write_turn(
    dirs: DaemonDirs,
    opencode_bin: Path,
    home: OpencodeHome,
    fake_llm: FakeLlm,
    tool_policy: dict[str, Any],
) -> tuple[Path, dict[str, list[dict[str, Any]]], str]:
    """One turn in which opencode wants to write notes/hello.txt, under ``tool_policy``
    and with no client answering anything: (the target, the permission events, the
    agent's text)."""
    with trio.fail_after(DEADLINE_S):
        async with _opencode_session(dirs, opencode_bin, home, tool_policy) as (c, session):
            target = Path(session["workspace"]["path"]) / "notes" / "hello.txt"
            fake_llm.script(
                ToolCall("write", {"filePath": str(target), "content": "written by opencode\n"}),
                Text("Done with the file."),
            )
            result = await c.call("session.prompt", {"session": session["id"], "text": "write"})
            assert result["stop_reason"] == "end_turn"
            found = {
                kind: await event_data(c, session["id"], kind)
                for kind in ("permission_requested", "permission_decided", "permission_answered")
            }
            messages = await event_data(c, session["id"], "message")
            found["update"] = await event_data(c, session["id"], "update")
            text = "".join(m["text"] for m in messages if m.get("role") == "agent")
    return target, found, text


async def test_an_edit_policy_that_allows_lets_opencode_write_without_asking(
    dirs: DaemonDirs, opencode_bin: Path, opencode_home: OpencodeHome, fake_llm: FakeLlm
) -> None:
    target, found, text = await _write_turn(
        dirs, opencode_bin, opencode_home, fake_llm, {"edit": {"allow": ["notes/**"]}}
    )
    assert target.read_text() == "written by opencode\n"
    [decided] = found["permission_decided"]
    assert decided["decision"] == "allow"
    assert decided["rule"] == {"layer": "session", "key": "tool_policy.edit", "pattern": "notes/**"}
    assert found["permission_answered"] == []
    assert text.endswith("Done with the file.")


async def test_edit_deny_makes_opencode_report_the_refusal_and_write_nothing(
    dirs: DaemonDirs, opencode_bin: Path, opencode_home: OpencodeHome, fake_llm: FakeLlm
) -> None:
    target, found, _text = await _write_turn(
        dirs, opencode_bin, opencode_home, fake_llm, {"edit": "deny"}
    )
    assert not target.exists()
    assert not target.parent.exists()
    [decided] = found["permission_decided"]
    assert (decided["decision"], decided["outcome"]) == ("deny", "selected")
    assert found["permission_answered"] == []
    # opencode told the model that the write was refused.
    # opencode reports the refusal on the tool call, and does not go on with the write.
    failed = [
        u["update"]
        for u in found["update"]
        if u["update"].get("sessionUpdate") == "tool_call_update"
        and u["update"].get("status") == "failed"
    ]
    assert len(failed) == 1
    assert "rejected permission" in json.dumps(failed[0].get("content"))
    assert len(fake_llm.main_requests()) == 1


async def test_opencode_asks_through_mimir_even_when_its_own_config_would_not(
    dirs: DaemonDirs, opencode_bin: Path, fake_llm: FakeLlm, tmp_path: Path
) -> None:
    """opencode's own default runs commands and edits without asking anyone; the
    opencode preset's OPENCODE_PERMISSION (kept under a config section's env) makes
    it ask, so that ``execute = "deny"`` stops its ``touch``."""
    home = make_opencode_home(tmp_path / "opencode-default", fake_llm.base_url, asks=False)
    assert "permission" not in json.loads(home.config.read_text())
    policy = {"execute": "deny"}
    with trio.fail_after(DEADLINE_S):
        async with _opencode_session(dirs, opencode_bin, home, policy) as (c, session):
            worktree = Path(session["workspace"]["path"])
            fake_llm.script(ToolCall("bash", {"command": "touch made-by-opencode.txt"}), Text("ok"))
            result = await c.call("session.prompt", {"session": session["id"], "text": "touch"})
            assert result["stop_reason"] == "end_turn"
            [decided] = await event_data(c, session["id"], "permission_decided")
    assert (decided["decision"], decided["rule"]["key"]) == ("deny", "tool_policy.execute")
    assert not (worktree / "made-by-opencode.txt").exists()
