"""events ids never reused (AUTOINCREMENT); the FTS5 search index of the journal

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Spelled out here, not imported from the schema module: a migration must keep
# making what it made when it was written.
#
# The tokenizer: unicode61 splits on anything that is not a letter or a digit in
# any script and folds case beyond ASCII; remove_diacritics 2 makes "resume"
# find "résumé" (mode 2 also strips diacritics that share a character with
# others, which mode 1 leaves). No stemmer: the journal is full of identifiers,
# paths and code, where "tests" and "test" are different words; a trailing *
# (prefix query) is the user's way to widen a word. "_" and "." separate tokens,
# so snake_case and dotted names are found by their parts, and a search for the
# whole name is a phrase of those parts (mimird/search.py builds it).
CREATE_INDEX = (
    "CREATE VIRTUAL TABLE events_fts USING fts5(text, tokenize = 'unicode61 remove_diacritics 2')"
)
CREATE_TRIGGER = (
    "CREATE TRIGGER events_fts_after_delete AFTER DELETE ON events BEGIN "
    "DELETE FROM events_fts WHERE rowid = old.id; "
    "END"
)


def upgrade() -> None:
    # Rebuilt (copy, drop, rename) with AUTOINCREMENT; the copy keeps every id, and
    # SQLite starts sqlite_sequence at the largest one.
    with op.batch_alter_table(
        "events", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ):
        pass
    op.execute(CREATE_INDEX)
    # Events already in the database stay out of the index: the text to index is
    # chosen by the journal's writer when it appends, and none was chosen for them.
    op.execute(CREATE_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER events_fts_after_delete")
    op.execute("DROP TABLE events_fts")
    with op.batch_alter_table(
        "events", recreate="always", table_kwargs={"sqlite_autoincrement": False}
    ):
        pass
