"""``mimirctl run``: new (following the run's events until it waits for a pick),
show, ls, pick, events, cancel, rm, against a real mimird process and the
scripted fake agent."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.runs.world import write_config, writes
from tests.support.helpers import (
    DaemonDirs,
    DaemonProcess,
    add_project_blocking,
    daemon_process,
    make_repo,
    run_mimirctl,
)

pytestmark = pytest.mark.timeout(120)

SCENARIOS = {
    "alpha": writes("a.txt", "alpha\n"),
    "beta": writes("b.txt", "beta\nbeta\n"),
    "evil": {"prompts": [[{"do": "disk_write", "path": "e.txt", "text": "x\n"}, {"do": "crash"}]]},
}


@pytest.fixture
def mimird(dirs: DaemonDirs) -> Iterator[DaemonProcess]:
    write_config(dirs, SCENARIOS)
    repo = make_repo(dirs.root / "repo")
    with daemon_process(dirs) as daemon:
        add_project_blocking(dirs, repo, name="demo")
        yield daemon


def test_run_new_follows_the_run_until_it_waits_for_a_pick_then_pick_decides(
    dirs: DaemonDirs, mimird: DaemonProcess
) -> None:
    made = run_mimirctl(
        dirs,
        "run",
        "new",
        "demo",
        "--task",
        "add a file",
        "--agents",
        "alpha,beta",
        "--check",
        "test -f a.txt && echo ok-a",
    )
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    assert any("run created: competition, members 1 alpha, 2 beta" in line for line in lines)
    assert any("member 1 finished (end_turn): 1 file(s), +1 -0" in line for line in lines)
    assert any("check 1 passed (exit 0" in line and line.endswith(": ok-a") for line in lines)
    assert any("check 2 failed (exit 1" in line for line in lines)
    assert any("status checking -> deciding" in line for line in lines)
    assert "pick the winner: mimirctl run pick" in made.stdout
    run_id = lines[0].split()[1].rstrip(":")

    shown = run_mimirctl(dirs, "run", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    [status] = [line for line in shown.stdout.splitlines() if line.startswith("status:")]
    assert status.split() == ["status:", "deciding"]
    assert "SLOT" in shown.stdout
    assert "totals:" in shown.stdout

    listed = run_mimirctl(dirs, "run", "ls", "--json")
    assert [r["id"] for r in json.loads(listed.stdout)["runs"]] == [run_id]

    picked = run_mimirctl(dirs, "run", "pick", run_id[:10], "1", "--reason", "it passed")
    assert picked.returncode == 0, picked.stderr
    assert "slot 1 wins" in picked.stdout

    events = run_mimirctl(dirs, "run", "events", run_id, "--json")
    seqs = [json.loads(line)["seq"] for line in events.stdout.splitlines()]
    assert seqs == list(range(1, len(seqs) + 1))

    bad = run_mimirctl(dirs, "run", "pick", run_id, "7")
    assert bad.returncode != 0


def test_run_new_detached_then_cancel_and_rm(dirs: DaemonDirs, mimird: DaemonProcess) -> None:
    made = run_mimirctl(
        dirs,
        "run",
        "new",
        "demo",
        "--task",
        "t",
        "--agent",
        "alpha",
        "-n",
        "2",
        "--detach",
        "--json",
    )
    assert made.returncode == 0, made.stderr
    run = json.loads(made.stdout)
    assert [m["agent"] for m in run["members"]] == ["alpha", "alpha"]
    removed = run_mimirctl(dirs, "run", "rm", run["id"], "--force", "--json")
    assert removed.returncode == 0, removed.stderr
    assert sorted(json.loads(removed.stdout)["sessions"]) == sorted(
        m["session_id"] for m in run["members"]
    )
    gone = run_mimirctl(dirs, "run", "show", run["id"])
    assert gone.returncode == 4


def test_control_characters_an_agent_or_user_sends_are_shown_visibly(
    dirs: DaemonDirs, mimird: DaemonProcess
) -> None:
    made = run_mimirctl(
        dirs,
        "run",
        "new",
        "demo",
        "--task",
        "t",
        "--agents",
        "alpha",
        "--check",
        "printf 'done \\033[31mred\\n'",
    )
    assert made.returncode == 0, made.stderr
    assert "\x1b" not in made.stdout
    assert "done ^[[31mred" in made.stdout


def test_usage_errors_are_refused_before_the_daemon_is_asked(
    dirs: DaemonDirs, mimird: DaemonProcess
) -> None:
    both = run_mimirctl(dirs, "run", "new", "demo", "--task", "t", "--agents", "a", "-n", "2")
    assert both.returncode == 2
    neither = run_mimirctl(dirs, "run", "new", "demo", "--task", "t")
    assert neither.returncode == 2
    unknown = run_mimirctl(dirs, "run", "new", "demo", "--task", "t", "--agents", "nope")
    assert unknown.returncode == 2
    assert "unknown agent kind" in unknown.stderr
