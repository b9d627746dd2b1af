"""``mimirctl export`` / ``mimirctl import``: a real daemon's projects, runs, sessions
and journals written as JSON Lines and restored into another real daemon; conflicts,
broken and hostile files, filters. The agent is the scripted fake ACP agent."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.support.agents import Client, agent_world
from tests.support.helpers import (
    DaemonDirs,
    InProcessDaemon,
    in_process_daemon,
    make_repo,
    short_tmpdir,
)

USAGE = {"totalTokens": 1500, "inputTokens": 1200, "outputTokens": 250, "thoughtTokens": 50}
TURN = [
    {"do": "chunks", "count": 3, "text": "zebrafish answer "},
    {"do": "tool_call"},
    {"do": "result", "value": {"usage": USAGE}},
]
RUN_TIMEOUT_S = 60


async def ctl(dirs: DaemonDirs, *args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(RUN_TIMEOUT_S):
        return await trio.run_process(
            [sys.executable, "-m", "mimirctl", *args],
            env=dirs.env(),
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def records_of(path: Path) -> list[dict[str, Any]]:
    return lines_of(path)[1:]


@contextlib.asynccontextmanager
async def other_daemon() -> AsyncIterator[tuple[DaemonDirs, InProcessDaemon]]:
    with short_tmpdir() as root:
        other = DaemonDirs(root)
        async with in_process_daemon(other) as daemon:
            yield other, daemon


async def stopped_session(c: Client, project: str, text: str) -> str:
    session = await c.call("session.create", {"project": project, "title": text})
    await c.call("session.prompt", {"session": session["id"], "text": text})
    await c.call("session.stop", {"session": session["id"]})
    return str(session["id"])


@dataclass
class Source:
    client: Client
    ids: list[str]
    run_id: str


@contextlib.asynccontextmanager
async def source(dirs: DaemonDirs) -> AsyncIterator[Source]:
    """A daemon with two stopped sessions (prompted: messages, a tool call, usage) and
    a competition of two members waiting for its pick, the members stopped."""
    async with (
        agent_world(dirs, {"prompts": [TURN]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        ids = [
            await stopped_session(c, world.project, "first zebrafish"),
            await stopped_session(c, world.project, "second okapi"),
        ]
        run = await c.call(
            "run.create", {"project": world.project, "task": "compete", "agent": "fake", "n": 2}
        )
        run = await c.until("run.get", {"run": run["id"]}, lambda r: r["status"] == "deciding")
        for member in run["members"]:
            await c.call("session.stop", {"session": member["session_id"]})
        yield Source(c, ids, run["id"])


@pytest.mark.slow
async def test_export_then_import_into_a_fresh_daemon_then_export_gives_the_same_records(
    dirs: DaemonDirs, tmp_path: Path
) -> None:
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    async with source(dirs) as src:
        ids, run_id = src.ids, src.run_id
        exported = await ctl(dirs, "export", "-o", str(first))
        assert exported.returncode == 0, exported.stderr
        async with other_daemon() as (other, daemon), Client.connect(daemon.socket) as oc:
            imported = await ctl(other, "import", str(first))
            assert imported.returncode == 0, imported.stderr
            again = await ctl(other, "export", "-o", str(second))
            assert again.returncode == 0, again.stderr
            hits = await oc.call("search", {"query": "zebrafish"})
            run = await oc.call("run.get", {"run": run_id})
            shown = await ctl(other, "log", ids[0])
    header, *records = lines_of(first)
    header2, *records2 = lines_of(second)
    # The same records, but that the worktrees on disk are the first daemon's: the
    # second takes none of them for its own (it did not make them).
    states = [
        (r["workspace_state"], r2["workspace_state"])
        for r, r2 in zip(records, records2, strict=True)
        if r["type"] == "session"
    ]
    assert states == [("ok", "foreign")] * 4
    assert [
        {**r2, "workspace_state": "ok"} if r2["type"] == "session" else r2 for r2 in records2
    ] == records
    assert {k: v for k, v in header.items() if k != "exported_at"} == {
        k: v for k, v in header2.items() if k != "exported_at"
    }
    assert header["format"] == "mimir-export"
    assert header["version"] == 1
    kinds = {r["type"] for r in records}
    assert kinds == {"project", "run", "run_event", "session", "event", "usage"}
    assert "imported: projects 1, runs 1, sessions 4" in imported.stdout.decode()
    # What the imported records are good for: search, run.get, the log.
    assert {hit["session_id"] for hit in hits["hits"]} >= {ids[0]}
    assert run["status"] == "deciding"
    assert [m["status"] for m in run["members"]] == ["stopped", "stopped"]
    assert "zebrafish answer" in shown.stdout.decode()


async def test_records_stream_in_an_order_an_import_can_follow(
    dirs: DaemonDirs, tmp_path: Path
) -> None:
    path = tmp_path / "out.jsonl"
    async with source(dirs):
        assert (await ctl(dirs, "export", "-o", str(path))).returncode == 0
    seen: set[str] = set()
    for record in records_of(path):
        kind = record["type"]
        if kind == "project":
            seen.add(record["id"])
        elif kind in ("run", "session"):
            assert record["project_id"] in seen
            if record.get("run_id"):
                assert record["run_id"] in seen
            seen.add(record["id"])
        elif kind == "run_event":
            assert record["run_id"] in seen
        else:
            assert record["session_id"] in seen


@pytest.mark.slow
async def test_importing_twice_reports_every_conflict_and_changes_nothing(
    dirs: DaemonDirs, tmp_path: Path
) -> None:
    path = tmp_path / "out.jsonl"
    async with source(dirs) as src:
        ids = src.ids
        assert (await ctl(dirs, "export", "-o", str(path))).returncode == 0
        async with other_daemon() as (other, daemon), Client.connect(daemon.socket) as oc:
            assert (await ctl(other, "import", str(path))).returncode == 0
            before = await oc.call("session.events", {"session": ids[0]})
            again = await ctl(other, "import", str(path), "--json")
            after = await oc.call("session.events", {"session": ids[0]})
            listed = await oc.call("session.list", {})
    assert again.returncode == 5, again.stderr  # already exists
    report = json.loads(again.stdout)
    assert report["sessions"] == report["runs"] == report["projects"] == report["events"] == 0
    assert report["conflicts_total"] == 1 + 1 + 4  # the project, the run, the sessions
    assert {c["type"] for c in report["conflicts"]} == {"project", "run", "session"}
    assert all("exists already" in c["reason"] for c in report["conflicts"])
    assert report["skipped"] > 0
    assert after == before
    assert len(listed["sessions"]) == 4


@pytest.mark.slow
async def test_a_truncated_file_imports_the_whole_sessions_before_the_cut_and_nothing_else(
    dirs: DaemonDirs, tmp_path: Path
) -> None:
    path, cut = tmp_path / "out.jsonl", tmp_path / "cut.jsonl"
    async with source(dirs) as src:
        ids = src.ids
        assert (await ctl(dirs, "export", "-o", str(path), "--project", "demo")).returncode == 0
    lines = path.read_text().splitlines(keepends=True)
    # Cut in the middle of the second session's journal, mid-line.
    second = next(i for i, line in enumerate(lines) if f'"id":"{ids[1]}"' in line)
    cut.write_text("".join(lines[: second + 3]) + lines[second + 3][:20])
    async with other_daemon() as (other, daemon), Client.connect(daemon.socket) as oc:
        result = await ctl(other, "import", str(cut))
        first = await oc.call("session.events", {"session": ids[0]})
        missing = await oc.error("session.get", {"session": ids[1]})
        status = await oc.call("daemon.status")
    assert result.returncode == 2, result.stderr
    assert f"cut.jsonl:{second + 4}: not JSON" in result.stderr.decode()
    assert len(first["events"]) > 3  # the first session, whole
    assert missing["data"]["kind"] == "not_found"
    assert status["counts"]["sessions"] == 1


def a_session(project_id: str, session_id: str, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": "session",
        "id": session_id,
        "project_id": project_id,
        "title": "t",
        "status": "stopped",
        "task": "",
        "agent": None,
        "config": {},
        "workspace_kind": "worktree",
        "workspace_path": "/nonexistent/mimir-import-test",
        "workspace_state": "ok",
        "branch": None,
        "base_ref": None,
        "base_commit": None,
        "snapshot_ref": None,
        "snapshot_commit": None,
        "failure": None,
        "last_seq": 0,
        "agent_state": None,
        "completed_at": None,
        "active_s": 0.0,
        "run_id": None,
        "slot": None,
        "created_at": "2026-01-02T03:04:05.000006Z",
        "updated_at": "2026-01-02T03:04:05.000006Z",
    }
    record.update(changes)
    return record


PROJECT_ID = "01kaaaaaaaaaaaaaaaaaaaaaaa"
SESSION_ID = "01kbbbbbbbbbbbbbbbbbbbbbbb"
HEADER = {"format": "mimir-export", "version": 1, "schema": "x", "exported_at": "now"}
PROJECT = {
    "type": "project",
    "id": PROJECT_ID,
    "name": "away",
    "path": "/nonexistent/mimir-import-project",
    "project_type": "unknown",
    "is_git": True,
    "description": "",
    "config": {},
    "archived": False,
    "created_at": "2026-01-02T03:04:05.000006Z",
    "updated_at": "2026-01-02T03:04:05.000006Z",
}


def an_event(seq: int, **changes: Any) -> dict[str, Any]:
    event = {
        "type": "event",
        "session_id": SESSION_ID,
        "seq": seq,
        "kind": "message",
        "data": {"role": "agent", "text": f"piece {seq}"},
        "created_at": "2026-01-02T03:04:05.000006Z",
    }
    event.update(changes)
    return event


HOSTILE = [
    pytest.param({"type": "bogus"}, "unknown record type 'bogus'", id="unknown-type"),
    pytest.param([1, 2], "a record is a JSON object", id="not-an-object"),
    pytest.param(an_event(2, session_id="../../etc"), "session_id", id="bad-id"),
    pytest.param({**an_event(2), "seq": -1}, "seq", id="negative-seq"),
    pytest.param(an_event(1), "seq 1 does not follow seq 1", id="repeated-seq"),
    pytest.param(an_event(2, data={"role": "agent", "text": 5}), "message event data", id="data"),
    pytest.param(an_event(2, kind="X; DROP"), "kind", id="bad-kind"),
    pytest.param(an_event(2, created_at="yesterday"), "created_at", id="bad-time"),
    pytest.param(an_event(2, extra=1), "unknown field", id="unknown-field"),
    pytest.param(an_event(2, text="x" * (9 << 20)), "text", id="too-long"),
    pytest.param(
        {**an_event(2), "session_id": "01kccccccccccccccccccccccc"},
        "does not follow its session's record",
        id="orphan-event",
    ),
    pytest.param(
        {"type": "usage", "session_id": SESSION_ID, "day": "today"}, "usage record", id="usage"
    ),
    pytest.param(
        a_session(PROJECT_ID, "01kccccccccccccccccccccccc", branch="--upload-pack=x"),
        "branch",
        id="option-as-branch",
    ),
    pytest.param(
        a_session(PROJECT_ID, "01kccccccccccccccccccccccc", branch="a..b"),
        "branch 'a..b'",
        id="bad-branch",
    ),
    pytest.param(
        a_session(PROJECT_ID, "01kccccccccccccccccccccccc", workspace_path="relative/dir"),
        "workspace_path",
        id="relative-workspace",
    ),
    pytest.param(
        a_session(PROJECT_ID, "01kccccccccccccccccccccccc", base_commit="HEAD~1"),
        "base_commit",
        id="commit-not-hex",
    ),
    pytest.param({**PROJECT, "id": "01kddddddddddddddddddddddd", "name": "-x"}, "-x", id="name"),
    pytest.param(
        a_session(PROJECT_ID, "01kccccccccccccccccccccccc", config={"token_budget": "lots"}),
        "session config: key 'token_budget'",
        id="bad-config",
    ),
]


@pytest.mark.parametrize(("bad", "says"), HOSTILE)
async def test_a_hostile_record_is_refused_with_its_line_and_its_session_is_not_imported(
    daemon: InProcessDaemon, bad: Any, says: str
) -> None:
    async with Client.connect(daemon.socket) as c:
        await c.call("import.begin", {"header": HEADER})
        records = [PROJECT, a_session(PROJECT_ID, SESSION_ID), an_event(1), bad]
        error = await c.error("import.records", {"records": records, "first_line": 2})
        missing = await c.error("session.get", {"session": SESSION_ID})
        over = await c.error("import.end", {})
        status = await c.call("daemon.status")
    assert error["code"] == -32602
    assert error["message"].startswith("line 5: "), error["message"]
    assert says in error["message"]
    assert missing["data"]["kind"] == "not_found"
    assert over["data"]["kind"] == "invalid_state"  # the import ended with the error
    assert status["counts"]["sessions"] == 0


async def test_a_bad_header_is_refused(daemon: InProcessDaemon) -> None:
    async with Client.connect(daemon.socket) as c:
        wrong = await c.error("import.begin", {"header": {"format": "other"}})
        newer = await c.error("import.begin", {"header": {**HEADER, "version": 2}})
    assert "line 1 is not the header" in wrong["message"]
    assert "version 2" in newer["message"]


async def test_a_connection_that_ends_mid_session_leaves_nothing_of_that_session(
    daemon: InProcessDaemon,
) -> None:
    async with Client.connect(daemon.socket) as c:
        await c.call("import.begin", {"header": HEADER})
        records = [PROJECT, a_session(PROJECT_ID, SESSION_ID), an_event(1), an_event(2)]
        await c.call("import.records", {"records": records})
    async with Client.connect(daemon.socket) as c:
        missing = await c.error("session.get", {"session": SESSION_ID})
        project = await c.call("project.get", {"project": PROJECT_ID})
    assert missing["data"]["kind"] == "not_found"
    assert project["name"] == "away"  # written before the session began


async def test_a_project_whose_path_is_not_here_is_imported_and_reported(
    daemon: InProcessDaemon,
) -> None:
    async with Client.connect(daemon.socket) as c:
        await c.call("import.begin", {"header": HEADER})
        running = a_session(PROJECT_ID, SESSION_ID, status="running", last_seq=5)
        await c.call("import.records", {"records": [PROJECT, running, an_event(1), an_event(2)]})
        report = await c.call("import.end", {})
        session = await c.call("session.get", {"session": SESSION_ID})
        refused = await c.error("session.prompt", {"session": SESSION_ID, "text": "hi"})
    assert report["missing_paths"] == [
        {"project_id": PROJECT_ID, "name": "away", "path": PROJECT["path"]}
    ]
    assert report["statuses_changed"] == 1
    assert session["status"] == "stopped"  # no agent runs for it here
    assert session["workspace"]["state"] == "missing"
    assert session["last_seq"] == 5
    assert refused["data"]["kind"] == "invalid_state"
    assert "missing" in refused["message"]


async def test_a_project_whose_name_is_taken_is_a_conflict_and_its_sessions_are_skipped(
    daemon: InProcessDaemon, tmp_path: Path
) -> None:
    async with Client.connect(daemon.socket) as c:
        here = await c.call("project.add", {"path": str(make_repo(tmp_path / "r")), "name": "away"})
        await c.call("import.begin", {"header": HEADER})
        records = [PROJECT, a_session(PROJECT_ID, SESSION_ID), an_event(1)]
        await c.call("import.records", {"records": records, "first_line": 2})
        report = await c.call("import.end", {})
        listed = await c.call("session.list", {})
    assert report["projects"] == report["sessions"] == 0
    assert [(x["line"], x["type"]) for x in report["conflicts"]] == [(2, "project"), (3, "session")]
    assert f"is project {here['id']}'s here" in report["conflicts"][0]["reason"]
    assert "its project" in report["conflicts"][1]["reason"]
    assert report["skipped"] == 1
    assert listed["sessions"] == []


async def test_import_reads_stdin(dirs: DaemonDirs, daemon: InProcessDaemon) -> None:
    lines = [HEADER, PROJECT, a_session(PROJECT_ID, SESSION_ID, last_seq=1), an_event(1)]
    with trio.fail_after(RUN_TIMEOUT_S):
        result = await trio.run_process(
            [sys.executable, "-m", "mimirctl", "import", "-"],
            env=dirs.env(),
            stdin="".join(json.dumps(line) + "\n" for line in lines).encode(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert "sessions 1 (events 1," in result.stdout.decode()


async def test_export_filters_by_session_project_and_time(dirs: DaemonDirs, tmp_path: Path) -> None:
    async with source(dirs) as src:
        c, ids, run_id = src.client, src.ids, src.run_id
        run = await c.call("run.get", {"run": run_id})
        member = run["members"][0]["session_id"]
        middle = (await c.call("session.get", {"session": ids[1]}))["updated_at"]
        outputs = {}
        for name, args in {
            "session": ("--session", ids[0]),
            "member": ("--session", member),
            "since": ("--since", middle),
            "project": ("--project", "demo"),
        }.items():
            path = tmp_path / f"{name}.jsonl"
            result = await ctl(dirs, "export", "-o", str(path), *args)
            assert result.returncode == 0, result.stderr
            outputs[name] = records_of(path)
        nowhere = await ctl(dirs, "export", "-o", str(tmp_path / "x.jsonl"), "--project", "nope")

    def ids_of(records: list[dict[str, Any]], kind: str) -> list[str]:
        return [r["id"] for r in records if r["type"] == kind]

    assert ids_of(outputs["session"], "session") == [ids[0]]
    assert ids_of(outputs["session"], "run") == []
    assert {r["session_id"] for r in outputs["session"] if r["type"] == "event"} == {ids[0]}
    assert ids_of(outputs["member"], "session") == [member]
    assert ids_of(outputs["member"], "run") == [run_id]  # the member's run comes with it
    assert ids[0] not in ids_of(outputs["since"], "session")
    assert ids[1] in ids_of(outputs["since"], "session")
    assert len(ids_of(outputs["project"], "session")) == 4
    assert nowhere.returncode == 4


async def test_export_refuses_a_terminal_and_an_existing_file(
    dirs: DaemonDirs, daemon: InProcessDaemon, tmp_path: Path
) -> None:
    existing = tmp_path / "there.jsonl"
    existing.write_text("keep\n")
    result = await ctl(dirs, "export", "-o", str(existing))
    assert result.returncode == 2
    assert "exists already" in result.stderr.decode()
    assert existing.read_text() == "keep\n"
    main, terminal = pty.openpty()
    try:
        with trio.fail_after(RUN_TIMEOUT_S):
            on_terminal = await trio.run_process(
                [sys.executable, "-m", "mimirctl", "export"],
                env=dirs.env(),
                stdin=subprocess.DEVNULL,
                stdout=terminal,
                capture_stderr=True,
                check=False,
            )
    finally:
        os.close(main)
        os.close(terminal)
    assert on_terminal.returncode == 2
    assert "redirect it to a file" in on_terminal.stderr.decode()


async def test_secret_env_values_leave_masked(dirs: DaemonDirs, tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    secret = {"value": "sk-verysecret-123456", "secret": True}
    async with (
        agent_world(dirs, {"prompts": [TURN]}) as world,
        Client.connect(world.daemon.socket) as c,
    ):
        await c.call(
            "project.update", {"project": world.project, "config": {"env": {"API_KEY": secret}}}
        )
        await c.call(
            "session.create",
            {"project": world.project, "config": {"env": {"TOKEN": secret}}},
        )
        assert (await ctl(dirs, "export", "-o", str(path))).returncode == 0
    text = path.read_text()
    assert "sk-verysecret" not in text
    records = records_of(path)
    assert records[0]["config"]["env"]["API_KEY"] == "***"
    assert records[1]["config"]["env"]["TOKEN"] == "***"


RUN_ID = "01keeeeeeeeeeeeeeeeeeeeeee"
A_RUN = {
    "type": "run",
    "id": RUN_ID,
    "project_id": PROJECT_ID,
    "title": "",
    "task": "compete",
    "mode": "competition",
    "status": "checking",
    "judge": "checks",
    "check_command": "make test",
    "config": {},
    "options": {"merge": "manual"},
    "base_ref": "main",
    "base_commit": None,
    "into": None,
    "round": 1,
    "winner_slot": None,
    "decision": None,
    "integration_phase": None,
    "integration_session_id": None,
    "member_results": {"1": {"outcome": "working", "check_group": 4242}},
    "failure": None,
    "last_seq": 0,
    "created_at": "2026-01-02T03:04:05.000006Z",
    "updated_at": "2026-01-02T03:04:05.000006Z",
    "finished_at": None,
}


async def test_a_run_at_work_comes_in_interrupted_without_this_machines_process_groups(
    dirs: DaemonDirs, daemon: InProcessDaemon
) -> None:
    member = a_session(PROJECT_ID, SESSION_ID, run_id=RUN_ID, slot=1, status="running")
    async with Client.connect(daemon.socket) as c:
        await c.call("import.begin", {"header": HEADER})
        await c.call("import.records", {"records": [PROJECT, A_RUN, member]})
        report = await c.call("import.end", {})
        run = await c.call("run.get", {"run": RUN_ID})
    with contextlib.closing(sqlite3.connect(dirs.database)) as db:
        [(stored,)] = db.execute("SELECT member_results FROM runs WHERE id = ?", (RUN_ID,))
    assert (report["runs"], report["sessions"]) == (1, 1)
    assert run["status"] == "interrupted"  # nothing works on it here: run.resume goes on
    assert run["members"][0]["status"] == "stopped"
    assert json.loads(stored) == {"1": {"outcome": "working"}}
