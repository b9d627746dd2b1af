"""A daemon whose config defines several fake agent kinds (one scenario each, see
tests/support/fake_acp_agent.py), a git project, and a client that collects
notifications: the world of the run tests."""

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

SUPERVISION = {
    "max_restarts": 0,
    "backoff_initial_s": 0.05,
    "backoff_max_s": 0.2,
    "start_timeout_s": 10,
    "cancel_grace_s": 1.0,
    "stop_grace_s": 0.5,
}


async def eventually(predicate: Callable[[], Any], wait_s: float = 10) -> None:
    """Wait until ``predicate()`` is true (checked every 20 ms, ``wait_s`` at most)."""
    with trio.fail_after(wait_s):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.02)


def writes(path: str, text: str) -> dict[str, Any]:
    """A scenario whose every prompt writes ``text`` to ``path`` in its workspace."""
    return {"prompts": [[{"do": "disk_write", "path": path, "text": text}]] * 5}


def write_config(
    dirs: DaemonDirs,
    scenarios: dict[str, dict[str, Any]],
    *,
    runs: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
    extra: str = "",
) -> None:
    """The config: ``[runs]``, ``[defaults]``, one ``[agents.<kind>]`` per scenario,
    then ``extra`` (TOML) as it is."""
    dirs.root.mkdir(parents=True, exist_ok=True)
    lines = ["[supervision]", *(f"{k} = {json.dumps(v)}" for k, v in SUPERVISION.items())]
    if runs:
        lines += ["", "[runs]", *(f"{k} = {json.dumps(v)}" for k, v in runs.items())]
    lines += ["", "[defaults]", f"agent = {json.dumps(next(iter(scenarios)))}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in (defaults or {}).items()]
    for kind, scenario in scenarios.items():
        path = dirs.root / f"scenario-{kind}.json"
        path.write_text(
            json.dumps({"record": str(dirs.root / f"received-{kind}.jsonl"), **scenario})
        )
        lines += [
            "",
            f"[agents.{kind}]",
            f"command = {json.dumps(sys.executable)}",
            f"args = [{json.dumps(str(FAKE_AGENT))}, {json.dumps(str(path))}]",
        ]
    dirs.config.write_text("\n".join(lines) + "\n" + extra)


@dataclass
class RunWorld:
    dirs: DaemonDirs
    daemon: InProcessDaemon
    client: Client
    repo: Path
    project: str

    async def create(self, **params: Any) -> dict[str, Any]:
        run: dict[str, Any] = await self.client.call(
            "run.create", {"project": self.project, "task": "make it better", **params}
        )
        return run

    async def get(self, run: dict[str, Any] | str) -> dict[str, Any]:
        run_id = run if isinstance(run, str) else run["id"]
        found: dict[str, Any] = await self.client.call("run.get", {"run": run_id})
        return found

    async def until_status(
        self, run: dict[str, Any], *statuses: str, wait_s: float = 30
    ) -> dict[str, Any]:
        """run.get until the run is in one of ``statuses``."""
        with trio.fail_after(wait_s):
            while True:
                found = await self.get(run)
                if found["status"] in statuses:
                    return found
                await trio.sleep(0.02)

    async def events(self, run: dict[str, Any]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (
            await self.client.call("run.events", {"run": run["id"], "limit": 1000})
        )["events"]
        return found

    async def kinds(self, run: dict[str, Any]) -> list[str]:
        return [event["kind"] for event in await self.events(run)]


@contextlib.asynccontextmanager
async def run_world(
    dirs: DaemonDirs,
    scenarios: dict[str, dict[str, Any]],
    *,
    runs: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
    repo_files: dict[str, str] | None = None,
    extra: str = "",
) -> AsyncIterator[RunWorld]:
    write_config(dirs, scenarios, runs=runs, defaults=defaults, extra=extra)
    repo = make_repo(dirs.root / "repo", repo_files)
    async with in_process_daemon(dirs) as daemon, Client.connect(daemon.socket) as client:
        project = await client.call("project.add", {"path": str(repo), "name": "demo"})
        yield RunWorld(dirs, daemon, client, repo, project["id"])
