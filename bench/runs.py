"""What a run costs over the same agents working as independent sessions, in one run.

Run as ``.venv/bin/python bench/runs.py [MEMBERS] [UPDATES] [ROUNDS]`` (default 8
members, 1,000 updates each, 9 rounds), or ``make bench-runs``. An in-process mimird
with the scripted fake agent (tests/support/fake_acp_agent.py) in a small git
repository; each agent's turn sends UPDATES ``agent_message_chunk`` updates, then writes
a file of its own. Per round, in alternating order, each on a fresh daemon (its start
is not timed):

- **sessions**: MEMBERS ``session.create`` calls, each with the prompt (answered at once,
  the turn runs in the background), timed until the last of their ``turn_ended`` events
  reached a subscriber to every session;
- **made then prompted**: the shape of a run without the run: MEMBERS ``session.create``
  calls, then MEMBERS ``session.prompt`` calls at once, timed the same way;
- **run**: one ``run.create`` of MEMBERS members (no check command, the user decides), timed
  to the same point (the last member's ``turn_ended``), and, separately, until the run
  waits for its decision (``deciding``: every member's work committed onto its branch and
  its diff stats taken: what a run does beyond the sessions), seen in the run's journal
  (``run.subscribe``).

It prints each round's times and CPU (this process, the daemon's and the client's, and
its children: agents and git, from the daemon's start to its stop), and the run's ratio
to the sessions as the median of the rounds' own ratios (each run against the sessions
measured next to it, so that the drift of a shared machine hits both alike; min..max
beside it) and as the ratio of the medians.
The target (issue 13) is a run's overhead of at most 1.1x over independent sessions.
"""

from __future__ import annotations

import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mimird.log import configure_logging
from tests.runs.world import write_config
from tests.support.agents import Client
from tests.support.helpers import DaemonDirs, in_process_daemon, make_repo

ROUNDS = 9
WAIT_S = 300.0


def scenario(updates: int) -> dict[str, Any]:
    steps = [
        {"do": "chunks", "count": updates, "text": "word "},
        {"do": "disk_write", "path": "result.txt", "text": "done\n"},
    ]
    return {"prompts": [steps] * 3}


async def turns_ended(c: Client, sessions: set[str]) -> None:
    """Return once every session in ``sessions`` has journaled ``turn_ended``."""
    left = set(sessions)
    with trio.fail_after(WAIT_S):
        while left:
            event = await c.wait_for(
                lambda e: e["kind"] == "turn_ended" and e.get("session_id") in left, WAIT_S
            )
            left.discard(event["session_id"])


async def independent(c: Client, project: str, members: int) -> tuple[float, float]:
    began = time.perf_counter()
    ids = set()
    for _ in range(members):
        session = await c.call("session.create", {"project": project, "prompt": "go"})
        ids.add(session["id"])
    await turns_ended(c, ids)
    took = time.perf_counter() - began
    return took, took


async def made_then_prompted(c: Client, project: str, members: int) -> tuple[float, float]:
    """The shape of a run without the run: every session made first, then all
    prompted at once."""
    began = time.perf_counter()
    ids = [(await c.call("session.create", {"project": project}))["id"] for _ in range(members)]
    async with trio.open_nursery() as nursery:
        for session_id in ids:
            nursery.start_soon(c.call, "session.prompt", {"session": session_id, "text": "go"})
    await turns_ended(c, set(ids))
    took = time.perf_counter() - began
    return took, took


async def run(c: Client, project: str, members: int) -> tuple[float, float]:
    began = time.perf_counter()
    created = await c.call(
        "run.create", {"project": project, "task": "go", "agent": "m", "n": members}
    )
    # The run's own journal from its start (replayed, then live): no polling of run.get,
    # whose reads would compete with the run in this process.
    await c.call("run.subscribe", {"run": created["id"], "after": 0})
    await turns_ended(c, {m["session_id"] for m in created["members"]})
    turns = time.perf_counter() - began
    await c.wait_for(
        lambda e: e["kind"] == "run_status_changed" and e["data"]["to"] == "deciding", WAIT_S
    )
    return turns, time.perf_counter() - began


def _cpu_s() -> float:
    """CPU time of this process (daemon and bench client, every thread) and of its
    reaped children (agents, git)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


async def measure(
    how: Callable[[Client, str, int], Awaitable[tuple[float, float]]], members: int, updates: int
) -> tuple[float, float, float]:
    """(until every turn ended, until the whole, CPU from the daemon's start to its stop)."""
    with tempfile.TemporaryDirectory(prefix="mimir-bench-runs-") as tmp:
        dirs = DaemonDirs(Path(tmp))
        write_config(dirs, {"m": scenario(updates)})
        repo = make_repo(dirs.root / "repo")
        cpu = _cpu_s()
        async with in_process_daemon(dirs) as daemon, Client.connect(daemon.socket) as c:
            project = (await c.call("project.add", {"path": str(repo), "name": "bench"}))["id"]
            await c.call("subscribe", {})  # every session's events, to see the turns end
            turns, whole = await how(c, project, members)
        return turns, whole, _cpu_s() - cpu


async def main(members: int, updates: int, rounds: int) -> None:
    configure_logging("warning")
    found: dict[str, list[float]] = {
        name: []
        for name in ("sessions", "batched", "run", "run_deciding", "cpu_sessions", "cpu_run")
    }
    for n in range(rounds):
        order = [independent, made_then_prompted, run]
        for how in order if n % 2 == 0 else reversed(order):
            turns, whole, cpu = await measure(how, members, updates)
            if how is independent:
                found["sessions"].append(turns)
                found["cpu_sessions"].append(cpu)
            elif how is made_then_prompted:
                found["batched"].append(turns)
            else:
                found["run"].append(turns)
                found["run_deciding"].append(whole)
                found["cpu_run"].append(cpu)
        print(
            f"round {n + 1}: sessions {found['sessions'][-1]:.3f} s, made then prompted "
            f"{found['batched'][-1]:.3f} s, run {found['run'][-1]:.3f} s (deciding at "
            f"{found['run_deciding'][-1]:.3f} s); CPU sessions {found['cpu_sessions'][-1]:.3f} s, "
            f"run {found['cpu_run'][-1]:.3f} s",
            flush=True,
        )
    base = statistics.median(found["sessions"])
    batched = statistics.median(found["batched"])
    print(f"{members} members x {updates} updates, {rounds} rounds:")
    print(f"  independent sessions (each prompted as made), every turn ended: {base:.3f} s")
    print(
        f"  sessions made first, then prompted at once: {batched:.3f} s "
        f"({_paired(found['batched'], found['sessions'])})"
    )
    for name, label in (("run", "every turn ended"), ("run_deciding", "waiting for the decision")):
        value = statistics.median(found[name])
        print(
            f"  run, {label}: {value:.3f} s ({_paired(found[name], found['sessions'])} the "
            f"first; {_paired(found[name], found['batched'])} the second)"
        )

    extra = [r - b for r, b in zip(found["cpu_run"], found["cpu_sessions"], strict=True)]
    print(
        f"  CPU from the daemon's start to its stop (daemon, this client, agents, git): "
        f"sessions {statistics.median(found['cpu_sessions']):.3f} s, run "
        f"{statistics.median(found['cpu_run']):.3f} s "
        f"({_paired(found['cpu_run'], found['cpu_sessions'])}; "
        f"the run's extra, paired: median {statistics.median(extra):+.3f} s, rounds "
        f"{min(extra):+.3f}..{max(extra):+.3f})"
    )


def _paired(these: list[float], base: list[float]) -> str:
    """The median of the rounds' own ratios, their range, and the ratio of the medians."""
    ratios = [a / b for a, b in zip(these, base, strict=True)]
    return (
        f"{statistics.median(ratios):.2f}x, rounds {min(ratios):.2f}..{max(ratios):.2f}, "
        f"medians {statistics.median(these) / statistics.median(base):.2f}x"
    )


if __name__ == "__main__":
    members = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    updates = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else ROUNDS
    trio.run(main, members, updates, rounds)
