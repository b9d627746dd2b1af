"""Make a new migration from the difference between the schema and the newest revision.

    python -m mimird.store.new_revision "add sessions.worktree"   (or: make migration MSG=...)

Upgrades a scratch database to the current head, then lets Alembic compare it
with ``mimird.store.schema.metadata`` and write ``versions/NNNN_<slug>.py``.
Read and edit the result before committing: autogenerate misses some changes
(e.g. renames, server defaults).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa
from alembic import command

from mimird.store.migrate import alembic_config, head_revision


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].strip():
        print('usage: python -m mimird.store.new_revision "what changes"', file=sys.stderr)
        return 2
    next_revision = f"{int(head_revision()) + 1:04d}"
    with tempfile.TemporaryDirectory() as scratch:
        engine = sa.create_engine(f"sqlite:///{Path(scratch) / 'scratch.db'}")
        with engine.connect() as conn:
            config = alembic_config(conn)
            config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
            command.upgrade(config, "head")
            conn.commit()
            command.revision(config, message=argv[0], autogenerate=True, rev_id=next_revision)
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
