"""What turns used, stored and summed: one ``turn_usage`` row per turn that
reported any usage, summed per session, per project and per day (UTC).

Database functions (sync, taking a connection, run by the store in a thread).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec
import sqlalchemy as sa

from mimird.sessions import records
from mimird.store.schema import events, sessions, turn_usage
from mimird.timeutil import utc_now
from mimird.wire.events import BudgetWarning, TurnEnded
from mimird.wire.usage import Usage

_TOKENS: Final = (
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "thought_tokens",
    "total_tokens",
)
_SUMS: Final = (
    *(sa.func.coalesce(sa.func.sum(turn_usage.c[name]), 0) for name in _TOKENS),
    sa.func.coalesce(sa.func.sum(turn_usage.c.cost_usd), 0.0),
    sa.func.count(),
)


def _usage(row: Sequence[Any]) -> Usage:
    tokens = dict(zip(_TOKENS, row[:5], strict=True))
    return Usage(**tokens, cost_usd=round(float(row[5]), 6), turns=row[6])


def _sum(conn: sa.Connection, where: sa.ColumnElement[bool]) -> Usage:
    return _usage(conn.execute(sa.select(*_SUMS).where(where)).one())


def of_projects(conn: sa.Connection, project_ids: list[str]) -> dict[str, Usage]:
    """Each project's usage (its sessions' turns summed), in one grouped query."""
    found = {project_id: Usage() for project_id in project_ids}
    rows = conn.execute(
        sa.select(turn_usage.c.project_id, *_SUMS)
        .where(turn_usage.c.project_id.in_(project_ids))
        .group_by(turn_usage.c.project_id)
    )
    for row in rows:
        found[row[0]] = _usage(row[1:])
    return found


def of_session(conn: sa.Connection, session_id: str) -> Usage:
    return _sum(conn, turn_usage.c.session_id == session_id)


def of_project(conn: sa.Connection, project_id: str) -> Usage:
    return _sum(conn, turn_usage.c.project_id == project_id)


def of_day(conn: sa.Connection, day: str | None = None) -> Usage:
    """All turns that ended on ``day`` (YYYY-MM-DD, UTC; today by default)."""
    return _sum(conn, turn_usage.c.day == (day or utc_now()[:10]))


def turn_ended(
    conn: sa.Connection,
    session_id: str,
    ended: TurnEnded,
    reported_cost: float | None = None,
    *,
    active_s: float = 0.0,
    text: str | None = None,
) -> int:
    """Journal the end of a turn (the session back to ``idle``, its ``active_s``
    added, ``text`` indexed for search) and store what the turn used with it, in one
    transaction; returns the event's seq."""
    seq = records.turn_ended(conn, session_id, ended, active_s=active_s, text=text)
    used = ended.usage
    if used is not None:
        project_id = conn.execute(
            sa.select(sessions.c.project_id).where(sessions.c.id == session_id)
        ).scalar_one()
        now = utc_now()
        conn.execute(
            sa.insert(turn_usage).values(
                session_id=session_id,
                project_id=project_id,
                turn_seq=seq,
                day=now[:10],
                **{name: getattr(used, name) for name in _TOKENS},
                cost_usd=used.cost_usd,
                reported_cost_usd=reported_cost,
                created_at=now,
            )
        )
    return seq


def last_reported_cost(conn: sa.Connection, session_id: str) -> float | None:
    """The agent's cumulative cost at the end of the session's last turn that had one."""
    found: float | None = conn.execute(
        sa.select(turn_usage.c.reported_cost_usd)
        .where(turn_usage.c.session_id == session_id, turn_usage.c.reported_cost_usd.is_not(None))
        .order_by(turn_usage.c.id.desc())
        .limit(1)
    ).scalar()
    return found


def warned(conn: sa.Connection, session_id: str) -> set[str]:
    """The budgets a ``budget_warning`` was journaled for in this session."""
    rows = conn.execute(
        sa.select(events.c.data).where(
            events.c.session_id == session_id, events.c.kind == BudgetWarning.KIND
        )
    ).scalars()
    return {msgspec.json.decode(data, type=BudgetWarning).budget for data in rows}
