"""``mimirctl import --from ait42``: ait42's WorktreeSession files (tests/data/ait42/)
become runs, member sessions and their journals in a real daemon."""

from __future__ import annotations

import json
from pathlib import Path

from tests.mimirctl.test_mimirctl_transfer import ctl
from tests.support.agents import Client
from tests.support.helpers import DaemonDirs, InProcessDaemon, make_repo

DATA = Path(__file__).parent.parent / "data" / "ait42"


async def test_a_competition_becomes_a_run_with_its_members_journals_and_winner(
    dirs: DaemonDirs, daemon: InProcessDaemon, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "signup")
    result = await ctl(
        dirs, "import", "--from", "ait42", str(DATA / "competition.json"), "--project", str(repo)
    )
    assert result.returncode == 0, result.stderr
    async with Client.connect(daemon.socket) as c:
        projects = (await c.call("project.list", {}))["projects"]
        runs = (await c.call("run.list", {}))["runs"]
        run = await c.call("run.get", {"run": runs[0]["id"]})
        run_events = (await c.call("run.events", {"run": run["id"]}))["events"]
        first = run["members"][0]["session_id"]
        session = await c.call("session.get", {"session": first})
        journal = (await c.call("session.events", {"session": first}))["events"]
        hits = (await c.call("search", {"query": "password field"}))["hits"]
        third = await c.call("session.get", {"session": run["members"][2]["session_id"]})
    assert "imported: projects 1, runs 1, sessions 3" in result.stdout.decode()
    assert [p["path"] for p in projects] == [str(repo)]
    assert (run["mode"], run["status"], run["winner"]) == ("competition", "completed", 1)
    assert run["decision"]["by"] == "user"
    assert run["task"].startswith("Add input validation")
    assert [m["agent"] for m in run["members"]] == ["claude", "codex", "gemini"]
    assert [m["status"] for m in run["members"]] == ["completed", "completed", "failed"]
    assert run["members"][0]["lines_added"] == 57
    # Fields Mimir has no column for are kept: the run's and the instance's.
    kept = run_events[0]["data"]["session"]
    assert kept["labels"] == ["frontend", "validation"]
    assert kept["evaluation"]["recommendedWinnerId"] == 1
    assert session["title"] == "frontend-developer #1"
    assert session["workspace"]["state"] == "missing"  # ait42's worktree is not here
    assert [e["kind"] for e in journal] == ["imported", "prompt", "message"]
    assert journal[0]["data"]["instance"]["testsPassed"] == 12
    assert journal[1]["data"]["content"][0]["text"] == "Please also cover the password field."
    assert journal[2]["data"]["role"] == "agent"
    assert journal[2]["created_at"] == "2025-11-06T10:06:30.000000Z"
    assert {h["session_id"] for h in hits} == {first}
    assert third["status"] == "failed"


async def test_an_ensemble_and_a_debate_map_their_statuses_and_integration(
    dirs: DaemonDirs, daemon: InProcessDaemon, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "guide")
    result = await ctl(
        dirs, "import", "--from", "ait42", str(DATA / "sessions.json"), "--project", str(repo)
    )
    assert result.returncode == 0, result.stderr
    async with Client.connect(daemon.socket) as c:
        runs = {r["mode"]: r for r in (await c.call("run.list", {}))["runs"]}
        ensemble = await c.call("run.get", {"run": runs["ensemble"]["id"]})
        debate = await c.call("run.get", {"run": runs["debate"]["id"]})
        integration = await c.call("session.get", {"session": ensemble["integration_session_id"]})
        slot1 = next(m for m in ensemble["members"] if m["slot"] == 1)
        chat = await c.call("session.events", {"session": slot1["session_id"]})
    assert ensemble["status"] == "interrupted"  # it was running: nothing runs it here
    assert ensemble["integration_phase"] == "in_progress"
    assert integration["status"] == "interrupted"
    assert debate["status"] == "interrupted"
    assert [m["status"] for m in debate["members"]] == ["stopped", "stopped"]
    assert debate["created_at"] == "2025-11-08T01:00:00.000000Z"  # +09:00 made UTC
    # A message for no instance goes to the first one.
    assert [e["kind"] for e in chat["events"]] == ["imported", "prompt"]


async def test_importing_the_same_ait42_file_twice_reports_conflicts(
    dirs: DaemonDirs, daemon: InProcessDaemon, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "signup")
    args = ("import", "--from", "ait42", str(DATA / "competition.json"), "--project", str(repo))
    assert (await ctl(dirs, *args)).returncode == 0
    again = await ctl(dirs, *args, "--json")
    assert again.returncode == 5
    report = json.loads(again.stdout)
    assert report["runs"] == report["sessions"] == report["projects"] == 0
    assert report["conflicts_total"] == 4  # the run and its three sessions
    async with Client.connect(daemon.socket) as c:
        assert len((await c.call("session.list", {}))["sessions"]) == 3


async def test_a_file_that_is_not_ait42s_says_what_is_wrong(
    dirs: DaemonDirs, daemon: InProcessDaemon, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "r")
    cases = {
        "not json": "not JSON",
        json.dumps({"id": "x", "type": "race", "instances": []}): "type is 'race'",
        json.dumps({"id": "x", "type": "debate", "task": "t", "status": "running"}): (
            "not an ait42 session file"
        ),
        json.dumps(
            {
                "id": "x",
                "type": "debate",
                "task": "t",
                "status": "running",
                "createdAt": "2025-01-01T00:00:00Z",
                "instances": 5,
            }
        ): "sessions[0].instances is missing or not a list",
        json.dumps([{"id": 5, "instances": []}]): "sessions[0].id",
    }
    for n, (text, says) in enumerate(cases.items()):
        path = tmp_path / f"bad{n}.json"
        path.write_text(text)
        result = await ctl(dirs, "import", "--from", "ait42", str(path), "--project", str(repo))
        assert result.returncode == 2, result.stderr
        assert says in result.stderr.decode()
    async with Client.connect(daemon.socket) as c:
        status = await c.call("daemon.status")
    assert status["counts"]["sessions"] == 0
