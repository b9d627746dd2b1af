"""Finding a row by its id or a unique prefix of it: how every id a user types is read
(sessions, runs)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from mimird.errors import InvalidParams, NotFound
from mimird.ids import ID_LENGTH
from mimird.wire.formats import MIN_ID_PREFIX

#: How many ids an "ambiguous prefix" error names.
SHOWN: int = 5


def by_id_or_prefix(
    conn: sa.Connection,
    select: sa.Select[Any],
    id_column: sa.ColumnElement[str],
    ref: str,
    noun: str,
) -> sa.Row[Any]:
    """The row of ``select`` whose ``id_column`` is ``ref``, or the only one that
    starts with it (case-insensitive, like the ids' alphabet; at least
    ``MIN_ID_PREFIX`` characters). Raises NotFound, or InvalidParams naming the
    candidates when several match; ``noun`` names the field and the thing."""
    ref = ref.lower()
    if len(ref) == ID_LENGTH:
        row = conn.execute(select.where(id_column == ref)).first()
        if row is not None:
            return row
    elif len(ref) >= MIN_ID_PREFIX:
        # Ids only use [0-9a-z]: a prefix cannot smuggle LIKE wildcards, but escape anyway.
        pattern = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = conn.execute(
            select.where(id_column.like(pattern, escape="\\")).order_by(id_column).limit(SHOWN + 1)
        ).all()
        if len(rows) == 1:
            return rows[0]
        if len(rows) > 1:
            shown = ", ".join(r.id for r in rows[:SHOWN])
            raise InvalidParams(
                f"{noun} prefix {ref!r} is ambiguous: it matches {shown}"
                + (", ..." if len(rows) > SHOWN else "")
                + "; give more characters",
                field=noun,
                id=ref,
            )
    raise NotFound(f"no {noun} with id or prefix {ref!r}", field=noun, id=ref)
