"""Params and results of the ``db.*`` methods (kept apart from :mod:`.types`, which
holds every other method's)."""

from __future__ import annotations

from typing import Literal

from msgspec import UNSET, UnsetType

from mimird.wire.types import Params, PathText, Result

# ---- db.* ------------------------------------------------------------------------------


class DbCheckParams(Params):
    #: SQLite's integrity_check (every index against its table) instead of quick_check.
    full: bool = False


class DbCheck(Result):
    ok: bool
    #: ``quick`` or ``full``.
    kind: Literal["quick", "full"]
    #: What SQLite reported (at most 100 lines); empty when ok.
    problems: list[str]
    duration_ms: float


class DbBackupParams(Params):
    #: An absolute path for the copy, which must not exist yet; by default a new file
    #: in the state directory's ``backups/``.
    path: PathText | UnsetType = UNSET


class DbBackup(Result):
    path: str
    bytes: int
    #: Whether the copy is encrypted (it is when the database is, with the same key).
    encrypted: bool
    duration_ms: float


class DbFigures(Result):
    """The database file as SQLite sees it."""

    file_bytes: int
    #: The write-ahead log beside it (``mimir.db-wal``).
    wal_bytes: int
    page_size: int
    page_count: int
    #: Pages that are free inside the file (VACUUM gives them back to the disk).
    freelist_count: int


class DbCheckpoint(Result):
    """``PRAGMA wal_checkpoint(TRUNCATE)``'s answer."""

    #: A reader still used old pages: the WAL could not be emptied whole.
    busy: bool
    wal_frames: int
    checkpointed_frames: int


class DbOptimize(Result):
    before: DbFigures
    after: DbFigures
    checkpoint: DbCheckpoint
    duration_ms: float


class DbVacuum(Result):
    before: DbFigures
    after: DbFigures
    checkpoint: DbCheckpoint
    #: Free disk VACUUM was found to need (checked before it ran), in bytes.
    needed_bytes: int
    #: Free disk before it ran, by directory written to (the database's, SQLite's temp).
    free_bytes: dict[str, int]
    duration_ms: float
