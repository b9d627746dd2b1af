"""Migration 0008 (``turn_usage``): a database at 0007 holding sessions and events
is upgraded without losing a row, and its sessions then count usage from zero."""

from __future__ import annotations

import sqlalchemy as sa

from mimird.sessions import usage
from mimird.wire.events import TurnEnded
from mimird.wire.usage import Usage
from tests.store.test_storage import (
    event_rows,
    insert_0003_events,
    insert_old_project,
    migrated,
    upgrade,
)
from tests.support.helpers import DaemonDirs


def session_rows(engine: sa.Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        rows = [tuple(row) for row in conn.exec_driver_sql("SELECT * FROM sessions ORDER BY id")]
        conn.rollback()
    return rows


def test_upgrade_from_0007_keeps_sessions_and_events_and_counts_from_zero(
    dirs: DaemonDirs,
) -> None:
    with migrated(dirs.database, "0007") as engine:
        project_id = insert_old_project(engine, "legacy", str(dirs.root / "legacy"))
        events_before = insert_0003_events(engine, project_id, 3)
        sessions_before = session_rows(engine)
        session_id = str(sessions_before[0][0])
        upgrade(engine, "0008")
        assert event_rows(engine) == events_before
        assert session_rows(engine) == sessions_before
        upgrade(engine, "head")  # what today's code reads and writes
        with engine.begin() as conn:
            assert usage.of_session(conn, session_id) == Usage()
            assert usage.of_project(conn, project_id) == Usage()
            ended = TurnEnded(stop_reason="end_turn", usage=Usage(total_tokens=42, turns=1))
            seq = usage.turn_ended(conn, session_id, ended, 0.5)
            assert seq == 4  # after the old events
            assert usage.of_session(conn, session_id).total_tokens == 42
            assert usage.of_day(conn).turns == 1
            assert usage.last_reported_cost(conn, session_id) == 0.5
