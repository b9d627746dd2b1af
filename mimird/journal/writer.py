"""The journal's owner: appends from producers, and fan-out to subscribers.

:class:`Journal` owns a writer task that takes events from producers (agent
hosts) through a bounded channel and appends whatever has queued up in one
transaction (:func:`~mimird.journal.events.append_batch`): a fast agent is not
slowed by one commit per chunk, and a slow disk slows the agent (its stdout is
not read) instead of filling memory. After each commit the store hands the
committed events to :meth:`Journal.publish`, before the next write can start,
which offers them to the subscribers (:mod:`mimird.journal.subscriptions`).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any, Final

import structlog
import trio

from mimird import memory
from mimird.journal.events import (
    Committed,
    Fact,
    Pending,
    append_batch,
    head,
    kind_and_data,
)
from mimird.journal.run_events import RunCommitted, run_head
from mimird.journal.subscriptions import SUBSCRIBER_QUEUE, Subscription
from mimird.metrics import Metrics

log = structlog.get_logger("mimird.journal")

#: Producers block (backpressure) when this many events wait to be written.
QUEUE_SIZE: Final = 2048
#: At most this many events per transaction.
BATCH_MAX: Final = 1024
#: How long the writer waits before retrying a batch the database refused.
RETRY_S: Final = 1.0
#: Once the journal is closing, a batch the database refuses this many times is given up.
CLOSING_RETRIES: Final = 5
#: Once this much event data (characters) was written, the writer gives freed memory
#: back to the system (:func:`mimird.memory.trim`) the next time it has nothing queued.
TRIM_AFTER: Final = 16 * 1024 * 1024


class Journal:
    """Owner of appends from producers and of the subscribers. Open with
    ``async with Journal.open(store) as journal``."""

    def __init__(
        self, store: Any, *, queue_size: int = QUEUE_SIZE, metrics: Metrics | None = None
    ) -> None:
        self.store = store
        #: The daemon's counters; the journal's own figures are the attributes below.
        self.metrics = Metrics() if metrics is None else metrics
        #: Events committed (by the writer or by owners' own transactions).
        self.committed = 0
        #: Events submitted to the writer, and those of them it has written.
        self.submitted = 0
        self.written = 0
        #: Catch-ups of the subscriptions that have ended.
        self._ended_catch_ups = 0
        self._send, self._receive = trio.open_memory_channel[Pending | trio.Event](queue_size)
        self._by_session: dict[str, set[Subscription]] = {}
        self._all: set[Subscription] = set()
        self._by_run: dict[str, set[Subscription]] = {}
        self._sub_ids = itertools.count(1)
        #: Characters of event data published since the last :func:`memory.trim`.
        self._untrimmed = 0
        self._closing = False

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, store: Any, *, queue_size: int = QUEUE_SIZE, metrics: Metrics | None = None
    ) -> AsyncIterator[Journal]:
        journal = cls(store, queue_size=queue_size, metrics=metrics)
        store.on_commit = journal.publish
        store.on_run_commit = journal.publish_runs
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
            store.on_run_commit = None

    # ---- producers ----------------------------------------------------------------

    async def submit(self, session_id: str, fact: Fact, *, text: str | None = None) -> None:
        """Queue an event for the writer; waits only when the writer is behind.

        Cancellation: the event was queued or not; never half of it."""
        kind, data = kind_and_data(fact)
        pending = Pending(session_id, kind, data, text)
        # Counted before it is queued: the writer may commit it before this task runs on.
        self.submitted += 1
        try:
            try:
                # The common case, without send's checkpoint (~10 µs per event).
                self._send.send_nowait(pending)
            except trio.WouldBlock:
                await self._send.send(pending)
        except BaseException:  # not queued (cancelled, or the journal closed)
            self.submitted -= 1
            raise

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
                await self.store.write(append_batch, batch)
                self.written += len(batch)
                return
            except Exception as exc:  # never drop events while running: retry
                failures += 1
                log.error("journal_write_failed", error=str(exc), events=len(batch))
                if self._closing and failures >= CLOSING_RETRIES:
                    # The daemon is stopping and the database keeps refusing: give
                    # up rather than never stop (the log says what was lost).
                    log.error("journal_events_lost", events=len(batch), error=str(exc))
                    self.written += len(batch)  # not behind any more: lost
                    return
                await trio.sleep(RETRY_S)

    # ---- subscribers ---------------------------------------------------------------

    def publish(self, batch: list[Committed]) -> None:
        """Hand committed events to the subscribers (the store calls this)."""
        self._untrimmed += sum(len(event.data) for event in batch)
        self.committed += len(batch)
        per_session: dict[str, list[Committed]] = {}
        if self._by_session:
            for event in batch:
                per_session.setdefault(event.session_id, []).append(event)
        for session_id, events_of in per_session.items():
            for sub in self._by_session.get(session_id, ()):
                sub.offer(events_of)
        for sub in self._all:
            sub.offer(batch)

    def publish_runs(self, batch: list[RunCommitted]) -> None:
        """Hand committed run events to the subscribers of their run (the store calls this)."""
        if not self._by_run:
            return
        per_run: dict[str, list[RunCommitted]] = {}
        for event in batch:
            per_run.setdefault(event.run_id, []).append(event)
        for run_id, events_of in per_run.items():
            for sub in self._by_run.get(run_id, ()):
                sub.offer(events_of)

    async def subscribe_run(
        self, run_id: str, *, after: int | None, queue_size: int = SUBSCRIBER_QUEUE
    ) -> Subscription:
        """A new subscription to one run's journal from seq ``after`` (``None``: from
        now on). Run it with :meth:`Subscription.run`."""
        if after is None:
            after = await self.store.read(run_head, run_id)
        sub = Subscription(
            self.store, next(self._sub_ids), None, after, queue_size=queue_size, run_id=run_id
        )
        self._by_run.setdefault(run_id, set()).add(sub)
        return sub

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
        sub = Subscription(
            self.store, next(self._sub_ids), session_id, after, queue_size=queue_size
        )
        if session_id is None:
            self._all.add(sub)
        else:
            self._by_session.setdefault(session_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub.run_id is not None:
            key, table = sub.run_id, self._by_run
        elif sub.session_id is not None:
            key, table = sub.session_id, self._by_session
        else:
            if sub in self._all:
                self._ended_catch_ups += sub.caught_up
                self._all.discard(sub)
            return
        subs = table.get(key)
        if subs is not None and sub in subs:
            self._ended_catch_ups += sub.caught_up
            subs.discard(sub)
            if not subs:
                del table[key]

    @property
    def lag(self) -> int:
        """Events submitted to the writer and not yet committed."""
        return self.submitted - self.written

    @property
    def catch_ups(self) -> int:
        """Times a subscriber fell behind and was caught up from the database."""
        subs = itertools.chain(self._all, *self._by_session.values(), *self._by_run.values())
        return self._ended_catch_ups + sum(sub.caught_up for sub in subs)

    @property
    def subscribers(self) -> int:
        return (
            len(self._all)
            + sum(len(s) for s in self._by_session.values())
            + sum(len(s) for s in self._by_run.values())
        )
