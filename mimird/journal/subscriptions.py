"""Subscribers to the journal: a cursor plus a bounded queue each.

Live batches go into the queue (:meth:`Subscription.offer`, called by
:meth:`~mimird.journal.writer.Journal.publish`, never blocks); when the queue is
full the subscriber drops to catch-up mode and reads the stored events after
its cursor from the database, page by page, until it reaches the live head. A
fresh subscription with an old cursor starts in catch-up mode. No producer ever
waits for a subscriber. How an event is framed for the wire is the caller's
business (:data:`Encoder`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import trio

from mimird.journal.events import Committed, page_committed
from mimird.journal.run_events import RunCommitted, page_run

#: A subscriber that falls this many events behind is caught up from the database.
SUBSCRIBER_QUEUE: Final = 2048
#: Events read per page while catching up.
CATCH_UP_PAGE: Final = 1000

Encoder = Callable[[Any], bytes]

Sender = Callable[[list[bytes]], Awaitable[None]]


class Subscription:
    """One subscriber: a cursor, a bounded queue of live events, and the task
    that sends them (:meth:`run`). Of one session's events, every session's, or
    (``run_id``) one run's journal (:mod:`.run_events`)."""

    def __init__(
        self,
        store: Any,
        sub_id: int,
        session_id: str | None,
        cursor: int,
        *,
        queue_size: int,
        run_id: str | None = None,
    ) -> None:
        self.id = sub_id
        self.session_id = session_id
        self.run_id = run_id
        #: Counted by seq (one session's or one run's events), else by global id.
        self._by_seq = session_id is not None or run_id is not None
        #: seq of the last event sent (session and run subscriptions), else its global id.
        self.cursor = cursor
        self._store = store
        self._queue: deque[Committed | RunCommitted] = deque()
        self._queue_size = queue_size
        #: False while catching up from the database: live events are not queued.
        self._live = False
        self._wake = trio.Event()
        self._closed = False
        self.caught_up = 0  # times it fell behind and was caught up (for tests, stats)

    def close(self) -> None:
        """End :meth:`run` at its next step, never in the middle of a send (a
        cancelled send would leave half a line on the connection)."""
        self._closed = True
        self._wake.set()

    def _key(self, event: Committed | RunCommitted) -> int:
        return event.seq if self._by_seq else event.id

    def offer(self, batch: list[Committed] | list[RunCommitted]) -> None:
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

    def _frames(self, batch: Sequence[Committed | RunCommitted], encode: Encoder) -> list[bytes]:
        frames = []
        for event in batch:
            key = self._key(event)
            if key <= self.cursor:
                continue  # already sent (the seam between replay and live)
            frames.append(encode(event))
            self.cursor = key
        return frames

    async def _read_page(self) -> list[Committed] | list[RunCommitted]:
        if self.run_id is not None:
            runs: list[RunCommitted] = await self._store.read(
                page_run, self.run_id, after=self.cursor, limit=CATCH_UP_PAGE
            )
            return runs
        found: list[Committed] = await self._store.read(
            page_committed, self.session_id, after=self.cursor, limit=CATCH_UP_PAGE
        )
        return found

    async def run(self, send: Sender, encode: Encoder) -> None:
        """Send everything after the cursor, then live events, until closed; each
        event goes out as ``encode`` makes it (the transport's frame, e.g. a
        JSON-RPC notification: the journal builds none).

        Cancellation: nothing is lost but the connection. A send cancelled midway
        may leave part of a frame on it; the cursor covers what was handed to
        ``send`` before, so a new subscription from the client's cursor resumes
        without a gap."""
        while not self._closed:
            if not self._live:
                stored = await self._read_page()
                if stored:
                    await send(self._frames(stored, encode))
                if len(stored) == CATCH_UP_PAGE:
                    continue
                # Go live first, then read once more: an event committed before this
                # point is in the database, one committed after it is in the queue;
                # the cursor drops the overlap.
                self._live = True
                self._queue.clear()
                stored = await self._read_page()
                if stored:
                    await send(self._frames(stored, encode))
                if len(stored) == CATCH_UP_PAGE:
                    self._live = False
                    continue
                if not self._live:
                    continue  # it fell behind during that send: catch up again
            if not self._queue:
                self._wake = trio.Event()
                if not self._closed:
                    await self._wake.wait()
                continue
            batch = list(self._queue)
            self._queue.clear()
            if self._by_seq and batch[0].seq > self.cursor + 1:
                # A gap can only mean a missed publish: fetch it from the database.
                self._live = False
                continue
            frames = self._frames(batch, encode)
            if frames:
                await send(frames)
