"""A run's own journal: appending its events inside a write transaction, and
reading them back.

The same promises as the sessions' journal (:mod:`.events`): ``seq`` is gapless
per run (``runs.last_seq``), an event is published to subscribers only after its
transaction committed (``conn.info``, under ``RUN_COMMITTED_KEY``, handed by the
store to :meth:`~mimird.journal.writer.Journal.publish_runs`), and stored events
are read back as the JSON text in the database. A run's events are few (a
handful per member), so each is written in the transaction that changes the
run, never through the writer task's batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import sqlalchemy as sa

from mimird import readable
from mimird.errors import NotFound
from mimird.store.database import RUN_COMMITTED_KEY, after_commit
from mimird.store.schema import run_events, runs
from mimird.timeutil import utc_now
from mimird.wire.run_events import RunEventData
from mimird.wire.runs import RunEvent

_ENCODER = msgspec.json.Encoder()


@dataclass(slots=True)
class RunCommitted:
    """One stored run event: what a run's subscriber receives."""

    id: int
    run_id: str
    seq: int
    kind: str
    #: The event's data as the JSON text stored in the database.
    data: str
    created_at: str
    _wire: bytes | None = field(default=None, repr=False)

    def to_wire(self) -> RunEvent:
        return RunEvent(
            id=self.id,
            run_id=self.run_id,
            seq=self.seq,
            kind=self.kind,
            data=msgspec.Raw(self.data.encode()),
            created_at=self.created_at,
        )

    def wire(self) -> bytes:
        """The event as a JSON object (data inline, not re-encoded); computed once."""
        if self._wire is None:
            self._wire = _ENCODER.encode(self.to_wire())
        return self._wire


def append_run(conn: sa.Connection, run_id: str, fact: RunEventData) -> int:
    """Append one event to the run's journal; returns its seq. Call inside a write
    transaction (it commits with whatever else the transaction does)."""
    seq = conn.execute(
        sa.update(runs)
        .where(runs.c.id == run_id)
        .values(last_seq=runs.c.last_seq + 1)
        .returning(runs.c.last_seq)
    ).scalar_one_or_none()
    if seq is None:
        raise NotFound(f"run {run_id} no longer exists", field="run", id=run_id)
    encoded = readable.encode(_ENCODER, fact).decode()
    created_at = utc_now()
    event_id = conn.execute(
        sa.insert(run_events)
        .values(run_id=run_id, seq=seq, kind=fact.KIND, data=encoded, created_at=created_at)
        .returning(run_events.c.id)
    ).scalar_one()
    pending: list[RunCommitted] = after_commit(conn, RUN_COMMITTED_KEY)
    pending.append(RunCommitted(event_id, run_id, int(seq), fact.KIND, encoded, created_at))
    return int(seq)


_COLUMNS: Final = (
    run_events.c.id,
    run_events.c.run_id,
    run_events.c.seq,
    run_events.c.kind,
    run_events.c.data,
    run_events.c.created_at,
)


def page_run(
    conn: sa.Connection, run_id: str, *, after: int, limit: int, kind: str | None = None
) -> list[RunCommitted]:
    """The run's events after seq ``after``, in order (of one kind, if given)."""
    query = sa.select(*_COLUMNS).where(run_events.c.run_id == run_id, run_events.c.seq > after)
    if kind is not None:
        query = query.where(run_events.c.kind == kind)
    rows = conn.execute(query.order_by(run_events.c.seq).limit(limit))
    return [RunCommitted(*row) for row in rows]


def run_head(conn: sa.Connection, run_id: str) -> int:
    """The seq of the run's newest event (0 if none)."""
    value = conn.execute(sa.select(runs.c.last_seq).where(runs.c.id == run_id)).scalar()
    return int(value or 0)


def decoded(event: RunCommitted) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.json.decode(event.data)
    return data
