"""Bad input to the run methods: every param out of bounds or not fitting the
others gets a JSON-RPC error that names it, nothing is stored (no run, no
session, no branch, no worktree), and the daemon goes on serving."""

from __future__ import annotations

from typing import Any

import pytest

from tests.runs.world import RunWorld, run_world, writes
from tests.support.helpers import DaemonDirs, git

pytestmark = pytest.mark.timeout(60)

SCENARIOS = {"alpha": writes("a.txt", "a\n"), "beta": writes("b.txt", "b\n")}

#: (params added to a valid run.create, error kind, data.field)
BAD_CREATES: list[tuple[dict[str, Any], str, str]] = [
    ({"agents": ["alpha"], "n": 2}, "invalid_params", "agents"),
    ({"agents": ["alpha"], "agent": "beta"}, "invalid_params", "agents"),
    ({}, "invalid_params", "n"),
    ({"agents": []}, "invalid_params", "agents"),
    ({"agents": ["alpha"] * 17}, "invalid_params", "agents"),
    ({"agents": ["nope"]}, "invalid_params", "agents"),
    ({"agents": ["../x"]}, "invalid_params", "agents.0"),
    ({"agent": "nope", "n": 2}, "invalid_params", "agent"),
    ({"agent": "alpha", "n": 0}, "invalid_params", "n"),
    ({"agent": "alpha", "n": 17}, "invalid_params", "n"),
    ({"agents": ["alpha"], "mode": "tournament"}, "invalid_params", "mode"),
    ({"agents": ["alpha"], "judge": "coin"}, "invalid_params", "judge"),
    ({"agents": ["alpha"], "judge": "checks"}, "invalid_params", "judge"),
    ({"agents": ["alpha"], "task": ""}, "invalid_params", "task"),
    ({"agents": ["alpha"], "check_command": ""}, "invalid_params", "check_command"),
    ({"agents": ["alpha"], "check_command": "a\u0000b"}, "invalid_params", "check_command"),
    ({"agents": ["alpha"], "config": {"no_such_key": 1}}, "invalid_params", "config.no_such_key"),
    ({"agents": ["alpha"], "run_budget": {}}, "invalid_params", "run_budget"),
    ({"agents": ["alpha"], "run_budget": {"tokens": 0}}, "invalid_params", "run_budget.tokens"),
    (
        {"agents": ["alpha"], "run_budget": {"cost_usd": -1}},
        "invalid_params",
        "run_budget.cost_usd",
    ),
    ({"agents": ["alpha"], "rounds": 3}, "invalid_params", "rounds"),
    ({"agents": ["alpha"], "then": "ensemble"}, "invalid_params", "then"),
    ({"agents": ["alpha"], "into": "no-such-branch"}, "invalid_params", "into"),
    ({"agents": ["alpha"], "into": "bad..name"}, "invalid_params", "into"),
    ({"agents": ["alpha"], "base_ref": "no-such-ref"}, "invalid_params", "base_ref"),
    ({"agents": ["alpha"], "merge": "sometimes"}, "invalid_params", "merge"),
    ({"agents": ["alpha"], "judge_agent": "nope"}, "invalid_params", "judge_agent"),
    ({"agents": ["alpha"], "template": {"template": "nope"}}, "invalid_params", "template"),
    ({"agents": ["alpha"], "extra": 1}, "invalid_params", "extra"),
    ({"agents": ["alpha"], "project": "nope"}, "not_found", "project"),
]


async def _stored(world: RunWorld) -> tuple[Any, ...]:
    runs = (await world.client.call("run.list", {}))["runs"]
    sessions = (
        await world.client.call("session.list", {"include_archived": True, "include_deleted": True})
    )["sessions"]
    branches = git(world.repo, "branch", "--list").split()
    worktrees = git(world.repo, "worktree", "list", "--porcelain")
    return runs, sessions, branches, worktrees


async def test_every_bad_run_create_is_refused_naming_the_param_and_nothing_is_made(
    dirs: DaemonDirs,
) -> None:
    async with run_world(dirs, SCENARIOS) as world:
        before = await _stored(world)
        wrong = []
        for extra, kind, field in BAD_CREATES:
            params = {"project": world.project, "task": "t", **extra}
            error = await world.client.error("run.create", params)
            assert error["message"]
            if (error["data"]["kind"], error["data"].get("field")) != (kind, field):
                wrong.append((extra, error))
        assert wrong == [], "\n".join(f"{e}: {err['data']}" for e, err in wrong)
        assert await _stored(world) == before
        # The daemon still serves, and a good run can be made.
        run = await world.create(agents=["alpha"])
        assert run["status"] in ("starting", "running")


async def test_a_dirty_checkout_without_base_ref_is_refused(dirs: DaemonDirs) -> None:
    async with run_world(dirs, SCENARIOS) as world:
        (world.repo / "README.md").write_text("changed\n")
        before = await _stored(world)
        error = await world.client.error(
            "run.create", {"project": world.project, "task": "t", "agents": ["alpha"]}
        )
        assert error["data"]["kind"] == "invalid_state"
        assert await _stored(world) == before


async def test_bad_refs_slots_and_states_of_the_other_methods(dirs: DaemonDirs) -> None:
    async with run_world(dirs, SCENARIOS) as world:
        run = await world.create(agents=["alpha", "beta"], merge="manual")
        await world.until_status(run, "deciding")
        before = await world.get(run)
        cases: list[tuple[str, dict[str, Any], str, str | None]] = [
            ("run.get", {"run": "zzzzzzzz"}, "not_found", "run"),
            ("run.get", {"run": "ab"}, "invalid_params", "run"),
            ("run.pick", {"run": run["id"], "slot": 3}, "invalid_params", "slot"),
            ("run.pick", {"run": run["id"], "slot": 0}, "invalid_params", "slot"),
            ("run.pick", {"run": run["id"]}, "invalid_params", "slot"),
            ("run.resume", {"run": run["id"]}, "invalid_state", "run"),
            ("run.events", {"run": run["id"], "after": -1}, "invalid_params", "after"),
            ("run.events", {"run": run["id"], "limit": 0}, "invalid_params", "limit"),
            ("run.list", {"status": ["sleeping"]}, "invalid_params", "status.0"),
            ("run.list", {"project": "nope"}, "not_found", "project"),
            ("run.delete", {"run": "zzzzzzzz"}, "not_found", "run"),
            ("run.subscribe", {"run": "zzzzzzzz"}, "not_found", "run"),
            ("run.cancel", {"run": run["id"], "force": True}, "invalid_params", "force"),
        ]
        for method, params, kind, field in cases:
            error = await world.client.error(method, params)
            assert (error["data"]["kind"], error["data"].get("field")) == (kind, field), (
                method,
                params,
                error,
            )
        after = await world.get(run)
        assert {k: v for k, v in after.items() if k != "totals"} == {
            k: v for k, v in before.items() if k != "totals"
        }
        # Picked once; a second pick is an illegal state.
        await world.client.call("run.pick", {"run": run["id"], "slot": 1})
        await world.until_status(run, "decided")
        again = await world.client.error("run.pick", {"run": run["id"], "slot": 2})
        assert again["data"]["kind"] == "invalid_state"
