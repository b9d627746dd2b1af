"""Alembic environment: mimird always runs migrations in-process on a connection
it opened itself (``config.attributes["connection"]``), never from a URL."""

from __future__ import annotations

from alembic import context

from mimird.store.schema import include_name, metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "mimird runs its migrations itself at start-up; to make a new revision use "
        "'make migration MSG=...' (see README, Development)"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,  # SQLite alters tables by copy-and-move
    compare_type=True,
    include_name=include_name,  # the FTS5 index is made by hand (schema.py says why)
)
with context.begin_transaction():
    context.run_migrations()
