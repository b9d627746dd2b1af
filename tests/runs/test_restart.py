"""A daemon killed (SIGKILL) while a run works: the next start marks the run
interrupted (the members whose turn was cut short named), and run.resume prompts
those members again, not the ones that had finished; the run then goes on to
its decision. A graceful stop mid-run leaves it interrupted the same way."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mimird.runs.modes import RESUME_PREFIX
from tests.runs.world import write_config
from tests.support.helpers import (
    DaemonDirs,
    add_project_blocking,
    blocking_call,
    daemon_process,
    make_repo,
    rpc,
    start_daemon_process,
)

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def _until(check: Callable[[], Any], what: str, wait_s: float = 30) -> Any:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.05)
    raise AssertionError(f"never: {what}")


def _prompts(dirs: DaemonDirs, kind: str) -> list[str]:
    record = dirs.root / f"received-{kind}.jsonl"
    texts = []
    for line in record.read_text().splitlines():
        message = json.loads(line)
        if message.get("method") == "session/prompt":
            # Not the earlier conversation handed over to a restarted agent (its _meta).
            own = [b for b in message["params"]["prompt"] if "_meta" not in b]
            texts.append(own[0]["text"])
    return texts


def _scenarios(root: Path) -> dict[str, dict[str, Any]]:
    return {
        "quick": {"prompts": [[{"do": "disk_write", "path": "q.txt", "text": "q\n"}]]},
        "slow": {
            "prompts": [
                [
                    {"do": "disk_write", "path": "s.txt", "text": "half\n"},
                    {"do": "hang", "once": str(root / "hung-once")},
                    {"do": "disk_write", "path": "s.txt", "text": "whole\n"},
                ]
            ]
        },
    }


def _start_run(dirs: DaemonDirs) -> str:
    repo = make_repo(dirs.root / "repo")
    project = add_project_blocking(dirs, repo, name="demo")
    run = rpc(
        dirs,
        "run.create",
        {"project": project["id"], "task": "do it", "agents": ["quick", "slow"]},
    )
    run_id: str = run["id"]

    def slow_is_working() -> bool:
        got = rpc(dirs, "run.get", {"run": run_id})
        members = {m["slot"]: m for m in got["members"]}
        return bool(members[1]["outcome"] == "finished" and members[2]["status"] == "running")

    _until(slow_is_working, "member 1 finished and member 2 in its turn")
    return run_id


def _resume_and_decide(dirs: DaemonDirs, run_id: str, status_before: str) -> None:
    run = rpc(dirs, "run.get", {"run": run_id})
    assert run["status"] == "interrupted"
    members = {m["slot"]: m for m in run["members"]}
    assert members[1]["outcome"] == "finished"
    assert members[2]["outcome"] == "interrupted"
    events = rpc(dirs, "run.events", {"run": run_id, "limit": 1000})["events"]
    [interrupted] = [e["data"] for e in events if e["kind"] == "run_interrupted"]
    assert interrupted == {"status": status_before, "slots": [2]}
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))

    resumed = rpc(dirs, "run.resume", {"run": run_id})
    # The answer is the run going on, not as it was before the call.
    assert resumed["status"] != "interrupted"
    decided = _until(
        lambda: (got := rpc(dirs, "run.get", {"run": run_id}))["status"] == "deciding" and got,
        "the resumed run waits for a pick",
    )
    members = {m["slot"]: m for m in decided["members"]}
    assert members[2]["outcome"] == "finished"
    assert members[2]["files_changed"] == 1
    assert _prompts(dirs, "quick") == ["do it"]
    first, again = _prompts(dirs, "slow")
    assert first == "do it"
    assert again == RESUME_PREFIX + "do it"
    again_answer = blocking_call(dirs.socket, "run.resume", {"run": run_id})
    assert again_answer["error"]["data"]["kind"] == "invalid_state"


def test_a_run_cut_short_by_sigkill_is_interrupted_and_resumes_its_unfinished_members(
    dirs: DaemonDirs,
) -> None:
    write_config(dirs, _scenarios(dirs.root))
    first = start_daemon_process(dirs)
    try:
        run_id = _start_run(dirs)
    finally:
        first.kill()  # SIGKILL: no chance to record anything
    with daemon_process(dirs):
        _resume_and_decide(dirs, run_id, "running")


def test_a_graceful_stop_mid_run_leaves_it_interrupted_too(dirs: DaemonDirs) -> None:
    write_config(dirs, _scenarios(dirs.root))
    with daemon_process(dirs):
        run_id = _start_run(dirs)
    with daemon_process(dirs):
        _resume_and_decide(dirs, run_id, "running")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


def test_a_check_left_running_by_a_killed_daemon_is_reaped_at_the_next_start(
    dirs: DaemonDirs,
) -> None:
    pidfile = dirs.root / "check.pid"
    write_config(dirs, {"quick": _scenarios(dirs.root)["quick"]})
    first = start_daemon_process(dirs)
    try:
        repo = make_repo(dirs.root / "repo")
        project = add_project_blocking(dirs, repo, name="demo")
        run = rpc(
            dirs,
            "run.create",
            {
                "project": project["id"],
                "task": "t",
                "agents": ["quick"],
                "check_command": f"sleep 60 & echo $! > {pidfile}; wait",
            },
        )
        _until(lambda: pidfile.exists() and pidfile.read_text().strip(), "the check runs")
        pid = int(pidfile.read_text())
        assert _alive(pid)
    finally:
        first.kill()
    assert _alive(pid), "the check's group outlives a SIGKILLed daemon (its own session)"
    try:
        with daemon_process(dirs):
            _until(lambda: not _alive(pid), "the leftover check is reaped")
            got = rpc(dirs, "run.get", {"run": run["id"]})
            assert got["status"] == "interrupted"
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
