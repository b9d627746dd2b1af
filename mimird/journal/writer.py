"""The journal: every event of every session, durable first, then fanned out.

Two ways in, one way out:

- :func:`append` journals one event inside the caller's write transaction (a
  status change and its event commit together);
- :class:`Journal` owns a writer task that takes events from producers (agent
  hosts) through a bounded channel and appends whatever has queued up in one
  transaction: a fast agent is not slowed by one commit per chunk, and a slow
  disk slows the agent (its stdout is not read) instead of filling memory.

Either way the event is recorded on the write connection (``conn.info``), and
:class:`~mimird.store.Store` hands the list to :meth:`Journal.publish` after
the commit and before the next write can start. So subscribers see only
committed events, and see them in commit order, which is ``id`` order and, per
session, ``seq`` order.

A subscriber is a cursor plus a bounded queue. Live events go into the queue;
a full queue is dropped and the subscriber catches up from the database, page
by page, until it reaches the live head (DESIGN.md, "The journal"). No producer
ever waits for a subscriber. Stored events are forwarded as the JSON text that
is in the database, never decoded and encoded again.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import sqlalchemy as sa
import structlog
import trio

from mimird import memory
from mimird.journal import search
from mimird.store.database import LARGE_VALUE, after_commit, insert_releasing
from mimird.store.schema import events, sessions
from mimird.timeutil import utc_now

log = structlog.get_logger("mimird.journal.writer")

_ENCODER = msgspec.json.Encoder()

#: Producers block (backpressure) when this many events wait to be written.
QUEUE_SIZE: Final = 2048
#: At most this many events per transaction.
BATCH_MAX: Final = 1024
#: A subscriber that falls this many events behind is caught up from the database.
SUBSCRIBER_QUEUE: Final = 2048
#: Events read per page while catching up.
CATCH_UP_PAGE: Final = 1000
#: How long the writer waits before retrying a batch the database refused.
RETRY_S: Final = 1.0
#: Once the journal is closing, a batch the database refuses this many times is given up.
CLOSING_RETRIES: Final = 5
#: Once this much event data (characters) was written, the writer gives freed memory
#: back to the system (:func:`mimird.memory.trim`) the next time it has nothing queued.
TRIM_AFTER: Final = 16 * 1024 * 1024


class _WireEvent(msgspec.Struct):
    id: int
    session_id: str
    seq: int
    kind: str
    data: msgspec.Raw
    created_at: str


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
                _WireEvent(
                    self.id,
                    self.session_id,
                    self.seq,
                    self.kind,
                    msgspec.Raw(self.data.encode()),
                    self.created_at,
                )
            )
        return self._wire

    def decoded(self) -> dict[str, Any]:
        data: dict[str, Any] = msgspec.json.decode(self.data)
        return data


def _pending(conn: sa.Connection) -> list[Committed]:
    pending: list[Committed] = after_commit(conn)
    return pending


def append(
    conn: sa.Connection,
    session_id: str,
    kind: str,
    data: dict[str, Any],
    *,
    text: str | None = None,
) -> int:
    """Append one event; returns its seq. Call inside a write transaction.
    ``text``, when given, is indexed for search."""
    seq = conn.execute(
        sa.update(sessions)
        .where(sessions.c.id == session_id)
        .values(last_seq=sessions.c.last_seq + 1)
        .returning(sessions.c.last_seq)
    ).scalar_one()
    encoded = _ENCODER.encode(data).decode()
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
        encoded = _ENCODER.encode(item.data).decode()
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


Sender = Callable[[list[bytes]], Awaitable[None]]


class Subscription:
    """One subscriber: a cursor, a bounded queue of live events, and the task
    that sends them (:meth:`run`)."""

    def __init__(
        self,
        journal: Journal,
        sub_id: int,
        session_id: str | None,
        cursor: int,
        *,
        queue_size: int,
    ) -> None:
        self.id = sub_id
        self.session_id = session_id
        #: seq of the last event sent (session subscriptions), else its global id.
        self.cursor = cursor
        self._journal = journal
        self._queue: deque[Committed] = deque()
        self._queue_size = queue_size
        #: False while catching up from the database: live events are not queued.
        self._live = False
        self._wake = trio.Event()
        self._closed = False
        self.caught_up = 0  # times it fell behind and was caught up (for tests, stats)
        self._prefix = b'{"jsonrpc":"2.0","method":"event","params":{"subscription":%d,"event":' % (
            sub_id
        )

    def close(self) -> None:
        """End :meth:`run` at its next step, never in the middle of a send (a
        cancelled send would leave half a line on the connection)."""
        self._closed = True
        self._wake.set()

    def _key(self, event: Committed) -> int:
        return event.seq if self.session_id is not None else event.id

    def offer(self, batch: list[Committed]) -> None:
        """Called by :meth:`Journal.publish`: never blocks, never fails."""
        if not self._live:
            return
        if len(self._queue) + len(batch) > self._queue_size:
            self._live = False
            self._queue.clear()
            self.caught_up += 1
        else:
            self._queue.extend(batch)
        self._wake.set()

    def _frames(self, batch: list[Committed]) -> list[bytes]:
        frames = []
        for event in batch:
            key = self._key(event)
            if key <= self.cursor:
                continue  # already sent (the seam between replay and live)
            frames.append(self._prefix + event.wire() + b"}}")
            self.cursor = key
        return frames

    async def _read_page(self) -> list[Committed]:
        found: list[Committed] = await self._journal.store.read(
            page_committed, self.session_id, after=self.cursor, limit=CATCH_UP_PAGE
        )
        return found

    async def run(self, send: Sender) -> None:
        """Send everything after the cursor, then live events, until closed."""
        while not self._closed:
            if not self._live:
                stored = await self._read_page()
                if stored:
                    await send(self._frames(stored))
                if len(stored) == CATCH_UP_PAGE:
                    continue
                # Go live first, then read once more: an event committed before this
                # point is in the database, one committed after it is in the queue;
                # the cursor drops the overlap.
                self._live = True
                self._queue.clear()
                stored = await self._read_page()
                if stored:
                    await send(self._frames(stored))
                if len(stored) == CATCH_UP_PAGE:
                    self._live = False
                    continue
            if not self._queue:
                self._wake = trio.Event()
                if not self._closed:
                    await self._wake.wait()
                continue
            batch = list(self._queue)
            self._queue.clear()
            if self.session_id is not None and batch[0].seq > self.cursor + 1:
                # A gap can only mean a missed publish: fetch it from the database.
                self._live = False
                continue
            frames = self._frames(batch)
            if frames:
                await send(frames)


class Journal:
    """Owner of appends from producers and of the subscribers. Open with
    ``async with Journal.open(store) as journal``."""

    def __init__(self, store: Any, *, queue_size: int = QUEUE_SIZE) -> None:
        self.store = store
        self._send, self._receive = trio.open_memory_channel[Pending | trio.Event](queue_size)
        self._by_session: dict[str, set[Subscription]] = {}
        self._all: set[Subscription] = set()
        self._sub_ids = itertools.count(1)
        self.written = 0
        #: Characters of event data published since the last :func:`memory.trim`.
        self._untrimmed = 0
        self._closing = False

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, store: Any, *, queue_size: int = QUEUE_SIZE) -> AsyncIterator[Journal]:
        journal = cls(store, queue_size=queue_size)
        store.on_commit = journal.publish
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(journal._write_loop)
                try:
                    yield journal
                finally:
                    # Producers are gone: write what they left, then end the writer.
                    journal._closing = True
                    journal._send.close()
        finally:
            store.on_commit = None

    # ---- producers ----------------------------------------------------------------

    async def submit(
        self, session_id: str, kind: str, data: Any, *, text: str | None = None
    ) -> None:
        """Queue an event for the writer; waits only when the writer is behind."""
        pending = Pending(session_id, kind, data, text)
        try:
            # The common case, without send's checkpoint (~10 µs per event).
            self._send.send_nowait(pending)
        except trio.WouldBlock:
            await self._send.send(pending)

    async def flush(self) -> None:
        """Return once every event submitted before this call is committed and published."""
        done = trio.Event()
        await self._send.send(done)
        await done.wait()

    async def _write_loop(self) -> None:
        # Shielded: the writer ends when its channel is closed, after the producers
        # are gone, never by cancellation. Parts that stop when the daemon is
        # cancelled (agent hosts journaling their exit, flushing) still need it.
        with trio.CancelScope(shield=True):
            await self._write_all()

    async def _write_all(self) -> None:
        async for first in self._receive:
            batch: list[Pending] = []
            markers: list[trio.Event] = []
            item: Pending | trio.Event = first
            while True:
                if isinstance(item, trio.Event):
                    markers.append(item)
                else:
                    batch.append(item)
                if len(batch) >= BATCH_MAX:
                    break
                try:
                    item = self._receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            if batch:
                await self._write(batch)
            for marker in markers:
                marker.set()
            del batch, markers, item, first  # no reference to the events past here
            if (
                self._untrimmed >= TRIM_AFTER
                and self._receive.statistics().current_buffer_used == 0
            ):
                # Idle after a lot of data (the end of a long message): give back the
                # memory its parts, copies and encodings held.
                self._untrimmed = 0
                await trio.to_thread.run_sync(memory.trim)

    async def _write(self, batch: list[Pending]) -> None:
        failures = 0
        while True:
            try:
                self.written += await self.store.write(append_batch, batch)
                return
            except Exception as exc:  # never drop events while running: retry
                failures += 1
                log.error("journal_write_failed", error=str(exc), events=len(batch))
                if self._closing and failures >= CLOSING_RETRIES:
                    # The daemon is stopping and the database keeps refusing: give
                    # up rather than never stop (the log says what was lost).
                    log.error("journal_events_lost", events=len(batch), error=str(exc))
                    return
                await trio.sleep(RETRY_S)

    # ---- subscribers ---------------------------------------------------------------

    def publish(self, batch: list[Committed]) -> None:
        """Hand committed events to the subscribers (the store calls this)."""
        self._untrimmed += sum(len(event.data) for event in batch)
        per_session: dict[str, list[Committed]] = {}
        if self._by_session:
            for event in batch:
                per_session.setdefault(event.session_id, []).append(event)
        for session_id, events_of in per_session.items():
            for sub in self._by_session.get(session_id, ()):
                sub.offer(events_of)
        for sub in self._all:
            sub.offer(batch)

    async def subscribe(
        self,
        session_id: str | None,
        *,
        after: int | None,
        queue_size: int = SUBSCRIBER_QUEUE,
    ) -> Subscription:
        """A new subscription from ``after`` (seq within the session, else the global
        id); ``None`` means from now on. Run it with :meth:`Subscription.run`."""
        if after is None:
            after = await self.store.read(head, session_id)
        sub = Subscription(self, next(self._sub_ids), session_id, after, queue_size=queue_size)
        if session_id is None:
            self._all.add(sub)
        else:
            self._by_session.setdefault(session_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub.session_id is None:
            self._all.discard(sub)
            return
        subs = self._by_session.get(sub.session_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_session[sub.session_id]

    @property
    def subscribers(self) -> int:
        return len(self._all) + sum(len(s) for s in self._by_session.values())
