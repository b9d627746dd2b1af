"""The journal's writer against a real SQLite file: what it publishes is exactly
what it stored (ids, seqs, data), batches of any size, several sessions at once."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from mimird import journal
from mimird.store import schema
from tests.journal.test_search import add_project, add_session, fts_rowids, open_store
from tests.support.helpers import DaemonDirs

pytestmark = pytest.mark.timeout(60)


def stored(conn: sa.Connection) -> list[tuple[Any, ...]]:
    e = schema.events
    query = sa.select(e.c.id, e.c.session_id, e.c.seq, e.c.kind, e.c.data, e.c.created_at)
    return [tuple(row) for row in conn.execute(query.order_by(e.c.id))]


@pytest.mark.parametrize("count", [1, 199, 200, 201, 1024, 2500])
async def test_published_events_are_the_stored_rows(dirs: DaemonDirs, count: int) -> None:
    """Interleaved sessions, batches that span several INSERT statements: every
    published event has the id and seq of its row, ids ascend, seqs have no gap."""
    async with open_store(dirs) as store:

        def setup(conn: sa.Connection) -> list[str]:
            project_id = add_project(conn, "api")
            return [add_session(conn, project_id, f"s{n}") for n in range(3)]

        session_ids = await store.write(setup)
        published: list[journal.Committed] = []
        async with journal.Journal.open(store) as jr:
            publish = jr.publish

            def record(batch: list[journal.Committed]) -> None:
                published.extend(batch)
                publish(batch)

            store.on_commit = record
            for n in range(count):
                text = f"word{n}" if n % 7 == 0 else None
                await jr.submit(session_ids[n % 3], journal.Verbatim("update", {"n": n}), text=text)
            await jr.flush()

        rows = await store.read(stored)
        assert [
            (e.id, e.session_id, e.seq, e.kind, e.data, e.created_at) for e in published
        ] == rows
        assert [journal.Committed(*row).decoded()["n"] for row in rows] == list(range(count))
        for session_id in session_ids:
            seqs = [row[2] for row in rows if row[1] == session_id]
            assert seqs == list(range(1, len(seqs) + 1))
        indexed = [row[0] for row in rows if journal.Committed(*row).decoded()["n"] % 7 == 0]
        assert await store.read(fts_rowids) == indexed


async def test_events_of_a_missing_session_are_dropped_and_the_rest_kept(
    dirs: DaemonDirs,
) -> None:
    async with open_store(dirs) as store:

        def setup(conn: sa.Connection) -> str:
            return add_session(conn, add_project(conn, "api"))

        session_id = await store.write(setup)
        batch = [
            journal.Pending(session_id if n % 2 else "no-such-session", "update", {"n": n})
            for n in range(300)
        ]
        assert await store.write(journal.append_batch, batch) == 150
        rows = await store.read(stored)
        assert [journal.Committed(*row).decoded()["n"] for row in rows] == list(range(1, 300, 2))
        assert [row[2] for row in rows] == list(range(1, 151))


async def test_reads_of_stored_events_by_session_by_id_and_by_window(dirs: DaemonDirs) -> None:
    """What a subscription catches up from and ``session.events`` lists: one
    session's events by ``seq`` (never another's), every session's by global id,
    the newest cursor of each (0 when none), the seq a global id maps to, and a
    window between two seqs."""
    async with open_store(dirs) as store:

        def setup(conn: sa.Connection) -> tuple[str, str]:
            project = add_project(conn, "api")
            return add_session(conn, project), add_session(conn, project)

        a, b = await store.write(setup)
        assert await store.read(journal.head, a) == 0
        assert await store.read(journal.head, None) == 0
        gone = [journal.Pending("no-such-session", "update", {"n": 0})]
        assert await store.write(journal.append_batch, gone) == 0
        batch = [journal.Pending(a if n % 3 else b, "update", {"n": n}) for n in range(9)]
        assert await store.write(journal.append_batch, batch) == 9
        rows = await store.read(stored)
        ids = [row[0] for row in rows]
        assert await store.read(journal.head, a) == 6
        assert await store.read(journal.head, b) == 3
        assert await store.read(journal.head, None) == ids[-1]
        assert await store.read(journal.seq_at, a, ids[0]) == 0  # ids[0] is b's
        assert await store.read(journal.seq_at, a, ids[4]) == 3

        of_a = await store.read(journal.page_committed, a, after=2, limit=100)
        assert [(e.session_id, e.seq) for e in of_a] == [(a, 3), (a, 4), (a, 5), (a, 6)]
        every = await store.read(journal.page_committed, None, after=ids[2], limit=4)
        assert [e.id for e in every] == ids[3:7]
        assert {e.session_id for e in every} == {a, b}

        window = await store.read(journal.page, a, after_seq=1, before_seq=5, limit=100)
        assert [e.seq for e in window] == [2, 3, 4]
        newest = await store.read(
            journal.page, a, after_seq=0, before_seq=4, kind="update", newest_first=True, limit=2
        )
        assert [e.seq for e in newest] == [3, 2]
        assert await store.read(journal.page, a, after_seq=0, kind="other", limit=9) == []
