"""The journal: every event of every session, in order.

This is the synchronous core used inside write transactions: an event is
appended in the same transaction as the state change it records, with the
session's next ``seq`` (kept in ``sessions.last_seq``, so numbering is gapless
and needs no scan). Batching, live fan-out and replay to subscribers build on
this.
"""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa

from mimird.store.schema import events, sessions
from mimird.timeutil import utc_now
from mimird.wire.types import Event

_ENCODER = msgspec.json.Encoder()


def append(conn: sa.Connection, session_id: str, kind: str, data: dict[str, Any]) -> int:
    """Append one event; returns its seq. Call inside a write transaction."""
    seq = conn.execute(
        sa.update(sessions)
        .where(sessions.c.id == session_id)
        .values(last_seq=sessions.c.last_seq + 1)
        .returning(sessions.c.last_seq)
    ).scalar_one()
    conn.execute(
        sa.insert(events).values(
            session_id=session_id,
            seq=seq,
            kind=kind,
            data=_ENCODER.encode(data).decode(),
            created_at=utc_now(),
        )
    )
    return int(seq)


def page(conn: sa.Connection, session_id: str, *, after_seq: int, limit: int) -> list[Event]:
    rows = conn.execute(
        sa.select(events)
        .where(events.c.session_id == session_id, events.c.seq > after_seq)
        .order_by(events.c.seq)
        .limit(limit)
    )
    return [
        Event(
            id=row.id,
            session_id=row.session_id,
            seq=row.seq,
            kind=row.kind,
            data=msgspec.json.decode(row.data),
            created_at=row.created_at,
        )
        for row in rows
    ]
