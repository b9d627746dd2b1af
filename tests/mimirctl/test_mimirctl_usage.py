"""``mimirctl session show`` and ``mimirctl status`` show usage: the session's
turns summed, and today's turns of every session; a prompt refused by a budget
says why. A real daemon; the agent is the scripted fake ACP agent."""

from __future__ import annotations

from tests.mimirctl.test_mimirctl_attach import mimirctl
from tests.support.agents import Client, agent_world, new_session
from tests.support.helpers import DaemonDirs

USAGE = {"totalTokens": 1500, "inputTokens": 1200, "outputTokens": 250, "thoughtTokens": 50}
COST = {"sessionUpdate": "usage_update", "used": 1500, "size": 9000, "cost": {"amount": 0.25}}
TURN = [{"do": "update", "update": COST}, {"do": "result", "value": {"usage": USAGE}}]


def fields(output: bytes) -> dict[str, str]:
    lines = [line.split(":", 1) for line in output.decode().splitlines() if ":" in line]
    return {name: value.strip() for name, value in lines}


async def test_session_show_and_status_show_usage(dirs: DaemonDirs) -> None:
    async with (
        agent_world(dirs, {"prompts": [TURN]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session_id = await new_session(world, c)
        await c.call("session.prompt", {"session": session_id, "text": "one"})
        shown = await mimirctl(dirs, "session", "show", session_id)
        status = await mimirctl(dirs, "status")
    expected = "1,500 tokens (in 1,200, out 250, thought 50), 0.2500 USD, 1 turn"
    assert shown.returncode == 0, shown.stderr
    assert fields(shown.stdout)["usage"] == expected
    assert status.returncode == 0, status.stderr
    assert fields(status.stdout)["usage today"] == expected


async def test_a_prompt_over_budget_says_the_limit_and_how_to_raise_it(dirs: DaemonDirs) -> None:
    async with (
        agent_world(dirs, {"prompts": [TURN]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session = await c.call(
            "session.create", {"project": world.project, "config": {"cost_budget_usd": 0.1}}
        )
        await c.call("session.prompt", {"session": session["id"], "text": "one"})
        refused = await mimirctl(dirs, "prompt", session["id"], "two")
        log = await mimirctl(dirs, "log", session["id"])
    assert refused.returncode == 1
    error = refused.stderr.decode()
    assert "0.2500 USD used of 0.1000 USD (set by the session config)" in error
    assert f"mimirctl session update {session['id']} --config" in error
    budget_lines = [line for line in log.stdout.decode().splitlines() if "budget_usd" in line]
    assert budget_lines == [
        "[cost_budget_usd nearly reached: 0.2500 used of 0.1000 (set by the session config)]",
        "[cost_budget_usd reached: 0.2500 used of 0.1000 (set by the session config)]",
    ]


async def test_a_turn_cut_short_by_a_budget_says_so_and_resume_goes_on(dirs: DaemonDirs) -> None:
    big = {"sessionUpdate": "usage_update", "used": 50_000, "size": 9000}
    cut = [
        {"do": "update", "update": big},
        {"do": "wait_cancel"},
        {"do": "stop_reason", "value": "cancelled"},
    ]
    async with (
        agent_world(dirs, {"prompts": [cut]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        session = await c.call(
            "session.create", {"project": world.project, "config": {"token_budget": 1000}}
        )
        done = await mimirctl(dirs, "prompt", session["id"], "one")
        await c.call("session.update", {"session": session["id"], "config": {}})
        resumed = await mimirctl(dirs, "resume", session["id"])
    assert done.returncode == 130, done.stderr  # a cancelled turn's exit code
    assert "[turn ended: cancelled (budget_exceeded)]" in done.stdout.decode().splitlines()
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.decode().splitlines() == [
        f"session {session['id']}: idle",
        "agent: it was running already (its conversation goes on)",
    ]
