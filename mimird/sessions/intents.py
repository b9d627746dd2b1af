"""Intents: a multi-step workspace operation written down before its first change
on disk, and removed in the transaction that records its outcome.

A row that is still here after a crash (or after a cancel that outran the record
step) says what was under way; :mod:`mimird.sessions.recovery` looks at the disk
and finishes or undoes it. Plain sync functions taking a connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import sqlalchemy as sa

from mimird.store.schema import workspace_intents
from mimird.timeutil import utc_now

Operation = Literal["create", "delete", "restore"]


@dataclass(frozen=True, slots=True)
class Intent:
    session_id: str
    operation: Operation
    data: dict[str, Any]
    created_at: str


def begin(conn: sa.Connection, session_id: str, operation: Operation, data: dict[str, Any]) -> None:
    """Write down that ``operation`` on ``session_id``'s workspace starts now.
    Idempotent (a cancelled caller cannot know whether the write committed)."""
    conn.execute(sa.delete(workspace_intents).where(workspace_intents.c.session_id == session_id))
    conn.execute(
        sa.insert(workspace_intents).values(
            session_id=session_id,
            operation=operation,
            data=msgspec.json.encode(data).decode(),
            created_at=utc_now(),
        )
    )


def clear(conn: sa.Connection, session_id: str) -> None:
    """The operation's outcome is recorded (or nothing was done): forget it."""
    conn.execute(sa.delete(workspace_intents).where(workspace_intents.c.session_id == session_id))


def pending(conn: sa.Connection) -> list[Intent]:
    """Every operation not yet settled, oldest first."""
    rows = conn.execute(
        sa.select(
            workspace_intents.c.session_id,
            workspace_intents.c.operation,
            workspace_intents.c.data,
            workspace_intents.c.created_at,
        ).order_by(workspace_intents.c.created_at, workspace_intents.c.session_id)
    )
    return [
        Intent(session_id=r[0], operation=r[1], data=msgspec.json.decode(r[2]), created_at=r[3])
        for r in rows
    ]
