"""Full-text search over the journal (FTS5): being built on the search branch."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa


def index(conn: sa.Connection, entries: Iterable[tuple[int, str]]) -> None:
    """Index (event id, text) pairs. Replaced by the FTS5 implementation on merge."""
    del conn, entries
