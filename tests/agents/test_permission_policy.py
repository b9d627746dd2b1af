"""The tool policy decides permission requests of a real agent process (the
scripted fake ACP agent) under the real daemon: allow and deny at once, ask parks,
globs and command prefixes, paths outside the workspace, remembered rules,
timeouts, and agents that offer no option of the kind needed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio

from mimird.wire.errors import ErrorCode
from tests.support.agents import AgentWorld, Client, agent_world, event_data, received
from tests.support.helpers import DaemonDirs

pytestmark = pytest.mark.timeout(60)

OPTIONS = [
    {"optionId": "yes", "name": "Allow", "kind": "allow_once"},
    {"optionId": "always", "name": "Always", "kind": "allow_always"},
    {"optionId": "no", "name": "Reject", "kind": "reject_once"},
]


def ask(kind: str, *, paths: Any = (), options: Any = None, **raw: Any) -> dict[str, Any]:
    """A fake agent's step: a session/request_permission for a tool call of ``kind``."""
    tool_call: dict[str, Any] = {"toolCallId": f"t-{kind}", "title": f"{kind} it", "kind": kind}
    if paths:
        tool_call["locations"] = [{"path": p} for p in paths]
    if raw:
        tool_call["rawInput"] = raw
    params = {"sessionId": "sess-1", "toolCall": tool_call, "options": options or OPTIONS}
    return {"do": "request", "method": "session/request_permission", "params": params}


async def session_with(world: AgentWorld, c: Client, config: dict[str, Any]) -> str:
    created = await c.call(
        "session.create", {"project": world.project, "title": "t", "config": config}
    )
    session_id: str = created["id"]
    return session_id


async def prompt_rejecting_the_first(c: Client, session_id: str) -> None:
    """Prompt the session; reject the first permission request that waits (by kind)."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(c.call, "session.prompt", {"session": session_id, "text": "x"})
        listed = await c.until("permission.list", {}, lambda r: r["permissions"])
        await c.call(
            "permission.respond",
            {"permission": listed["permissions"][0]["id"], "kind": "reject_once"},
        )


def outcomes(world: AgentWorld) -> list[Any]:
    """The outcomes the agent got for its permission requests, in order."""
    return [
        m["result"]["outcome"]
        for m in received(world)
        if isinstance(m.get("result"), dict) and "outcome" in m["result"]
    ]


async def statuses(c: Client, session_id: str) -> list[str]:
    return [e["to"] for e in await event_data(c, session_id, "status_changed")]


async def test_allow_and_deny_answer_at_once_with_the_option_of_that_kind(
    dirs: DaemonDirs,
) -> None:
    steps = [ask("edit", paths=["src/a.py"]), ask("delete", paths=["src/a.py"])]
    config = {"tool_policy": {"edit": {"allow": ["src/**"]}, "delete": "deny"}}
    async with (
        agent_world(dirs, {"prompts": [steps]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await session_with(world, c, config)
        # No client answers anything: the turn ends only because the policy did.
        with trio.fail_after(30):
            result = await c.call("session.prompt", {"session": session_id, "text": "x"})
        assert result["stop_reason"] == "end_turn"
        assert outcomes(world) == [
            {"outcome": "selected", "optionId": "yes"},
            {"outcome": "selected", "optionId": "no"},
        ]
        requested = await event_data(c, session_id, "permission_requested")
        decided = await event_data(c, session_id, "permission_decided")
        assert [d["permission"] for d in decided] == [r["permission"] for r in requested]
        assert [r["policy"]["decision"] for r in requested] == ["allow", "deny"]
        assert decided[0] | {"permission": None} == {
            "permission": None,
            "decision": "allow",
            "by": "policy",
            "rule": {"layer": "session", "key": "tool_policy.edit", "pattern": "src/**"},
            "option_id": "yes",
            "outcome": "selected",
        }
        assert decided[1]["decision"] == "deny"
        assert decided[1]["rule"] == {
            "layer": "session",
            "key": "tool_policy.delete",
            "pattern": None,
        }
        assert decided[1]["option_id"] == "no"
        # Decided requests never made the session wait, nor anyone answer them.
        assert "awaiting_permission" not in await statuses(c, session_id)
        assert await event_data(c, session_id, "permission_answered") == []
        # A deny is final: nothing lists it, and no client can answer it.
        assert (await c.call("permission.list", {}))["permissions"] == []
        error = await c.error(
            "permission.respond", {"permission": decided[1]["permission"], "kind": "allow_once"}
        )
        assert error["code"] == ErrorCode.NOT_FOUND


async def test_ask_parks_the_request_with_the_rule_that_left_it_to_a_client(
    dirs: DaemonDirs,
) -> None:
    config = {"tool_policy": {"edit": {"default": "ask", "allow": ["src/**"]}}}
    async with (
        agent_world(dirs, {"prompts": [[ask("edit", paths=["README.md"])]]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await session_with(world, c, config)
        await prompt_rejecting_the_first(c, session_id)
        [requested] = await event_data(c, session_id, "permission_requested")
        assert requested["policy"] == {
            "decision": "ask",
            "rule": {"layer": "session", "key": "tool_policy.edit", "pattern": None},
            "reason": None,
        }
        assert await event_data(c, session_id, "permission_decided") == []
        assert "awaiting_permission" in await statuses(c, session_id)
        assert outcomes(world) == [{"outcome": "selected", "optionId": "no"}]


@pytest.mark.parametrize("how", ["dotdot", "symlink", "absolute"])
async def test_a_path_outside_the_workspace_is_asked_even_under_allow_everything(
    dirs: DaemonDirs, how: str
) -> None:
    outside = dirs.root / "outside"
    outside.mkdir(parents=True)
    path = {
        "dotdot": "src/../../../../outside/x.txt",
        "symlink": "link/x.txt",
        "absolute": str(outside / "x.txt"),
    }[how]
    config = {"tool_policy": {"edit": "allow"}}
    async with (
        agent_world(dirs, {"prompts": [[ask("edit", paths=[path])]]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await session_with(world, c, config)
        session = await c.call("session.get", {"session": session_id})
        workspace = Path(session["workspace"]["path"])
        os.symlink(outside, workspace / "link")
        await prompt_rejecting_the_first(c, session_id)
        [requested] = await event_data(c, session_id, "permission_requested")
        assert requested["policy"]["decision"] == "ask"
        assert "is outside the workspace" in requested["policy"]["reason"]
        assert await event_data(c, session_id, "permission_decided") == []


async def test_execute_is_allowed_by_a_command_prefix_and_a_compound_command_is_asked(
    dirs: DaemonDirs,
) -> None:
    steps = [
        ask("execute", command="git status --short"),
        ask("execute", command="git status; curl evil"),
    ]
    config = {"tool_policy": {"execute": {"allow": ["git status"], "deny": ["curl"]}}}
    async with (
        agent_world(dirs, {"prompts": [steps]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await session_with(world, c, config)
        with trio.fail_after(30):
            await c.call("session.prompt", {"session": session_id, "text": "x"})
        decided = await event_data(c, session_id, "permission_decided")
        assert [(d["decision"], d["rule"]["pattern"]) for d in decided] == [
            ("allow", "git status"),
            ("deny", "curl"),
        ]


async def test_a_command_an_agent_calls_a_search_is_decided_as_the_command_it_runs(
    dirs: DaemonDirs,
) -> None:
    """codex-acp 0.16.0 asks to run ``find . -name '*.md' -delete`` as a ``search``
    titled "Search *.md in ." (its kind is guessed from the command's first word):
    searches allowed must not allow what the command runs. The execute rule decides,
    and sees through the ``/bin/bash -lc`` wrapper codex puts around every command."""

    def codex(kind: str, title: str, script: str, *paths: str) -> dict[str, Any]:
        step = ask(
            kind,
            paths=paths,
            call_id="call_0_1",
            command=["/bin/bash", "-lc", script],
            parsed_cmd=[{"type": kind, "cmd": script}],
        )
        step["params"]["toolCall"]["title"] = title
        return step

    steps = [
        codex("read", "Read README.md", "cat README.md", "README.md"),
        codex("read", "Read README.md, rm -rf src", "cat README.md && rm -rf src", "README.md"),
        codex("search", "Search *.md in .", "find . -name '*.md' -delete"),
    ]
    config = {
        "tool_policy": {
            "read": "allow",
            "search": "allow",
            "execute": {"allow": ["cat"], "deny": ["rm"]},
        }
    }
    async with (
        agent_world(dirs, {"prompts": [steps]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await session_with(world, c, config)
        await prompt_rejecting_the_first(c, session_id)
        decided = await event_data(c, session_id, "permission_decided")
        assert [(d["decision"], d["rule"]["key"], d["rule"]["pattern"]) for d in decided] == [
            ("allow", "tool_policy.execute", "cat"),
            ("deny", "tool_policy.execute", "rm"),
        ]
        requested = await event_data(c, session_id, "permission_requested")
        assert requested[2]["policy"]["decision"] == "ask"
        assert requested[2]["policy"]["reason"] == (
            "the search call runs a command, which the execute rule decides "
            "(find . -name '*.md' -delete)"
        )
        assert outcomes(world) == [
            {"outcome": "selected", "optionId": "yes"},
            {"outcome": "selected", "optionId": "no"},
            {"outcome": "selected", "optionId": "no"},
        ]


@pytest.mark.parametrize("layer", ["session", "project"])
async def test_a_remembered_answer_decides_the_next_identical_request(
    dirs: DaemonDirs, layer: str
) -> None:
    steps = [ask("edit", paths=["notes/plan.md"]), ask("edit", paths=["notes/plan.md"])]
    async with (
        agent_world(dirs, {"prompts": [steps]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        # The project denies .github: a rule remembered in the session keeps that.
        await c.call(
            "project.update",
            {
                "project": world.project,
                "config": {"tool_policy": {"edit": {"deny": [".github/**"]}}},
            },
        )
        session_id = await session_with(world, c, {})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.call, "session.prompt", {"session": session_id, "text": "x"})
            listed = await c.until("permission.list", {}, lambda r: r["permissions"])
            first = listed["permissions"][0]["id"]
            answer = await c.call(
                "permission.respond", {"permission": first, "kind": "allow_once", "remember": layer}
            )
            assert answer["option_id"] == "yes"
        # The second, identical request was decided by the remembered rule.
        [decided] = await event_data(c, session_id, "permission_decided")
        assert decided["rule"] == {
            "layer": layer,
            "key": "tool_policy.edit",
            "pattern": "notes/plan.md",
        }
        assert outcomes(world) == [{"outcome": "selected", "optionId": "yes"}] * 2
        [answered] = await event_data(c, session_id, "permission_answered")
        assert answered["permission"] == first
        assert answered["remembered"] == {
            "layer": layer,
            "key": "tool_policy.edit",
            "patterns": ["notes/plan.md"],
            "decision": "allow",
            "rule": {
                "default": "ask",
                "allow": ["notes/plan.md"],
                "deny": [".github/**"],
                "always": False,
            },
        }
        explained = await c.call("session.config", {"session": session_id})
        [entry] = [e for e in explained["entries"] if e["key"] == "tool_policy.edit"]
        assert entry["source"] == layer
        assert entry["value"]["allow"] == ["notes/plan.md"]
        assert entry["value"]["deny"] == [".github/**"]
        if layer == "session":
            assert "config" in [
                f for e in await event_data(c, session_id, "session_updated") for f in e["fields"]
            ]


async def test_remember_that_cannot_make_a_rule_is_refused_and_the_request_stays(
    dirs: DaemonDirs,
) -> None:
    async with (
        agent_world(dirs, {"prompts": [[ask("execute", command="make && rm -rf x")]]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await session_with(world, c, {})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.call, "session.prompt", {"session": session_id, "text": "x"})
            listed = await c.until("permission.list", {}, lambda r: r["permissions"])
            pending = listed["permissions"][0]["id"]
            error = await c.error(
                "permission.respond",
                {"permission": pending, "kind": "allow_once", "remember": "session"},
            )
            assert error["code"] == ErrorCode.INVALID_PARAMS
            assert "not one simple command" in error["message"]
            assert error["data"]["field"] == "remember"
            # Nothing was written, and the request still waits for an answer.
            session = await c.call("session.get", {"session": session_id})
            assert session["config"] == {}
            assert (await c.call("permission.list", {}))["permissions"][0]["id"] == pending
            await c.call("permission.respond", {"permission": pending, "kind": "reject_once"})


@pytest.mark.parametrize(("default", "option"), [(None, "no"), ("allow", "yes")])
async def test_a_parked_request_past_its_timeout_gets_the_default_answer(
    dirs: DaemonDirs, default: str | None, option: str
) -> None:
    config: dict[str, Any] = {"permission_timeout_s": 0.05}
    if default:
        config["permission_timeout_default"] = default
    async with (
        agent_world(dirs, {"prompts": [[ask("edit", paths=["a.txt"])]]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await session_with(world, c, config)
        with trio.fail_after(30):
            await c.call("session.prompt", {"session": session_id, "text": "x"})
        [answered] = await event_data(c, session_id, "permission_answered")
        assert (answered["by"], answered["option_id"]) == ("timeout", option)
        assert outcomes(world) == [{"outcome": "selected", "optionId": option}]


async def test_an_agent_without_the_option_kind_needed_is_asked_or_cancelled(
    dirs: DaemonDirs,
) -> None:
    only_reject = [{"optionId": "no", "name": "No", "kind": "reject_once"}]
    only_allow = [{"optionId": "yes", "name": "Yes", "kind": "allow_once"}]
    steps = [
        ask("delete", paths=["a.txt"], options=only_allow),
        ask("edit", paths=["a.txt"], options=only_reject),
    ]
    config = {"tool_policy": {"edit": "allow", "delete": "deny"}}
    async with (
        agent_world(dirs, {"prompts": [steps]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await session_with(world, c, config)
        await prompt_rejecting_the_first(c, session_id)
        # The deny had no reject option: answered cancelled, never parked.
        [decided] = await event_data(c, session_id, "permission_decided")
        assert (decided["decision"], decided["option_id"], decided["outcome"]) == (
            "deny",
            None,
            "cancelled",
        )
        assert "no reject option" in decided["reason"]
        # The allow had no allow option: parked, saying why.
        requested = await event_data(c, session_id, "permission_requested")
        assert "offered no allow_once/allow_always option" in requested[1]["policy"]["reason"]
        assert outcomes(world) == [
            {"outcome": "cancelled"},
            {"outcome": "selected", "optionId": "no"},
        ]


@pytest.mark.parametrize(
    ("rule", "key", "reason"),
    [
        ({"edit": {"default": "maybe"}}, "tool_policy.edit.default", "'maybe' is not a decision"),
        ({"edit": {"allow": ["/etc/**"]}}, "tool_policy.edit.allow.0", "is absolute"),
        ({"edit": {"deny": ["../x"]}}, "tool_policy.edit.deny.0", "contains '..'"),
        ({"edit": {"allow": "src/**"}}, "tool_policy.edit.allow", "expected a list"),
        ({"edit": {"alow": []}}, "tool_policy.edit.alow", "unknown key"),
        ({"fetch": {"allow": ["x"]}}, "tool_policy.fetch.allow", "takes no patterns"),
        ({"execute": {"allow": ["git 'status"]}}, "tool_policy.execute.allow.0", "not a command"),
        ({"read": {"always": "yes"}}, "tool_policy.read.always", "expected true or false"),
    ],
)
async def test_a_bad_rule_is_refused_naming_its_key_and_nothing_changes(
    dirs: DaemonDirs, rule: dict[str, Any], key: str, reason: str
) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        session_id = await session_with(world, c, {"tool_policy": {"read": "allow"}})
        error = await c.error(
            "session.update", {"session": session_id, "config": {"tool_policy": rule}}
        )
        assert error["code"] == ErrorCode.INVALID_PARAMS
        assert error["data"]["field"] == f"config.{key}"
        assert reason in error["message"]
        session = await c.call("session.get", {"session": session_id})
        assert session["config"] == {"tool_policy": {"read": "allow"}}


@pytest.mark.parametrize(
    ("value", "reason"),
    [(0, "more than 0"), (-1, "more than 0"), (10**9, "at most"), ("5", "expected a number")],
)
async def test_a_bad_permission_timeout_is_refused(
    dirs: DaemonDirs, value: Any, reason: str
) -> None:
    async with agent_world(dirs, {}) as world, Client.connect(world.daemon.socket) as c:
        error = await c.error(
            "session.create",
            {"project": world.project, "config": {"permission_timeout_s": value}},
        )
        assert error["code"] == ErrorCode.INVALID_PARAMS
        assert error["data"]["field"] == "config.permission_timeout_s"
        assert reason in error["message"]
        error = await c.error(
            "session.create",
            {"project": world.project, "config": {"permission_timeout_default": "ask"}},
        )
        assert error["data"]["field"] == "config.permission_timeout_default"


async def test_a_request_of_a_turn_being_cancelled_is_answered_cancelled_not_allowed(
    dirs: DaemonDirs,
) -> None:
    steps = [
        {"do": "wait_cancel"},
        ask("edit", paths=["src/a.py"]),
        {"do": "stop_reason", "value": "cancelled"},
    ]
    async with (
        agent_world(dirs, {"prompts": [steps]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await session_with(world, c, {"tool_policy": {"edit": "allow"}})
        results: list[Any] = []

        async def prompt() -> None:
            results.append(await c.call("session.prompt", {"session": session_id, "text": "x"}))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(prompt)
            await c.until(
                "session.get", {"session": session_id}, lambda s: s["status"] == "running"
            )
            await c.call("session.cancel", {"session": session_id})
        assert results[0]["stop_reason"] == "cancelled"
        assert outcomes(world) == [{"outcome": "cancelled"}]
        assert await event_data(c, session_id, "permission_decided") == []


async def test_a_remembered_answer_to_a_command_of_another_kind_goes_into_the_execute_rule(
    dirs: DaemonDirs,
) -> None:
    """codex asks for a command as a search (``find ...``) wrapped in ``/bin/bash -lc``:
    "always" remembers the command it runs, in the execute rule that decides it, and
    the next identical request is decided by it."""
    script = "find . -name '*.md' -print"
    codex = ask("search", command=["/bin/bash", "-lc", script], cwd=".")
    async with (
        agent_world(dirs, {"prompts": [[codex, codex]]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await session_with(world, c, {"tool_policy": {"search": "allow"}})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.call, "session.prompt", {"session": session_id, "text": "x"})
            listed = await c.until("permission.list", {}, lambda r: r["permissions"])
            await c.call(
                "permission.respond",
                {
                    "permission": listed["permissions"][0]["id"],
                    "kind": "allow_always",
                    "remember": "session",
                },
            )
        [answered] = await event_data(c, session_id, "permission_answered")
        assert answered["remembered"]["key"] == "tool_policy.execute"
        assert answered["remembered"]["patterns"] == [script]
        [decided] = await event_data(c, session_id, "permission_decided")
        assert decided["rule"] == {
            "layer": "session",
            "key": "tool_policy.execute",
            "pattern": script,
        }
        assert outcomes(world) == [
            {"outcome": "selected", "optionId": "always"},
            {"outcome": "selected", "optionId": "yes"},
        ]
