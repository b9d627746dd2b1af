"""Usage counted and budgets enforced, with the scripted fake agent as a real
subprocess of a real daemon: usage from ``usage_update``, from the prompt result
and from ``_meta``; budgets reached during a turn and between turns; the -32006
refusal; raising a budget and resuming; one warning; turn timeouts; hostile
numbers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mimird.processes import group_alive
from tests.support.agents import Client, agent_world, event_data, new_session, write_config
from tests.support.helpers import DaemonDirs, blocking_call, daemon_process, make_repo
from tests.support.processes import killing

pytestmark = pytest.mark.timeout(60)

BUDGET_EXCEEDED = -32006
#: What an agent does with a cancelled turn: waits for the cancel, answers ``cancelled``.
CANCELLED = ({"do": "wait_cancel"}, {"do": "stop_reason", "value": "cancelled"})


def turn(*steps: dict[str, Any]) -> list[dict[str, Any]]:
    return list(steps)


def usage_update(used: Any = None, cost: Any = None, **extra: Any) -> dict[str, Any]:
    update: dict[str, Any] = {"sessionUpdate": "usage_update", "size": 200_000, **extra}
    if used is not None:
        update["used"] = used
    if cost is not None:
        update["cost"] = cost
    return {"do": "update", "update": update}


def result(**value: Any) -> dict[str, Any]:
    return {"do": "result", "value": value}


def acp_usage(total: int, inp: int = 0, out: int = 0, **more: int) -> dict[str, Any]:
    return {"usage": {"totalTokens": total, "inputTokens": inp, "outputTokens": out, **more}}


async def create(c: Client, project: str, config: dict[str, Any] | None = None) -> str:
    params: dict[str, Any] = {"project": project, "title": "t"}
    if config is not None:
        params["config"] = config
    session = await c.call("session.create", params)
    session_id: str = session["id"]
    return session_id


async def prompt(c: Client, session_id: str, text: str = "go") -> dict[str, Any]:
    answer: dict[str, Any] = await c.call("session.prompt", {"session": session_id, "text": text})
    return answer


async def session(c: Client, session_id: str) -> dict[str, Any]:
    found: dict[str, Any] = await c.call("session.get", {"session": session_id})
    return found


# ---- usage gathered and stored ------------------------------------------------------


async def test_the_prompt_results_usage_is_counted_per_turn_session_project_and_day(
    dirs: DaemonDirs,
) -> None:
    scenario = {
        "prompts": [
            turn(result(**acp_usage(150, 100, 40, thoughtTokens=10, cachedReadTokens=30))),
            turn(result(**acp_usage(50, 20, 30))),
        ]
    }
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        first = await prompt(c, session_id)
        assert first["usage"] == {
            "input_tokens": 100,
            "output_tokens": 40,
            "cached_tokens": 30,
            "thought_tokens": 10,
            "total_tokens": 150,
            "cost_usd": 0.0,
            "turns": 1,
        }
        await prompt(c, session_id)
        used = (await session(c, session_id))["usage"]
        assert (used["total_tokens"], used["input_tokens"], used["turns"]) == (200, 120, 2)
        ended = await event_data(c, session_id, "turn_ended")
        assert [e["usage"]["total_tokens"] for e in ended] == [150, 50]
        other = await new_session(world, c)  # a session without turns counts nothing
        assert (await session(c, other))["usage"]["turns"] == 0
        project = await c.call("project.get", {"project": world.project})
        assert project["usage"]["total_tokens"] == 200
        status = await c.call("daemon.status")
        assert status["usage_today"]["total_tokens"] == 200
        assert status["usage_today"]["turns"] == 2
        listed = await c.call("session.list", {})
        assert all(s["usage"] is None for s in listed["sessions"])  # lists stay cheap


async def test_cost_from_usage_updates_is_cumulative_so_each_turn_counts_what_it_added(
    dirs: DaemonDirs,
) -> None:
    usd = "USD"
    scenario = {
        "prompts": [
            turn(usage_update(1000, {"amount": 0.01, "currency": usd})),
            turn(
                usage_update(1500, {"amount": 0.02, "currency": usd}),
                usage_update(1800, {"amount": 0.03, "currency": usd}),
            ),
        ]
    }
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        assert (await prompt(c, session_id))["usage"]["cost_usd"] == pytest.approx(0.01)
        second = await prompt(c, session_id)
        assert second["usage"]["cost_usd"] == pytest.approx(0.02)
        # No token counts reported: the largest context size of the turn stands for them.
        assert second["usage"]["total_tokens"] == 1800
        used = (await session(c, session_id))["usage"]
        assert used["cost_usd"] == pytest.approx(0.03)
        assert used["total_tokens"] == 2800


async def test_gemini_style_meta_quota_is_counted(dirs: DaemonDirs) -> None:
    meta = {"quota": {"token_count": {"input_tokens": 70, "output_tokens": 5}}}
    scenario = {"prompts": [turn(result(_meta=meta))]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        used = (await prompt(c, session_id))["usage"]
        assert (used["input_tokens"], used["output_tokens"], used["total_tokens"]) == (70, 5, 75)


HOSTILE_USAGE: list[Any] = [
    {"totalTokens": -5, "inputTokens": "100", "outputTokens": 10**30},
    {"totalTokens": True, "inputTokens": [1, 2], "outputTokens": {"n": 1}},
    {"totalTokens": 1.5, "inputTokens": None, "cachedReadTokens": -1},
    "lots",
    [1, 2, 3],
    {"nested": {"totalTokens": 10**6}},
]


async def test_hostile_usage_numbers_never_fail_a_turn_nor_reach_the_totals(
    dirs: DaemonDirs,
) -> None:
    garbage_updates = [
        usage_update("900", {"amount": "0.5", "currency": "USD"}),
        usage_update(-3, {"amount": -2.0, "currency": "USD"}),
        usage_update(10**30, {"amount": 10**30, "currency": "USD"}),
        usage_update(None, {"amount": 5.0, "currency": "EUR"}),
        usage_update([1], ["cost"]),
        usage_update({"a": 1}, 7),
    ]
    scenario = {
        "prompts": [
            *[turn(result(usage=bad)) for bad in HOSTILE_USAGE],
            turn(*garbage_updates, result(_meta={"quota": "x"}, usage=None)),
            turn(result(**acp_usage(7, 3, 4))),
        ]
    }
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        for _ in range(len(HOSTILE_USAGE) + 1):
            answer = await prompt(c, session_id)
            assert answer["stop_reason"] == "end_turn"
            assert answer["usage"] is None
        assert (await prompt(c, session_id))["usage"]["total_tokens"] == 7
        found = await session(c, session_id)
        assert found["status"] == "idle"
        assert found["usage"]["total_tokens"] == 7
        assert found["usage"]["cost_usd"] == 0.0
        assert found["usage"]["turns"] == 1


# ---- budgets ----------------------------------------------------------------------------


async def test_a_budget_reached_during_a_turn_cancels_it_and_refuses_the_next_prompt(
    dirs: DaemonDirs,
) -> None:
    scenario = {"prompts": [turn(usage_update(240_000), *CANCELLED)]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await create(c, world.project, {"token_budget": 10_000})
        answer = await prompt(c, session_id)
        assert answer["stop_reason"] == "cancelled"
        (ended,) = await event_data(c, session_id, "turn_ended")
        assert ended["reason"] == "budget_exceeded"
        assert ended["usage"]["total_tokens"] == 240_000
        assert (await session(c, session_id))["status"] == "budget_exceeded"
        (exceeded,) = await event_data(c, session_id, "budget_exceeded")
        assert exceeded == {
            "budget": "token_budget",
            "limit": 10_000,
            "used": 240_000,
            "layer": "session",
        }
        error = await c.error("session.prompt", {"session": session_id, "text": "more"})
        assert error["code"] == BUDGET_EXCEEDED
        assert error["data"]["kind"] == "budget_exceeded"
        assert error["data"]["detail"]["layer"] == "session"
        message = error["message"]
        for part in (
            "240,000 tokens used of 10,000 tokens",
            "token_budget",
            "set by the session config",
            f"mimirctl session update {session_id} --config",
            f"mimirctl resume {session_id}",
        ):
            assert part in message, message
        # Nothing of the refused prompt was journaled.
        assert len(await event_data(c, session_id, "prompt")) == 1


async def test_a_budget_reached_by_a_turns_reported_usage_stops_the_session_after_it(
    dirs: DaemonDirs,
) -> None:
    scenario = {"prompts": [turn(result(**acp_usage(150, 100, 50)))]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        await c.call("project.update", {"project": world.project, "config": {"token_budget": 100}})
        session_id = await new_session(world, c)
        answer = await prompt(c, session_id)
        assert answer["stop_reason"] == "end_turn"
        assert (await session(c, session_id))["status"] == "budget_exceeded"
        (exceeded,) = await event_data(c, session_id, "budget_exceeded")
        assert exceeded["layer"] == "project"
        error = await c.error("session.prompt", {"session": session_id, "text": "more"})
        assert error["code"] == BUDGET_EXCEEDED
        assert "set by the project config" in error["message"]
        assert "mimirctl project update demo --config" in error["message"]


async def test_a_budget_lowered_between_turns_refuses_the_next_prompt(dirs: DaemonDirs) -> None:
    scenario = {"prompts": [turn(result(**acp_usage(500, 400, 100)))]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await create(c, world.project, {"token_budget": 1000})
        await prompt(c, session_id)
        assert (await session(c, session_id))["status"] == "idle"
        await c.call("session.update", {"session": session_id, "config": {"token_budget": 400}})
        error = await c.error("session.prompt", {"session": session_id, "text": "more"})
        assert error["code"] == BUDGET_EXCEEDED
        assert "500 tokens used of 400 tokens" in error["message"]
        assert (await session(c, session_id))["status"] == "budget_exceeded"
        assert len(await event_data(c, session_id, "prompt")) == 1


async def test_raising_the_budget_and_resuming_continues(dirs: DaemonDirs) -> None:
    scenario = {
        "prompts": [
            turn(result(**acp_usage(150, 100, 50))),
            turn(result(**acp_usage(20, 10, 10))),
        ]
    }
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await create(c, world.project, {"token_budget": 100})
        await prompt(c, session_id)
        assert (await session(c, session_id))["status"] == "budget_exceeded"
        # Resuming without raising it is refused, with the same figures.
        error = await c.error("session.resume", {"session": session_id})
        assert error["code"] == BUDGET_EXCEEDED
        await c.call("session.update", {"session": session_id, "config": {"token_budget": 1000}})
        # Raised but not resumed: the prompt says how to go on.
        error = await c.error("session.prompt", {"session": session_id, "text": "more"})
        assert error["data"]["kind"] == "invalid_state"
        assert f"mimirctl resume {session_id}" in error["message"]
        resumed = await c.call("session.resume", {"session": session_id})
        assert resumed["status"] == "idle"
        assert (await prompt(c, session_id))["stop_reason"] == "end_turn"
        assert (await session(c, session_id))["usage"]["total_tokens"] == 170


async def test_a_stopped_session_over_budget_resumes_once_raised(dirs: DaemonDirs) -> None:
    scenario = {"prompts": [turn(result(**acp_usage(150, 100, 50)))]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await create(c, world.project, {"cost_budget_usd": 1.0})
        await prompt(c, session_id)
        await c.call("session.stop", {"session": session_id})
        await c.call("session.update", {"session": session_id, "config": {"token_budget": 10}})
        error = await c.error("session.prompt", {"session": session_id, "text": "more"})
        assert error["code"] == BUDGET_EXCEEDED
        assert (await session(c, session_id))["status"] == "stopped"
        await c.call("session.update", {"session": session_id, "config": {"token_budget": None}})
        assert (await c.call("session.resume", {"session": session_id}))["status"] == "idle"


async def test_a_cost_budget_reached_during_a_turn_names_the_cost(dirs: DaemonDirs) -> None:
    cost = {"amount": 0.25, "currency": "USD"}
    scenario = {"prompts": [turn(usage_update(10, cost), *CANCELLED)]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await create(c, world.project, {"cost_budget_usd": 0.2})
        assert (await prompt(c, session_id))["stop_reason"] == "cancelled"
        (exceeded,) = await event_data(c, session_id, "budget_exceeded")
        assert exceeded["budget"] == "cost_budget_usd"
        assert exceeded["used"] == pytest.approx(0.25)
        error = await c.error("session.prompt", {"session": session_id, "text": "more"})
        assert "0.2500 USD used of 0.2000 USD" in error["message"]


async def test_a_budget_warning_is_journaled_once_per_budget(dirs: DaemonDirs) -> None:
    scenario = {
        "prompts": [
            turn(result(**acp_usage(600, 500, 100))),
            turn(usage_update(50), result(**acp_usage(100, 50, 50))),
            turn(result(**acp_usage(100, 50, 50))),
        ]
    }
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await create(
            c, world.project, {"token_budget": 1000, "budget_warn_ratio": 0.5}
        )
        for _ in range(3):
            await prompt(c, session_id)
        warnings = await event_data(c, session_id, "budget_warning")
        assert warnings == [
            {
                "budget": "token_budget",
                "limit": 1000,
                "used": 600,
                "layer": "session",
                "ratio": 0.5,
            }
        ]
        assert (await session(c, session_id))["status"] == "idle"


async def test_a_turn_running_longer_than_turn_timeout_s_is_cancelled(dirs: DaemonDirs) -> None:
    scenario = {"prompts": [turn(*CANCELLED), turn()]}
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await create(c, world.project, {"turn_timeout_s": 0.5})
        assert (await prompt(c, session_id))["stop_reason"] == "cancelled"
        (ended,) = await event_data(c, session_id, "turn_ended")
        assert ended["reason"] == "turn_timeout"
        assert ended["stop_reason"] == "cancelled"
        assert len(await event_data(c, session_id, "cancel_requested")) == 1
        # The session goes on: the next (quick) turn is not cut short.
        assert (await prompt(c, session_id))["stop_reason"] == "end_turn"
        assert (await session(c, session_id))["status"] == "idle"


@pytest.mark.slow
def test_a_killed_daemon_leaves_no_agent_of_a_budget_exceeded_session(dirs: DaemonDirs) -> None:
    """The agent of a budget_exceeded session stays up (a raised budget resumes it at
    once): after a SIGKILL of mimird, the next start reaps it like any other."""
    scenario = {
        "prompts": [turn(result(**acp_usage(150, 100, 50)))],
        "ignore_eof": True,
        "ignore_sigterm": True,
    }
    write_config(dirs, scenario)
    repo = make_repo(dirs.root / "repo")

    def call(method: str, params: dict[str, Any]) -> Any:
        return blocking_call(dirs.socket, method, params)["result"]

    with daemon_process(dirs) as daemon:
        daemon.wait_ready()
        call("project.add", {"path": str(repo), "name": "demo"})
        created = call("session.create", {"project": "demo", "config": {"token_budget": 100}})
        params = {"session": created["id"]}
        call("session.prompt", {**params, "text": "go"})
        session = call("session.get", params)
        assert session["status"] == "budget_exceeded"
        pid = int(session["agent_state"]["pid"])
        daemon.kill()
    with killing([pid]):
        assert group_alive(pid), "the orphan agent outlived the daemon"
        with daemon_process(dirs) as daemon:
            daemon.wait_ready()
            assert not group_alive(pid)
            assert call("session.get", params)["status"] == "budget_exceeded"
            call("session.update", {**params, "config": {"token_budget": 1000}})
            assert call("session.resume", params)["status"] == "idle"


async def test_a_loaded_agent_reporting_its_cumulative_cost_again_is_not_counted_twice(
    dirs: DaemonDirs,
) -> None:
    """An agent that loads its ACP session again reports its cost on from where it
    was (opencode reports the session's whole cost): only what it adds counts."""

    def cost(amount: float) -> dict[str, Any]:
        return usage_update(10, {"amount": amount, "currency": "USD"})

    scenario = {
        "results": {
            "initialize": {"protocolVersion": 1, "agentCapabilities": {"loadSession": True}},
            "session/load": None,
        },
        "after": {"session/load": [cost(0.10)]},
        "prompts": [turn({"do": "script"})],
    }
    async with agent_world(dirs, scenario) as world, Client.connect(world.daemon.socket) as c:
        session_id = await new_session(world, c)
        first = await prompt(c, session_id, json.dumps([cost(0.10)]))
        assert first["usage"]["cost_usd"] == pytest.approx(0.10)
        await c.call("session.stop", {"session": session_id})
        await c.call("session.resume", {"session": session_id})
        second = await prompt(c, session_id, json.dumps([cost(0.15)]))
        assert second["usage"]["cost_usd"] == pytest.approx(0.05)
        assert (await session(c, session_id))["usage"]["cost_usd"] == pytest.approx(0.15)
        (_started, loaded) = await event_data(c, session_id, "agent_started")
        assert loaded["loaded"] is True
