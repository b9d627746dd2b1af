"""Memory given back: a long agent message stored and indexed leaves no copy in
SQLite's prepared statements, against a real SQLite file through the store."""

from __future__ import annotations

import _sqlite3
import ctypes
from typing import Final

import pytest
import sqlalchemy as sa

from mimird import journal, memory
from mimird.journal import search
from tests.journal.test_journal import stored
from tests.journal.test_search import add_project, add_session, fts_rowids, open_store
from tests.support.helpers import DaemonDirs

pytestmark = pytest.mark.timeout(60)

#: An agent's message of this many characters, made of words as real ones are.
MESSAGE_CHARS: Final = 16 * 1024 * 1024
WORDS: Final = "the quick brown fox jumps over a lazy dog "


def sqlite_memory_used() -> int:
    """Bytes SQLite's allocator holds in this process (every connection)."""
    library = ctypes.CDLL(_sqlite3.__file__)  # the SQLite the sqlite3 module uses
    library.sqlite3_memory_used.restype = ctypes.c_int64
    return int(library.sqlite3_memory_used())


async def test_a_long_message_is_stored_and_indexed_and_not_kept_by_sqlite(
    dirs: DaemonDirs,
) -> None:
    """A batch of chunks around one 16 MB message (as the writer gets them at the end
    of a turn): every row stored in order with the id it was published with, the
    message found by search, and SQLite holding far less than one copy afterwards
    (before, each statement it went through kept its text: one more copy per turn)."""
    message = (WORDS * (MESSAGE_CHARS // len(WORDS)))[:MESSAGE_CHARS] + " zanzibar"
    async with open_store(dirs) as store:

        def setup(conn: sa.Connection) -> str:
            return add_session(conn, add_project(conn, "api"))

        session_id = await store.write(setup)
        warm_up = [journal.Pending(session_id, "update", {"n": n}) for n in range(450)]
        await store.write(journal.append_batch, warm_up)
        before = sqlite_memory_used()

        batch = [journal.Pending(session_id, "update", {"n": n}) for n in range(250)]
        batch.append(journal.Pending(session_id, "message", {"text": message}, text=message))
        batch += [journal.Pending(session_id, "update", {"n": n}) for n in range(250, 450)]
        published: list[journal.Committed] = []
        store.on_commit = published.extend
        assert await store.write(journal.append_batch, batch) == len(batch)
        retained = sqlite_memory_used() - before

        rows = await store.read(stored)
        assert [(e.id, e.seq, e.kind, e.data) for e in published] == [
            (row[0], row[2], row[3], row[4]) for row in rows[len(warm_up) :]
        ]
        assert [row[2] for row in rows] == list(range(1, len(warm_up) + len(batch) + 1))
        message_id = published[250].id
        assert published[250].decoded() == {"text": message}
        assert await store.read(fts_rowids) == [message_id], "the scratch row is gone"
        hits = await store.read(search.search, query="zanzibar", limit=5)
        assert [hit.event_id for hit in hits] == [message_id]
        assert retained < MESSAGE_CHARS // 4, f"SQLite kept {retained:,} bytes"


def test_trim_and_configure_are_harmless_to_call_again() -> None:
    memory.configure()
    memory.trim()
    memory.trim()
