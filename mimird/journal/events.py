"""Stored events: appending them inside a write transaction, and reading them back.

Plain synchronous functions that take a connection (the store runs them in its
threads). :func:`append` journals one event inside the caller's transaction (a
status change and its event commit together); :func:`append_batch` writes what
the :class:`~mimird.journal.writer.Journal`'s writer collected. Either way each
event is recorded on the write connection (``conn.info``), and
:class:`~mimird.store.Store` hands the list to the journal's ``publish`` after
the commit, so subscribers see only committed events, in commit order. Stored
events are read back as the JSON text that is in the database, never decoded
and encoded again.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import msgspec
import sqlalchemy as sa
import structlog

from mimird import readable
from mimird.journal import search
from mimird.store.database import LARGE_VALUE, after_commit, insert_releasing
from mimird.store.schema import events, sessions
from mimird.timeutil import utc_now
from mimird.wire.events import EventData
from mimird.wire.types import Event

log = structlog.get_logger("mimird.journal")

_ENCODER = msgspec.json.Encoder()


@dataclass(slots=True)
class Committed:
    """One stored event: what a subscriber receives."""

    id: int
    session_id: str
    seq: int
    kind: str
    #: The event's data as the JSON text stored in the database.
    data: str
    created_at: str
    _wire: bytes | None = field(default=None, repr=False)

    def wire(self) -> bytes:
        """The event as a JSON object (data inline, not re-encoded); computed once."""
        if self._wire is None:
            self._wire = _ENCODER.encode(
                Event(
                    id=self.id,
                    session_id=self.session_id,
                    seq=self.seq,
                    kind=self.kind,
                    data=msgspec.Raw(self.data.encode()),
                    created_at=self.created_at,
                )
            )
        return self._wire

    def decoded(self) -> dict[str, Any]:
        data: dict[str, Any] = msgspec.json.decode(self.data)
        return data


def _pending(conn: sa.Connection) -> list[Committed]:
    pending: list[Committed] = after_commit(conn)
    return pending


@dataclass(frozen=True, slots=True)
class Verbatim:
    """An event whose data is what an agent sent, kept as it came: one of
    :data:`~mimird.wire.events.VERBATIM_KINDS` (no struct may drop a field of it)."""

    kind: str
    data: Any


#: What producers journal: one of Mimir's typed events (:mod:`mimird.wire.events`),
#: or what an agent sent, verbatim.
Fact: TypeAlias = EventData | Verbatim


def kind_and_data(fact: Fact) -> tuple[str, Any]:
    """The kind a fact is stored under, and its data (a struct the encoder takes as it is)."""
    if isinstance(fact, Verbatim):
        return fact.kind, fact.data
    return fact.KIND, fact


def append(conn: sa.Connection, session_id: str, fact: Fact, *, text: str | None = None) -> int:
    """Append one event; returns its seq. Call inside a write transaction.
    ``text``, when given, is indexed for search."""
    kind, data = kind_and_data(fact)
    seq = conn.execute(
        sa.update(sessions)
        .where(sessions.c.id == session_id)
        .values(last_seq=sessions.c.last_seq + 1)
        .returning(sessions.c.last_seq)
    ).scalar_one()
    encoded = readable.encode(_ENCODER, data).decode()
    created_at = utc_now()
    event_id = conn.execute(
        sa.insert(events)
        .values(session_id=session_id, seq=seq, kind=kind, data=encoded, created_at=created_at)
        .returning(events.c.id)
    ).scalar_one()
    if text:
        search.index(conn, [(event_id, text)])
    _pending(conn).append(Committed(event_id, session_id, int(seq), kind, encoded, created_at))
    return int(seq)


@dataclass(slots=True)
class Pending:
    """An event handed to the writer task."""

    session_id: str
    kind: str
    data: Any
    #: Text to index for search, if any.
    text: str | None = None


#: Rows per INSERT statement: one statement binds 5 values per row, and 200 rows
#: stay under SQLite's oldest limit on bound values (999).
_ROWS_PER_INSERT: Final = 200


_INSERT_COLUMNS: Final = ("session_id", "seq", "kind", "data", "created_at")


@functools.cache
def _insert(rows: int) -> str:
    """A multi-row INSERT: one statement per chunk instead of one per row (with
    ``executemany`` the writer thread gives up and retakes the GIL on every row,
    which the busy trio thread makes expensive)."""
    values = ", ".join(["(?, ?, ?, ?, ?)"] * rows)
    return f"INSERT INTO events ({', '.join(_INSERT_COLUMNS)}) VALUES {values}"


def append_batch(conn: sa.Connection, batch: Sequence[Pending]) -> int:
    """Append a batch in the caller's transaction; returns how many were stored.
    Events of a session that no longer exists are dropped (and logged)."""
    counts: dict[str, int] = {}
    for item in batch:
        counts[item.session_id] = counts.get(item.session_id, 0) + 1
    next_seq: dict[str, int] = {}
    for session_id, count in counts.items():
        last = conn.execute(
            sa.update(sessions)
            .where(sessions.c.id == session_id)
            .values(last_seq=sessions.c.last_seq + count)
            .returning(sessions.c.last_seq)
        ).scalar_one_or_none()
        if last is None:
            log.warning("events_dropped_for_missing_session", session_id=session_id, count=count)
            continue
        next_seq[session_id] = int(last) - count + 1
    created_at = utc_now()
    rows: list[tuple[str, int, str, str, str]] = []
    texts: list[tuple[int, str]] = []
    kept: list[tuple[Pending, str]] = []
    for item in batch:
        seq = next_seq.get(item.session_id)
        if seq is None:
            continue
        next_seq[item.session_id] = seq + 1
        encoded = readable.encode(_ENCODER, item.data).decode()
        rows.append((item.session_id, seq, item.kind, encoded, created_at))
        kept.append((item, encoded))
    if not rows:
        return 0
    driver = conn.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    try:
        ids = _insert_rows(cursor, rows)
    finally:
        cursor.close()
    pending = _pending(conn)
    for event_id, (item, encoded), row in zip(ids, kept, rows, strict=True):
        if item.text:
            texts.append((event_id, item.text))
        pending.append(Committed(event_id, row[0], row[1], row[2], encoded, created_at))
    if texts:
        search.index(conn, texts)
    return len(rows)


def _insert_rows(cursor: Any, rows: list[tuple[str, int, str, str, str]]) -> list[int]:
    """Insert the rows in order; their ids. Small rows go up to
    :data:`_ROWS_PER_INSERT` per statement; a row whose data is large (an agent's
    whole message) goes alone through :func:`insert_releasing`, so that no cached
    statement keeps its text after the batch."""
    ids: list[int] = []
    small: list[tuple[str, int, str, str, str]] = []

    def insert_small() -> None:
        for start in range(0, len(small), _ROWS_PER_INSERT):
            chunk = small[start : start + _ROWS_PER_INSERT]
            cursor.execute(_insert(len(chunk)), [value for row in chunk for value in row])
            # One writer and no concurrent inserts: the rowids of a statement are
            # consecutive, ending at last_insert_rowid().
            last_id = _last_id(cursor)
            ids.extend(range(last_id - len(chunk) + 1, last_id + 1))
        small.clear()

    for row in rows:
        if len(row[3]) < LARGE_VALUE:
            small.append(row)
            continue
        insert_small()
        insert_releasing(cursor, "events", _INSERT_COLUMNS, row)
        ids.append(_last_id(cursor))
    insert_small()
    return ids


def _last_id(cursor: Any) -> int:
    return int(cursor.execute("SELECT last_insert_rowid()").fetchone()[0])


_COLUMNS: Final = "id, session_id, seq, kind, data, created_at"


def _fetch(conn: sa.Connection, sql: str, args: tuple[Any, ...]) -> list[Committed]:
    driver = conn.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    try:
        return [Committed(*row) for row in cursor.execute(sql, args)]
    finally:
        cursor.close()


def page_committed(
    conn: sa.Connection, session_id: str | None, *, after: int, limit: int
) -> list[Committed]:
    """Stored events after a cursor: ``seq`` within a session, the global ``id`` otherwise."""
    if session_id is not None:
        return page(conn, session_id, after_seq=after, limit=limit)
    return _fetch(
        conn, f"SELECT {_COLUMNS} FROM events WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
    )


def head(conn: sa.Connection, session_id: str | None) -> int:
    """The cursor of the newest stored event (0 if none)."""
    if session_id is not None:
        value = conn.execute(
            sa.select(sessions.c.last_seq).where(sessions.c.id == session_id)
        ).scalar_one_or_none()
    else:
        value = conn.execute(sa.select(sa.func.max(events.c.id))).scalar_one_or_none()
    return int(value or 0)


def seq_at(conn: sa.Connection, session_id: str, event_id: int) -> int:
    """The seq of the session's last event with a global id up to ``event_id``."""
    value = conn.execute(
        sa.select(sa.func.max(events.c.seq)).where(
            events.c.session_id == session_id, events.c.id <= event_id
        )
    ).scalar_one_or_none()
    return int(value or 0)


def page(
    conn: sa.Connection,
    session_id: str,
    *,
    after_seq: int,
    limit: int,
    before_seq: int | None = None,
    kind: str | None = None,
    newest_first: bool = False,
) -> list[Committed]:
    """A page of one session's events, filtered, in seq order (or newest first)."""
    sql = f"SELECT {_COLUMNS} FROM events WHERE session_id = ? AND seq > ?"
    args: list[Any] = [session_id, after_seq]
    if before_seq is not None:
        sql += " AND seq < ?"
        args.append(before_seq)
    if kind is not None:
        sql += " AND kind = ?"
        args.append(kind)
    sql += f" ORDER BY seq {'DESC' if newest_first else 'ASC'} LIMIT ?"
    args.append(limit)
    return _fetch(conn, sql, tuple(args))
