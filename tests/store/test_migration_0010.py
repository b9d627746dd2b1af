"""Migration 0010 (runs: the runs table, its journal, sessions.run_id and slot) on a
database that holds sessions, events and usage from revision 0009: nothing is lost
(sessions is copied by the batch ALTER; its events must not go with it), the new
columns start empty, and the daemon that migrated it lists those sessions and
makes runs. Downgrading to 0009 keeps the sessions and their events too."""

from __future__ import annotations

import pytest

from mimird.ids import IdGenerator
from tests.store.test_storage import (
    downgrade,
    event_rows,
    insert_old_project,
    migrated,
    search_objects,
)
from tests.support.helpers import DaemonDirs, TrioClient, in_process_daemon

pytestmark = pytest.mark.timeout(60)

NOW = "2026-01-01T00:00:00.000000Z"


def _fill_0009(dirs: DaemonDirs) -> list[str]:
    session_ids = [IdGenerator().new() for _ in range(2)]
    with migrated(dirs.database, "0009") as engine:
        project_id = insert_old_project(engine, "old", str(dirs.root / "old"))
        with engine.begin() as conn:
            for session_id in session_ids:
                conn.exec_driver_sql(
                    "INSERT INTO sessions (id, project_id, title, status, created_at, "
                    "updated_at, last_seq, workspace_kind, workspace_path, active_s) "
                    "VALUES (?, ?, 'old work', 'stopped', ?, ?, 1, 'in_place', ?, 2.5)",
                    (session_id, project_id, NOW, NOW, str(dirs.root / "old")),
                )
                conn.exec_driver_sql(
                    "INSERT INTO events (session_id, seq, kind, data, created_at) "
                    'VALUES (?, 1, \'status_changed\', \'{"from":"idle","to":"x"}\', ?)',
                    (session_id, NOW),
                )
                conn.exec_driver_sql(
                    "INSERT INTO turn_usage (session_id, project_id, day, total_tokens, "
                    "cost_usd, created_at) VALUES (?, ?, '2026-01-01', 100, 0.5, ?)",
                    (session_id, project_id, NOW),
                )
    return session_ids


async def test_upgrading_from_0009_keeps_sessions_events_and_usage(dirs: DaemonDirs) -> None:
    session_ids = _fill_0009(dirs)
    with migrated(dirs.database, "0009") as engine:
        events_before = event_rows(engine)
        search_before = search_objects(engine)
    async with in_process_daemon(dirs) as daemon, TrioClient.connect(daemon.socket) as client:
        listed = (await client.call("session.list", {}))["sessions"]
        assert sorted(s["id"] for s in listed) == sorted(session_ids)
        shown = await client.call("session.get", {"session": session_ids[0]})
        assert (shown["active_s"], shown["usage"]["total_tokens"]) == (2.5, 100)
        assert (await client.call("run.list", {}))["runs"] == []
    with migrated(dirs.database) as engine:
        assert event_rows(engine) == events_before
        assert search_objects(engine) == search_before
        with engine.connect() as conn:
            members = conn.exec_driver_sql("SELECT run_id, slot FROM sessions").all()
            conn.rollback()
        assert set(members) == {(None, None)}


def test_downgrading_to_0009_keeps_sessions_and_events(dirs: DaemonDirs) -> None:
    session_ids = _fill_0009(dirs)
    with migrated(dirs.database) as engine:
        events_before = event_rows(engine)
        downgrade(engine, "0009")
        assert event_rows(engine) == events_before
        with engine.connect() as conn:
            found = conn.exec_driver_sql("SELECT id FROM sessions ORDER BY id").scalars().all()
            tables = conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'run%'"
            ).all()
            conn.rollback()
        assert found == sorted(session_ids)
        assert tables == []
