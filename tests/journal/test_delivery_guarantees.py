"""The journal's delivery guarantees (docs/api.md, "Delivery guarantees"), each
made to happen on purpose against a real SQLite file, the real writer and real
subscriptions: a transaction that rolls back, a COMMIT that has not happened
yet, a database that refuses writes (another connection holds its write lock),
a producer faster than the disk, and an event committed exactly at the seam
between a subscription's replay and its live stream."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

import msgspec
import pytest
import sqlalchemy as sa
import trio
import trio.testing

from mimird import journal
from mimird.config import DatabaseSection
from mimird.errors import NotFound, StorageError
from mimird.journal.run_events import append_run, decoded, page_run, run_head
from mimird.journal.subscriptions import CATCH_UP_PAGE
from mimird.journal.writer import BATCH_MAX, CLOSING_RETRIES
from mimird.store import Store, schema
from mimird.wire.run_events import RunCancelled, RunNote
from tests.journal.test_search import add_project, add_session
from tests.support.helpers import DaemonDirs

pytestmark = pytest.mark.timeout(60)

#: How long the test waits for what must happen soon (a deadline, not a measurement).
WAIT_S: Final = 20.0
#: The store's writer gives up waiting for the write lock after this long (then retries).
BUSY_TIMEOUT_MS: Final = 50
#: The data (``n``) of the event that tells a subscription is live.
PROBE: Final = -1


@contextlib.asynccontextmanager
async def open_store(dirs: DaemonDirs, **options: Any) -> AsyncIterator[Store]:
    async with Store.open(
        dirs.database,
        key=None,
        options=DatabaseSection(**options),
        backup_dir=dirs.state / "backups",
    ) as store:
        yield store


async def new_session(store: Store, project: str = "api") -> str:
    def setup(conn: sa.Connection) -> str:
        return add_session(conn, add_project(conn, project))

    return await store.write(setup)


def update(n: int) -> journal.Verbatim:
    return journal.Verbatim("update", {"n": n})


class Received:
    """What a subscription handed to its transport, as (id, seq, n) per event."""

    def __init__(self) -> None:
        self.events: list[tuple[int, int, int]] = []
        self._arrived = trio.Event()

    @staticmethod
    def encode(event: journal.Committed) -> bytes:
        return event.wire()

    async def send(self, frames: list[bytes]) -> None:
        for frame in frames:
            event = msgspec.json.decode(frame)
            self.events.append((event["id"], event["seq"], event["data"]["n"]))
        self._arrived.set()
        self._arrived = trio.Event()

    @property
    def seqs(self) -> list[int]:
        return [seq for _, seq, _ in self.events]

    async def at_least(self, count: int) -> None:
        with trio.fail_after(WAIT_S):
            while len(self.events) < count:
                await self._arrived.wait()

    async def live(self, jr: journal.Journal, session_id: str) -> None:
        """Return once the subscription is live: a probe event was sent to it.
        (Whether it came from the database or live, the subscription goes live
        before it sends anything after the probe.)"""
        await jr.submit(session_id, update(PROBE))
        await jr.flush()
        await self.at_least(1)


@contextlib.asynccontextmanager
async def running(
    jr: journal.Journal, sub: journal.Subscription, received: Received
) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sub.run, received.send, received.encode)
        try:
            yield
        finally:
            sub.close()
            jr.unsubscribe(sub)


def stored_events(dirs: DaemonDirs) -> list[tuple[int, int]]:
    """(seq, n) of every stored event, read by a connection of the test's own."""
    with contextlib.closing(sqlite3.connect(dirs.database)) as conn:
        rows = conn.execute("SELECT seq, data FROM events ORDER BY id").fetchall()
    return [(seq, msgspec.json.decode(data)["n"]) for seq, data in rows]


@contextlib.contextmanager
def engine_event(name: str, listener: Any) -> Iterator[None]:
    """``listener`` on every SQLAlchemy engine's ``name`` event, for the block."""
    sa.event.listen(sa.Engine, name, listener)
    try:
        yield
    finally:
        sa.event.remove(sa.Engine, name, listener)


# ---- committed before seen ----------------------------------------------------------------


async def test_events_of_a_transaction_that_rolls_back_are_never_seen(dirs: DaemonDirs) -> None:
    async with open_store(dirs) as store, journal.Journal.open(store) as jr:
        session_id = await new_session(store)
        sub = await jr.subscribe(session_id, after=0)
        received = Received()
        async with running(jr, sub, received):
            await received.live(jr, session_id)

            def append_then_fail(conn: sa.Connection) -> None:
                batch = [journal.Pending(session_id, "update", {"n": n}) for n in range(3)]
                assert journal.append_batch(conn, batch) == 3
                # A real refusal after the rows are in: (session, seq) is unique.
                conn.execute(
                    sa.insert(schema.events).values(
                        session_id=session_id,
                        seq=1,
                        kind="update",
                        data="{}",
                        created_at="2026-01-01T00:00:00.000000Z",
                    )
                )

            with pytest.raises(StorageError, match="UNIQUE constraint failed"):
                await store.write(append_then_fail)
            await trio.testing.wait_all_tasks_blocked()
            assert received.seqs == [1]
            assert stored_events(dirs) == [(1, PROBE)]
            assert await store.read(journal.head, session_id) == 1
            listed = await store.read(journal.page, session_id, after_seq=0, limit=100)
            assert [event.seq for event in listed] == [1]  # what session.events lists

            # The subscriber is still live: the next event, seq 2, reaches it.
            await jr.submit(session_id, update(7))
            await jr.flush()
            await received.at_least(2)
            await trio.testing.wait_all_tasks_blocked()
            assert [(seq, n) for _, seq, n in received.events] == [(1, PROBE), (2, 7)]
            assert stored_events(dirs) == [(1, PROBE), (2, 7)]


async def test_a_subscriber_sees_an_event_only_once_its_commit_is_durable(
    dirs: DaemonDirs,
) -> None:
    """Each time the writer is about to COMMIT, every task runs until it blocks: a
    subscriber offered the events before the COMMIT would send them now. Whenever
    the subscription hands an event to its transport, a connection of the test's
    own must find it in the file."""
    async with open_store(dirs) as store, journal.Journal.open(store) as jr:
        session_id = await new_session(store)
        sub = await jr.subscribe(session_id, after=0)
        received = Received()
        missing: list[int] = []

        async def send_checked(frames: list[bytes]) -> None:
            with contextlib.closing(sqlite3.connect(dirs.database)) as conn:
                for frame in frames:
                    event_id = msgspec.json.decode(frame)["id"]
                    if conn.execute("SELECT 1 FROM events WHERE id = ?", (event_id,)).fetchone():
                        continue
                    missing.append(event_id)
            await received.send(frames)

        def before_commit(conn: sa.Connection) -> None:
            trio.from_thread.run(trio.testing.wait_all_tasks_blocked)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sub.run, send_checked, received.encode)
            await received.live(jr, session_id)
            with engine_event("commit", before_commit):
                for n in range(5):
                    await jr.submit(session_id, update(n))
                    await jr.flush()
            await received.at_least(6)
            await trio.testing.wait_all_tasks_blocked()
            sub.close()
            jr.unsubscribe(sub)
        assert received.seqs == [1, 2, 3, 4, 5, 6]
        assert missing == []


# ---- durable first: retried, never dropped; batches; back-pressure -------------------------


@contextlib.contextmanager
def write_lock_held(dirs: DaemonDirs) -> Iterator[sqlite3.Connection]:
    """Another connection holds the database's write lock (BEGIN EXCLUSIVE) for the block."""
    conn = sqlite3.connect(dirs.database, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield conn
        conn.execute("ROLLBACK")
    finally:
        conn.close()


class Refusals:
    """Counts the store's writes refused because the database is locked."""

    def __init__(self) -> None:
        self.count = 0
        self._refused = trio.Event()

    def __call__(self, context: Any) -> None:
        # In the store's writer thread.
        if "database is locked" in str(context.original_exception):
            trio.from_thread.run_sync(self._count)

    def _count(self) -> None:
        self.count += 1
        self._refused.set()
        self._refused = trio.Event()

    async def at_least(self, count: int) -> None:
        with trio.fail_after(WAIT_S):
            while self.count < count:
                await self._refused.wait()


async def test_a_batch_the_database_refuses_is_retried_until_it_lands_in_order(
    dirs: DaemonDirs,
) -> None:
    """While another connection holds the write lock every write is refused; the
    writer keeps the batch it was writing, and what producers queued meanwhile,
    and writes them all, in order, once the lock is gone."""
    total = 50
    async with open_store(dirs, busy_timeout_ms=BUSY_TIMEOUT_MS) as store:
        session_id = await new_session(store)
        async with journal.Journal.open(store) as jr:
            sub = await jr.subscribe(session_id, after=0)
            received = Received()
            refusals = Refusals()
            async with running(jr, sub, received):
                with engine_event("handle_error", refusals), write_lock_held(dirs):
                    for n in range(total // 2):
                        await jr.submit(session_id, update(n))
                    await refusals.at_least(1)
                    for n in range(total // 2, total):
                        await jr.submit(session_id, update(n))
                    await refusals.at_least(2)  # the first batch, retried and refused again
                    assert stored_events(dirs) == []
                    assert received.events == []
                with trio.fail_after(WAIT_S):
                    await jr.flush()
                expected = [(n + 1, n) for n in range(total)]
                assert stored_events(dirs) == expected
                await received.at_least(total)
                await trio.testing.wait_all_tasks_blocked()
            assert [(seq, n) for _, seq, n in received.events] == expected


@pytest.mark.slow
async def test_a_running_journal_retries_past_the_tries_a_closing_one_gives_up_after(
    dirs: DaemonDirs,
) -> None:
    """Only a journal that is closing gives a refused batch up (after CLOSING_RETRIES
    tries): while it runs, the batch is retried for as long as it is refused (one
    try a second: this test waits that long)."""
    async with open_store(dirs, busy_timeout_ms=BUSY_TIMEOUT_MS) as store:
        session_id = await new_session(store)
        async with journal.Journal.open(store) as jr:
            refusals = Refusals()
            with engine_event("handle_error", refusals), write_lock_held(dirs):
                await jr.submit(session_id, update(0))
                await refusals.at_least(CLOSING_RETRIES + 1)
            with trio.fail_after(WAIT_S):
                await jr.flush()
            assert stored_events(dirs) == [(1, 0)]


@pytest.mark.slow
async def test_a_closing_journal_gives_up_a_batch_the_database_keeps_refusing(
    dirs: DaemonDirs,
) -> None:
    """Stopping must not wait forever on a database that refuses every write: the
    closing journal tries a batch CLOSING_RETRIES times, then gives it up (and logs
    what was lost); the deadline only stops the test if it hangs."""
    async with open_store(dirs, busy_timeout_ms=BUSY_TIMEOUT_MS) as store:
        session_id = await new_session(store)
        refusals = Refusals()
        with engine_event("handle_error", refusals), write_lock_held(dirs):
            with trio.fail_after(WAIT_S):
                async with journal.Journal.open(store) as jr:
                    await jr.submit(session_id, update(0))
                    await refusals.at_least(1)
            assert refusals.count == CLOSING_RETRIES
    assert stored_events(dirs) == []


async def test_events_queued_when_the_journal_is_cancelled_are_still_written(
    dirs: DaemonDirs,
) -> None:
    """The writer is shielded: cancelling the scope the journal runs in (the daemon
    stopping) ends the producers, not the writes of what they had queued."""
    async with open_store(dirs) as store:
        session_id = await new_session(store)
        with trio.CancelScope() as scope:
            async with journal.Journal.open(store) as jr:
                for n in range(3):
                    await jr.submit(session_id, update(n))
                scope.cancel()
                await trio.lowlevel.checkpoint()  # raises Cancelled: the producer ends
        assert scope.cancelled_caught
        assert stored_events(dirs) == [(1, 0), (2, 1), (3, 2)]


async def test_the_store_commits_events_after_the_journal_closed(dirs: DaemonDirs) -> None:
    """Once the journal is gone nothing is published, and a write that appends an
    event (a status change late in a shutdown) still commits."""
    async with open_store(dirs) as store:
        session_id = await new_session(store)
        async with journal.Journal.open(store):
            pass
        await store.write(journal.append, session_id, update(0))
        assert stored_events(dirs) == [(1, 0)]


async def new_run(store: Store, run_id: str = "r" * 26) -> str:
    """A run row (of a new project), for its journal."""

    def add_run(conn: sa.Connection) -> str:
        now = "2026-01-01T00:00:00.000000Z"
        values = {"id": run_id, "project_id": add_project(conn, f"runs-{run_id}"), "task": "t"}
        values |= {"mode": "competition", "status": "running", "judge": "user"}
        conn.execute(sa.insert(schema.runs).values(**values, created_at=now, updated_at=now))
        return run_id

    return await store.write(add_run)


async def test_the_store_commits_run_events_after_the_journal_closed(dirs: DaemonDirs) -> None:
    """The same for a run's journal: a run event appended once the journal is gone
    still commits."""
    async with open_store(dirs) as store:
        run_id = await new_run(store)
        async with journal.Journal.open(store):
            pass
        assert await store.write(append_run, run_id, RunNote(text="late")) == 1
        assert [e.seq for e in await store.read(page_run, run_id, after=0, limit=10)] == [1]


async def test_reads_of_a_runs_journal(dirs: DaemonDirs) -> None:
    """A run's events by seq and by kind, never another run's; its newest seq (0 when
    none); an event for a run that is gone is refused, naming the run."""
    async with open_store(dirs) as store:
        a, b = await new_run(store, "a" * 26), await new_run(store, "b" * 26)
        assert await store.read(run_head, a) == 0
        for n in range(3):
            await store.write(append_run, a, RunNote(text=f"a{n}"))
            await store.write(append_run, b, RunNote(text=f"b{n}"))
        await store.write(append_run, a, RunCancelled())
        assert await store.read(run_head, a) == 4
        assert await store.read(run_head, b) == 3
        events = await store.read(page_run, a, after=1, limit=10)
        assert [(e.run_id, e.seq) for e in events] == [(a, 2), (a, 3), (a, 4)]
        assert [decoded(e) for e in events[:1]] == [{"text": "a1"}]
        notes = await store.read(page_run, a, after=0, limit=10, kind="run_cancelled")
        assert [e.seq for e in notes] == [4]
        with pytest.raises(NotFound) as gone:
            await store.write(append_run, "c" * 26, RunNote(text="late"))
        assert gone.value.field == "run"


async def test_unsubscribed_run_subscriptions_are_forgotten_and_the_other_still_served(
    dirs: DaemonDirs,
) -> None:
    async with open_store(dirs) as store:
        run_id = await new_run(store)
        async with journal.Journal.open(store) as jr:
            kept = await jr.subscribe_run(run_id, after=0)
            gone = await jr.subscribe_run(run_id, after=0)
            assert jr.subscribers == 2
            jr.unsubscribe(gone)
            assert jr.subscribers == 1
            jr.unsubscribe(gone)  # twice: nothing more happens
            assert jr.subscribers == 1
            received: list[int] = []

            async def send(frames: list[bytes]) -> None:
                received.extend(msgspec.json.decode(f)["seq"] for f in frames)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(kept.run, send, lambda event: event.wire())
                await store.write(append_run, run_id, RunNote(text="one"))
                with trio.fail_after(WAIT_S):
                    while received != [1]:  # noqa: ASYNC110
                        await trio.sleep(0.01)
                kept.close()
            jr.unsubscribe(kept)
            assert jr.subscribers == 0


async def test_unsubscribed_subscriptions_are_forgotten_and_the_others_still_served(
    dirs: DaemonDirs,
) -> None:
    """Unsubscribing one of a session's subscriptions, or a subscription to every
    session, leaves nothing of it in the journal (no leak) and the session's other
    subscription still gets live events."""
    async with open_store(dirs) as store:
        session_id = await new_session(store)
        async with journal.Journal.open(store) as jr:
            kept = await jr.subscribe(session_id, after=0)
            gone = [await jr.subscribe(session_id, after=0), await jr.subscribe(None, after=0)]
            assert jr.subscribers == 3
            for sub in gone:
                jr.unsubscribe(sub)
            assert jr.subscribers == 1
            received = Received()
            async with running(jr, kept, received):
                await received.live(jr, session_id)
                await jr.submit(session_id, update(1))
                await received.at_least(2)
            assert jr.subscribers == 0
    assert [n for _, _, n in received.events] == [PROBE, 1]


class Stalled(Received):
    """A transport that takes nothing while :attr:`gate` is not set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = trio.Event()
        self.gate.set()

    async def send(self, frames: list[bytes]) -> None:
        await self.gate.wait()
        await super().send(frames)


@pytest.mark.parametrize("per_session", [False, True], ids=["all", "session"])
async def test_a_subscriber_that_falls_behind_loses_nothing(
    dirs: DaemonDirs, per_session: bool
) -> None:
    """A subscription to every session has no seq to see a gap by: when its queue
    overflows it must drop to catching up from the database, or the events it
    dropped from the queue are lost. Another session's events come in between, so
    that global ids and seqs differ: a cursor of one kind read as the other would
    skip or repeat events."""
    async with open_store(dirs) as store:
        session_id = await new_session(store)
        other = await new_session(store, "web")
        async with journal.Journal.open(store) as jr:
            for n in range(100, 105):
                await jr.submit(other, update(n))
            await jr.flush()
            sub = await jr.subscribe(session_id if per_session else None, after=0, queue_size=2)
            received = Stalled()
            async with running(jr, sub, received):
                await received.live(jr, session_id)
                await trio.testing.wait_all_tasks_blocked()
                received.gate = trio.Event()  # the first event sent stalls; 3 overflow
                for n in range(6):
                    await jr.submit(session_id, update(n))
                    await jr.submit(other, update(200 + n))
                    await jr.flush()
                    await trio.testing.wait_all_tasks_blocked()
                received.gate.set()
                expected = await store.read(
                    journal.page_committed, sub.session_id, after=0, limit=1000
                )
                await received.at_least(len(expected))
                await trio.testing.wait_all_tasks_blocked()
            assert sub.caught_up == 1
    assert [event_id for event_id, _, _ in received.events] == [e.id for e in expected]
    assert [seq for _, seq, _ in received.events] == [e.seq for e in expected]
    if per_session:
        assert [n for _, _, n in received.events] == [PROBE, *range(6)]


class PausedSecondRead:
    """The store as a subscription sees it, its second read (the one made once it
    is live) held until :attr:`resume` is set."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reads = 0
        self.second_read = trio.Event()
        self.resume = trio.Event()

    async def read(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        if self.reads == 2:
            self.second_read.set()
            await self.resume.wait()
        return await self.store.read(fn, *args, **kwargs)


async def test_a_subscriber_that_falls_behind_while_going_live_catches_up(
    dirs: DaemonDirs,
) -> None:
    """The send of what the read made on going live stalls, and meanwhile the queue
    overflows: the subscription must catch up from the database after that send,
    not wait for live events it no longer takes."""
    async with open_store(dirs) as store:
        session_id = await new_session(store)
        paused = PausedSecondRead(store)
        sub = journal.Subscription(paused, 1, None, 0, queue_size=2)
        store.on_commit = sub.offer  # what the journal's publish does, for one subscriber
        received = Stalled()
        received.gate = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sub.run, received.send, received.encode)
            await paused.second_read.wait()  # live now, its second read not made yet
            await store.write(journal.append, session_id, update(0))
            paused.resume.set()
            await trio.testing.wait_all_tasks_blocked()  # sending event 0: stalled
            for n in range(1, 4):  # 1 queued, 2 overflows the queue, 3 not taken
                await store.write(journal.append, session_id, update(n))
            received.gate.set()
            await received.at_least(4)
            sub.close()
        assert sub.caught_up == 1
        assert [n for _, _, n in received.events] == [0, 1, 2, 3]


async def test_a_full_page_read_on_going_live_is_followed_by_the_rest(dirs: DaemonDirs) -> None:
    """More than a page of events commits while the subscription sends what it read
    before going live: none of them is in its live queue, and its read on going
    live returns a full page. It must go on reading until it has sent every event,
    then follow live ones."""
    total = CATCH_UP_PAGE + 3
    async with open_store(dirs) as store:
        session_id = await new_session(store)
        await store.write(journal.append, session_id, update(PROBE))
        sub = journal.Subscription(store, 1, session_id, 0, queue_size=total + 10)
        store.on_commit = sub.offer
        received = Stalled()
        received.gate = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sub.run, received.send, received.encode)
            await trio.testing.wait_all_tasks_blocked()  # sending the probe: stalled
            batch = [journal.Pending(session_id, "update", {"n": n}) for n in range(total)]
            await store.write(journal.append_batch, batch)
            received.gate.set()
            await received.at_least(total + 1)
            await store.write(journal.append, session_id, update(total))
            await received.at_least(total + 2)
            sub.close()
        assert received.seqs == list(range(1, total + 3))


class CountedReads:
    """The store as a subscription sees it, counting the reads in flight: a test can
    wait until the subscription is idle (live, waiting for events, no read going on:
    ``wait_all_tasks_blocked`` alone counts a task waiting for a reader thread as
    blocked)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.in_flight = 0

    async def read(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self.in_flight += 1
        try:
            return await self.store.read(fn, *args, **kwargs)
        finally:
            self.in_flight -= 1

    async def idle(self) -> None:
        with trio.fail_after(WAIT_S):
            await trio.testing.wait_all_tasks_blocked()
            while self.in_flight:
                await trio.sleep(0.001)
                await trio.testing.wait_all_tasks_blocked()


async def test_a_gap_in_a_live_batch_is_filled_from_the_database(dirs: DaemonDirs) -> None:
    """A live batch that does not follow the cursor means a publish was missed (here:
    a commit made while nothing listened): the subscription reads the missing
    events from the database before it sends the batch, in order."""
    async with open_store(dirs) as store:
        session_id = await new_session(store)
        counted = CountedReads(store)
        sub = journal.Subscription(counted, 1, session_id, 0, queue_size=100)
        store.on_commit = sub.offer
        received = Received()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sub.run, received.send, received.encode)
            await counted.idle()  # live, with nothing stored yet
            await store.write(journal.append, session_id, update(0))
            await received.at_least(1)
            await counted.idle()  # live, waiting for events
            store.on_commit = None
            await store.write(journal.append, session_id, update(1))  # never published
            store.on_commit = sub.offer
            await trio.testing.wait_all_tasks_blocked()
            assert received.seqs == [1]
            await store.write(journal.append, session_id, update(2))  # seq 3, cursor 1
            await received.at_least(3)
            await trio.testing.wait_all_tasks_blocked()
            sub.close()
        assert sub.caught_up == 0
        assert [(seq, n) for _, seq, n in received.events] == [(1, 0), (2, 1), (3, 2)]


async def test_a_producer_faster_than_the_database_waits_for_it(dirs: DaemonDirs) -> None:
    """Back-pressure: while the database refuses writes, a producer can queue no
    more than the writer's queue; it waits, and loses nothing."""
    total = 100
    queue_size = 8
    async with open_store(dirs, busy_timeout_ms=BUSY_TIMEOUT_MS) as store:
        session_id = await new_session(store)
        async with journal.Journal.open(store, queue_size=queue_size) as jr:
            submitted = 0
            refusals = Refusals()

            async def produce() -> None:
                nonlocal submitted
                for n in range(total):
                    await jr.submit(session_id, update(n))
                    submitted += 1

            async with trio.open_nursery() as nursery:
                with engine_event("handle_error", refusals), write_lock_held(dirs):
                    nursery.start_soon(produce)
                    await refusals.at_least(1)
                    await trio.testing.wait_all_tasks_blocked()
                    # The producer waits: only the batch being retried (what the queue
                    # held, plus the events handed over directly) and a full queue
                    # are in memory.
                    assert queue_size < submitted <= 2 * (queue_size + 1)
            with trio.fail_after(WAIT_S):
                await jr.flush()
        assert stored_events(dirs) == [(n + 1, n) for n in range(total)]


async def test_a_fast_producer_is_written_in_batches_of_at_most_batch_max(
    dirs: DaemonDirs,
) -> None:
    total = 2 * BATCH_MAX + 452
    async with open_store(dirs) as store:
        session_id = await new_session(store)
        batches: list[list[int]] = []
        async with journal.Journal.open(store, queue_size=total) as jr:
            publish = jr.publish

            def record(batch: list[journal.Committed]) -> None:
                batches.append([event.seq for event in batch])
                publish(batch)

            store.on_commit = record
            for n in range(total):  # never waits: the queue holds them all
                await jr.submit(session_id, update(n))
            await jr.flush()
        assert [len(batch) for batch in batches] == [BATCH_MAX, BATCH_MAX, total - 2 * BATCH_MAX]
        assert [seq for batch in batches for seq in batch] == list(range(1, total + 1))
        assert stored_events(dirs) == [(n + 1, n) for n in range(total)]


# ---- exactly once at the replay/live seam -------------------------------------------------


@pytest.mark.parametrize("per_session", [True, False], ids=["session", "all"])
async def test_events_committed_at_the_seam_are_sent_exactly_once(
    dirs: DaemonDirs, per_session: bool
) -> None:
    """The subscription replays events 1-3, goes live, then reads the database
    once more. That read waits for the only reader thread, which the test holds
    while events 4-6 commit: they are both in the live queue and in what the read
    returns. Each must be sent once. Event 7 commits while 4-6 are being sent from
    that read: the live queue then holds 4-6 (sent already) and 7 (not), and 7
    must follow at once."""
    async with open_store(dirs, reader_threads=1) as store, journal.Journal.open(store) as jr:
        session_id = await new_session(store)
        for n in range(3):
            await jr.submit(session_id, update(n))
        await jr.flush()
        sub = await jr.subscribe(session_id if per_session else None, after=0)
        received = Received()
        release = threading.Event()
        seam = trio.Event()

        def hold_the_reader(conn: sa.Connection) -> None:
            release.wait(WAIT_S)

        async with trio.open_nursery() as nursery:

            async def send(frames: list[bytes]) -> None:
                await received.send(frames)
                if not seam.is_set():  # the replay: take the reader before it goes live
                    nursery.start_soon(store.read, hold_the_reader)
                    await trio.testing.wait_all_tasks_blocked()
                    seam.set()
                elif len(received.events) == 6:  # 4-6, from the second read
                    await jr.submit(session_id, update(6))
                    await jr.flush()  # in the live queue, behind 4-6

            try:
                nursery.start_soon(sub.run, send, received.encode)
                with trio.fail_after(WAIT_S):
                    await seam.wait()
                await trio.testing.wait_all_tasks_blocked()  # its read waits for the reader
                assert received.seqs == [1, 2, 3]
                for n in range(3, 6):
                    await jr.submit(session_id, update(n))
                await jr.flush()  # published: in the live queue
                assert received.seqs == [1, 2, 3]
            finally:
                release.set()
            await received.at_least(7)
            await trio.testing.wait_all_tasks_blocked()
            sub.close()
            jr.unsubscribe(sub)
        assert [(seq, n) for _, seq, n in received.events] == [(n + 1, n) for n in range(7)]
        ids = [event_id for event_id, _, _ in received.events]
        assert ids == sorted(set(ids))
