"""session.list's page, read straight into wire structs, is exactly what the
sessions' records make of themselves: against a real SQLite file through the store."""

from __future__ import annotations

from dataclasses import replace

import pytest
import sqlalchemy as sa

from mimird.ids import IdGenerator
from mimird.sessions import records as sessions
from tests.journal.test_search import add_project, open_store
from tests.support.helpers import DaemonDirs

pytestmark = pytest.mark.timeout(60)

IDS = IdGenerator()

FILTERS = [
    sessions.ListFilter(),
    sessions.ListFilter(limit=3),
    sessions.ListFilter(statuses=("failed", "archived")),
    sessions.ListFilter(include_archived=True, include_deleted=True, limit=1000),
    sessions.ListFilter(text="log_in%"),
    sessions.ListFilter(agent="codex"),
    sessions.ListFilter(created_after="2000-01-01T00:00:00Z", updated_before="2999-01-01"),
]


@pytest.mark.parametrize("f", FILTERS, ids=lambda f: repr(f)[len("ListFilter") :][:60])
async def test_the_wire_page_is_the_rows_to_wire_with_the_same_cursor(
    dirs: DaemonDirs, f: sessions.ListFilter
) -> None:
    """Every field, masked env secrets and decoded agent state included, and the
    next cursor, for filters that select, hide, match text with LIKE's wildcards
    taken literally, and page."""
    async with open_store(dirs) as store:

        def setup(conn: sa.Connection) -> None:
            project_id = add_project(conn, "api")
            for n, status in enumerate(["created", "failed", "archived", "deleted", "stopped"] * 3):
                session_id = IDS.new()
                sessions.insert(
                    conn,
                    {
                        "id": session_id,
                        "project_id": project_id,
                        "title": f"log_in% {n}" if n % 4 == 0 else f"login {n}",
                        "task": "fix it",
                        "status": status,
                        "agent": "codex" if n % 2 else None,
                        "branch": f"b{n}",
                        "config": {
                            "model": "m",
                            "env": {"API_TOKEN": {"value": "s3cret", "secret": True}},
                        },
                    },
                )
                if n % 3 == 0:
                    sessions.update(conn, session_id, {"agent_state": {"pid": n, "caps": [1]}})

        await store.write(setup)
        wire, cursor = await store.read(sessions.list_wire_page, f)
        assert wire, "the filter selects something"
        # Each session as the record of the same id makes itself (SessionRow.to_wire).
        rows = await store.read(lambda conn: [sessions.find(conn, s.id) for s in wire])
        assert wire == [row.to_wire() for row in rows]
        longer, _ = await store.read(sessions.list_wire_page, replace(f, limit=f.limit + 1))
        assert longer[: len(wire)] == wire
        assert cursor == (wire[-1].id if len(longer) > len(wire) else None)
        assert all("s3cret" not in repr(s.config) for s in wire)
