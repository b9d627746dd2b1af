"""A daemon stopped while a debate's later round or an ensemble's integration
works: the next start marks the run interrupted, and run.resume goes on where it
was (the members that had not finished the round are prompted again with that
round's prompt, the integration session is prompted again), not from the start."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from mimird.runs.modes import RESUME_PREFIX
from tests.runs.world import write_config
from tests.support.agents import Client
from tests.support.helpers import (
    DaemonDirs,
    add_project_blocking,
    daemon_process,
    in_process_daemon,
    make_repo,
    rpc,
    start_daemon_process,
)

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def prompts_of(dirs: DaemonDirs, kind: str) -> list[str]:
    path = dirs.root / f"received-{kind}.jsonl"
    return [
        # The prompt's own blocks: not the earlier conversation handed over to an
        # agent restarted without it (mimird/agents/handoff.py).
        " ".join(b.get("text", "") for b in m["params"]["prompt"] if "_meta" not in b)
        for m in map(json.loads, path.read_text().splitlines())
        if m.get("method") == "session/prompt"
    ]


async def until(client: Client, run_id: str, check: Any) -> dict[str, Any]:
    with trio.fail_after(30):
        while True:
            run: dict[str, Any] = await client.call("run.get", {"run": run_id})
            if check(run):
                return run
            await trio.sleep(0.05)


def say(text: str) -> dict[str, Any]:
    return {"do": "say", "text": text}


async def test_a_debate_stopped_in_round_two_resumes_that_round(dirs: DaemonDirs) -> None:
    hung = str(dirs.root / "hung-once")
    scenarios = {
        "alpha": {
            "prompts": [
                [{"do": "disk_write", "path": "a.txt", "text": "a\n"}, say("a1")],
                [say("a2")],
                [say("a2 again")],
            ]
        },
        "beta": {
            "prompts": [
                [{"do": "disk_write", "path": "b.txt", "text": "b\n"}, say("b1")],
                [{"do": "hang", "once": hung}],
            ]
        },
    }
    write_config(dirs, scenarios)
    repo = make_repo(dirs.root / "repo")
    params = {"agents": ["alpha", "beta"], "mode": "debate", "rounds": 2, "merge": "manual"}
    async with in_process_daemon(dirs) as daemon, Client.connect(daemon.socket) as client:
        project = await client.call("project.add", {"path": str(repo), "name": "demo"})
        run = await client.call("run.create", {"project": project["id"], "task": "t", **params})

        def beta_hangs_in_round_two(r: dict[str, Any]) -> bool:
            members = {m["slot"]: m for m in r["members"]}
            return bool(
                r["round"] == 2
                and members[1]["outcome"] == "finished"
                and members[2]["status"] == "running"
            )

        await until(client, run["id"], beta_hangs_in_round_two)
    async with in_process_daemon(dirs) as daemon, Client.connect(daemon.socket) as client:
        stopped = await client.call("run.get", {"run": run["id"]})
        assert stopped["status"] == "interrupted"
        await client.call("run.resume", {"run": run["id"]})
        done = await until(client, run["id"], lambda r: r["status"] == "deciding")
        assert done["round"] == 2
        alpha, beta = prompts_of(dirs, "alpha"), prompts_of(dirs, "beta")
        assert len(alpha) == 2  # alpha had finished round 2: not prompted again
        assert len(beta) == 3
        assert beta[2].startswith(RESUME_PREFIX)
        assert "round 2 of 2" in beta[2]
        assert "+a" in beta[2]  # still the other member's work
        events = (await client.call("run.events", {"run": run["id"], "limit": 1000}))["events"]
        ended = [e["data"] for e in events if e["kind"] == "round_ended"]
        assert [e["round"] for e in ended] == [1, 2]
        # A new agent process plays its scenario from the start: its first turn again.
        assert {r["slot"]: r["summary"] for r in ended[1]["results"]} == {2: "b1"}


async def test_an_ensemble_stopped_during_its_integration_prompts_it_again(
    dirs: DaemonDirs,
) -> None:
    hung = str(dirs.root / "hung-once")
    scenarios = {
        "alpha": {"prompts": [[{"do": "disk_write", "path": "a.txt", "text": "a\n"}]]},
        "integrator": {
            "prompts": [
                [
                    {"do": "hang", "once": hung},
                    {"do": "disk_write", "path": "c.txt", "text": "c\n"},
                    say("combined"),
                ]
            ]
        },
    }
    write_config(dirs, scenarios)
    repo = make_repo(dirs.root / "repo")
    params = {
        "agents": ["alpha", "alpha"],
        "mode": "ensemble",
        "integration_agent": "integrator",
        "merge": "manual",
    }
    async with in_process_daemon(dirs) as daemon, Client.connect(daemon.socket) as client:
        project = await client.call("project.add", {"path": str(repo), "name": "demo"})
        run = await client.call("run.create", {"project": project["id"], "task": "t", **params})

        def integrating(r: dict[str, Any]) -> bool:
            members = {m["slot"]: m for m in r["members"]}
            return r["integration_phase"] == "in_progress" and (
                0 in members and members[0]["status"] == "running"
            )

        await until(client, run["id"], integrating)
    async with in_process_daemon(dirs) as daemon, Client.connect(daemon.socket) as client:
        stopped = await client.call("run.get", {"run": run["id"]})
        assert stopped["status"] == "interrupted"
        assert stopped["integration_phase"] == "in_progress"
        await client.call("run.resume", {"run": run["id"]})
        done = await until(client, run["id"], lambda r: r["status"] in ("decided", "completed"))
        assert done["winner"] == 0
        assert done["integration_phase"] == "completed"
        assert len(prompts_of(dirs, "alpha")) == 2  # the members were not prompted again
        first, again = prompts_of(dirs, "integrator")
        assert again.startswith(RESUME_PREFIX)
        # The same material, in a prompt of its own (a token of its own).
        token = first.rsplit("[", 1)[1].split("]")[0]
        assert again.removeprefix(RESUME_PREFIX).count("+a") == first.count("+a") == 2
        assert token not in again
        assert done["members"][0]["files_changed"] == 1


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


def _until(check: Any, what: str, wait_s: float = 30) -> Any:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.05)
    raise AssertionError(f"never: {what}")


def test_an_integrations_check_left_running_by_a_killed_daemon_is_reaped(
    dirs: DaemonDirs,
) -> None:
    pidfile = dirs.root / "check.pid"
    scenarios = {
        "alpha": {"prompts": [[{"do": "disk_write", "path": "a.txt", "text": "a\n"}]]},
        "integrator": {"prompts": [[{"do": "disk_write", "path": "c.txt", "text": "c\n"}]]},
    }
    # Only the integration's worktree has c.txt: only its check hangs.
    check = f"test -f c.txt || exit 0; sleep 60 & echo $! > {pidfile}; wait"
    write_config(dirs, scenarios)
    first = start_daemon_process(dirs)
    try:
        repo = make_repo(dirs.root / "repo")
        project = add_project_blocking(dirs, repo, name="demo")
        params = {
            "project": project["id"],
            "task": "t",
            "agents": ["alpha"],
            "mode": "ensemble",
            "integration_agent": "integrator",
            "check_command": check,
        }
        run = rpc(dirs, "run.create", params)
        _until(lambda: pidfile.exists() and pidfile.read_text().strip(), "the check runs")
        pid = int(pidfile.read_text())
    finally:
        first.kill()
    try:
        with daemon_process(dirs):
            _until(lambda: not _alive(pid), "the integration's leftover check is reaped")
            got = rpc(dirs, "run.get", {"run": run["id"]})
            assert got["status"] == "interrupted"
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


async def test_a_debate_stopped_while_its_judge_works_judges_again_without_new_rounds(
    dirs: DaemonDirs,
) -> None:
    hung = str(dirs.root / "hung-once")
    answer = {"do": "say", "text": "WINNER-{1}: 2", "pattern": r"WINNER-([0-9a-f]+): SLOT"}
    scenarios = {
        "alpha": {"prompts": [[say("a1")], [say("a2")]]},
        "beta": {"prompts": [[say("b1")], [say("b2")]]},
        "judge": {"prompts": [[{"do": "hang", "once": hung}, answer]]},
    }
    write_config(dirs, scenarios)
    repo = make_repo(dirs.root / "repo")
    params = {
        "agents": ["alpha", "beta"],
        "mode": "debate",
        "rounds": 2,
        "judge": "agent",
        "judge_agent": "judge",
        "merge": "manual",
    }
    async with in_process_daemon(dirs) as daemon, Client.connect(daemon.socket) as client:
        project = await client.call("project.add", {"path": str(repo), "name": "demo"})
        run = await client.call("run.create", {"project": project["id"], "task": "t", **params})
        await until(client, run["id"], lambda r: r["status"] == "judging")
        await until(client, run["id"], lambda r: (dirs.root / "hung-once").exists())
    async with in_process_daemon(dirs) as daemon, Client.connect(daemon.socket) as client:
        assert (await client.call("run.get", {"run": run["id"]}))["status"] == "interrupted"
        await client.call("run.resume", {"run": run["id"]})
        done = await until(client, run["id"], lambda r: r["status"] in ("decided", "completed"))
        assert done["winner"] == 2
        assert done["decision"]["by"] == "agent"
        assert len(prompts_of(dirs, "alpha")) == len(prompts_of(dirs, "beta")) == 2
        events = (await client.call("run.events", {"run": run["id"], "limit": 1000}))["events"]
        kinds = [e["kind"] for e in events]
        assert kinds.count("round_started") == kinds.count("round_ended") == 2
        first, second = (e["data"] for e in events if e["kind"] == "judge_started")
        branches = []
        for started in (first, second):
            got = await client.call("session.get", {"session": started["session_id"]})
            branches.append(got["workspace"]["branch"].rsplit("/", 1)[1])
        assert branches == ["judge-judge", "judge2-judge"]
