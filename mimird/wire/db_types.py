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
