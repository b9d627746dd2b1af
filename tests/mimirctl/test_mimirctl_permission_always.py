"""``mimirctl permission allow|deny ID --always [--project]``: the answer, and a
rule remembered in the session's (or project's) config that decides the next
identical request. Real daemon, real mimirctl process, the scripted fake agent."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import trio

from tests.support.agents import Client, agent_world, event_data, received
from tests.support.helpers import DaemonDirs

pytestmark = pytest.mark.timeout(60)

REQUEST: dict[str, Any] = {
    "do": "request",
    "method": "session/request_permission",
    "params": {
        "sessionId": "sess-1",
        "toolCall": {
            "toolCallId": "t1",
            "title": "Run pytest",
            "kind": "execute",
            "rawInput": {"command": "pytest -q tests"},
        },
        "options": [
            {"optionId": "yes", "name": "Allow once", "kind": "allow_once"},
            {"optionId": "always", "name": "Allow always", "kind": "allow_always"},
            {"optionId": "no", "name": "Reject", "kind": "reject_once"},
            {"optionId": "never", "name": "Reject always", "kind": "reject_always"},
        ],
    },
}


@pytest.mark.parametrize(
    ("args", "layer", "option", "decision"),
    [
        (("allow", "--always"), "session", "always", "allow"),
        (("deny", "--always", "--project"), "project", "never", "deny"),
        (("allow", "--project"), "project", "yes", "allow"),
    ],
)
async def test_permission_answer_always_remembers_a_rule_in_that_layer(
    dirs: DaemonDirs, args: tuple[str, ...], layer: str, option: str, decision: str
) -> None:
    async with (
        agent_world(dirs, {"prompts": [[REQUEST, REQUEST]]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        created = await c.call("session.create", {"project": world.project, "title": "t"})
        session_id = created["id"]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.call, "session.prompt", {"session": session_id, "text": "x"})
            listed = await c.until("permission.list", {}, lambda r: r["permissions"])
            pending = listed["permissions"][0]["id"]
            done = await trio.run_process(
                [sys.executable, "-m", "mimirctl", "permission", args[0], pending, *args[1:]],
                env=dirs.env(),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            out = done.stdout.decode()
            assert f"permission {pending}: {option}" in out
            assert f"remembered in the {layer}'s tool_policy" in out
        [decided] = await event_data(c, session_id, "permission_decided")
        assert decided["decision"] == decision
        assert decided["rule"] == {
            "layer": layer,
            "key": "tool_policy.execute",
            "pattern": "pytest -q tests",
        }
        answers = [
            m["result"]["outcome"] for m in received(world) if "outcome" in (m.get("result") or {})
        ]
        assert answers[0] == {"outcome": "selected", "optionId": option}
        assert answers[1]["outcome"] == "selected"
        explained = await c.call("session.config", {"session": session_id})
        [entry] = [e for e in explained["entries"] if e["key"] == "tool_policy.execute"]
        assert entry["source"] == layer
        assert entry["value"][decision] == ["pytest -q tests"]


async def test_prompt_shows_a_decided_request_with_its_rule_and_no_hint_to_answer_it(
    dirs: DaemonDirs,
) -> None:
    async with (
        agent_world(dirs, {"prompts": [[REQUEST]]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        config = {"tool_policy": {"execute": {"allow": ["pytest"]}}}
        created = await c.call(
            "session.create", {"project": world.project, "title": "t", "config": config}
        )
        done = await trio.run_process(
            [sys.executable, "-m", "mimirctl", "prompt", created["id"], "run the tests"],
            env=dirs.env(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        out = done.stdout.decode()
        assert "allow by policy (tool_policy.execute 'pytest' from session): selected yes" in out
        assert "answer: mimirctl permission allow" not in out
        assert "? permission" not in out  # no question: the policy answered it
