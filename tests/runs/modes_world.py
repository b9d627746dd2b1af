"""What the tests of a run's modes share: a real daemon whose config defines one
fake agent kind per scenario (tests/support/fake_acp_agent.py), so that each member,
the judge and the integration session of a run play their own script; and ways to
wait for a run and read its journal."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from tests.support.agents import FAKE_AGENT, Client
from tests.support.helpers import DaemonDirs, InProcessDaemon, in_process_daemon, make_repo

#: How long a run may take to get where a test waits for it.
RUN_WAIT_S = 60.0


@dataclass
class ModesWorld:
    daemon: InProcessDaemon
    client: Client
    repo: Path
    project: str
    #: Per agent kind, the file where its agents record every line they received.
    records: dict[str, Path]

    def received_prompts(self, kind: str) -> list[str]:
        """The text of every session/prompt the agents of ``kind`` received, in order."""
        path = self.records[kind]
        if not path.exists():
            return []
        texts = []
        for line in path.read_text().splitlines():
            message = json.loads(line)
            if message.get("method") == "session/prompt":
                blocks = message["params"]["prompt"]
                texts.append(" ".join(b.get("text", "") for b in blocks))
        return texts


def write_modes_config(
    dirs: DaemonDirs, scenarios: dict[str, dict[str, Any]], runs: dict[str, Any] | None = None
) -> dict[str, Path]:
    """A config with an ``[agents.<kind>]`` per scenario; returns the record files."""
    dirs.root.mkdir(parents=True, exist_ok=True)
    records: dict[str, Path] = {}
    lines = [
        "[supervision]",
        "max_restarts = 0",
        "start_timeout_s = 10",
        "cancel_grace_s = 1.0",
        "stop_grace_s = 0.5",
        "",
        "[defaults]",
        f"agent = {json.dumps(next(iter(scenarios)))}",
    ]
    if runs:
        lines += ["", "[runs]", *(f"{k} = {json.dumps(v)}" for k, v in runs.items())]
    for kind, scenario in scenarios.items():
        records[kind] = dirs.root / f"received-{kind}.jsonl"
        path = dirs.root / f"scenario-{kind}.json"
        path.write_text(json.dumps({"record": str(records[kind]), **scenario}))
        lines += [
            "",
            f"[agents.{kind}]",
            f"command = {json.dumps(sys.executable)}",
            f"args = [{json.dumps(str(FAKE_AGENT))}, {json.dumps(str(path))}]",
        ]
    dirs.config.write_text("\n".join(lines) + "\n")
    return records


@contextlib.asynccontextmanager
async def modes_world(
    dirs: DaemonDirs, scenarios: dict[str, dict[str, Any]], runs: dict[str, Any] | None = None
) -> AsyncIterator[ModesWorld]:
    records = write_modes_config(dirs, scenarios, runs)
    repo = make_repo(dirs.root / "repo")
    async with in_process_daemon(dirs) as daemon, Client.connect(daemon.socket) as client:
        project = await client.call("project.add", {"path": str(repo), "name": "demo"})
        yield ModesWorld(daemon, client, repo, project["id"], records)


def writes(path: str, text: str, *, say: str = "done") -> list[dict[str, Any]]:
    """A member's turn: write one file in its worktree, and say something."""
    return [
        {"do": "disk_write", "path": path, "text": text},
        {"do": "say", "text": say},
    ]


def judge_says(text: str) -> dict[str, Any]:
    """A judge scenario answering ``text``, in which ``{1}`` is its prompt's token."""
    return {"prompts": [[{"do": "say", "text": text, "pattern": r"WINNER-([0-9a-f]+): SLOT"}]]}


async def wait_run(
    client: Client, run_id: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """``run.get`` until ``done`` says yes (RUN_WAIT_S at most)."""
    run: dict[str, Any] = {}
    with trio.move_on_after(RUN_WAIT_S):
        while True:
            run = await client.call("run.get", {"run": run_id})
            if done(run):
                return run
            await trio.sleep(0.05)
    raise AssertionError(f"run {run_id} never got there: {json.dumps(run)[:3000]}")


async def run_events(client: Client, run_id: str, kind: str | None = None) -> list[dict[str, Any]]:
    """Every event of the run's journal (of one kind: their data), in order."""
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = await client.call("run.events", {"run": run_id, "after": after, "limit": 1000})
        if not page["events"]:
            break
        found += page["events"]
        after = page["events"][-1]["seq"]
    if kind is None:
        return found
    return [e["data"] for e in found if e["kind"] == kind]
