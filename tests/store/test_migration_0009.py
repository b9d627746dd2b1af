"""Migration 0009 (sessions that finish: completed_at, active_s) on a database that
holds sessions and events from revision 0007: nothing is lost, the new columns start
empty, and the daemon that migrated it completes and lists those sessions."""

from __future__ import annotations

import pytest

from mimird.ids import IdGenerator
from tests.store.test_storage import event_rows, insert_old_project, migrated
from tests.support.helpers import DaemonDirs, TrioClient, in_process_daemon

pytestmark = pytest.mark.timeout(60)

NOW = "2026-01-01T00:00:00.000000Z"


async def test_upgrading_from_0007_keeps_sessions_and_events(dirs: DaemonDirs) -> None:
    session_ids = [IdGenerator().new() for _ in range(2)]
    with migrated(dirs.database, "0007") as engine:
        project_id = insert_old_project(engine, "old", str(dirs.root / "old"))
        with engine.begin() as conn:
            for session_id, status in zip(session_ids, ("stopped", "idle"), strict=True):
                conn.exec_driver_sql(
                    "INSERT INTO sessions (id, project_id, title, status, created_at, "
                    "updated_at, last_seq, workspace_kind, workspace_path) "
                    "VALUES (?, ?, 'old work', ?, ?, ?, 1, 'in_place', ?)",
                    (session_id, project_id, status, NOW, NOW, str(dirs.root / "old")),
                )
                conn.exec_driver_sql(
                    "INSERT INTO events (session_id, seq, kind, data, created_at) "
                    'VALUES (?, 1, \'status_changed\', \'{"from":"idle","to":"x"}\', ?)',
                    (session_id, NOW),
                )
        events_before = event_rows(engine)
    async with in_process_daemon(dirs) as daemon, TrioClient.connect(daemon.socket) as client:
        listed = (await client.call("session.list", {}))["sessions"]
        assert sorted(s["id"] for s in listed) == sorted(session_ids)
        assert {(s["completed_at"], s["active_s"]) for s in listed} == {(None, 0.0)}
        done = await client.call("session.complete", {"session": session_ids[0]})
        assert done["status"] == "completed"
        shown = await client.call("session.get", {"session": session_ids[0]})
        assert shown["wall_s"] > 300 * 86400, "from its creation in 2026-01 to now"
        by_completion = await client.call("session.list", {"sort": "completed_at"})
        assert [s["id"] for s in by_completion["sessions"]] == [session_ids[0]]
    with migrated(dirs.database) as engine:
        assert event_rows(engine)[: len(events_before)] == events_before
