"""Maintenance of the database file while the daemon runs: SQLite's ``PRAGMA
optimize``, a WAL checkpoint, ``VACUUM``, and the figures that show what they did.

Each function takes the DBAPI connection ``Store.maintain`` gives it (the writer's,
outside any transaction): writes wait meanwhile, readers go on.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Final

from mimird.errors import StorageError
from mimird.wire.db_types import DbCheckpoint, DbFigures

#: Free space VACUUM must find beyond the database's used size, in each place.
VACUUM_MARGIN_BYTES: Final = 16 * 1024 * 1024


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def figures(driver: Any, path: Path) -> DbFigures:
    """The file's size, its WAL's, and SQLite's page counts."""
    page_size = int(driver.execute("PRAGMA page_size").fetchone()[0])
    page_count = int(driver.execute("PRAGMA page_count").fetchone()[0])
    freelist = int(driver.execute("PRAGMA freelist_count").fetchone()[0])
    return DbFigures(
        file_bytes=_size(str(path)),
        wal_bytes=_size(f"{path}-wal"),
        page_size=page_size,
        page_count=page_count,
        freelist_count=freelist,
    )


def checkpoint(driver: Any) -> DbCheckpoint:
    """Copy the WAL into the database and truncate it. A reader still using old
    pages makes it ``busy`` (the WAL is then copied as far as it can be)."""
    busy, frames, copied = driver.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return DbCheckpoint(busy=bool(busy), wal_frames=int(frames), checkpointed_frames=int(copied))


def optimize(driver: Any) -> None:
    """SQLite's own ``PRAGMA optimize`` (statistics the query planner uses)."""
    driver.execute("PRAGMA optimize")


def sqlite_temp_dir() -> str:
    """Where SQLite puts its temporary files (VACUUM's copy): as its unix VFS
    chooses, the first writable of $SQLITE_TMPDIR, $TMPDIR, /var/tmp, /usr/tmp, /tmp."""
    for candidate in (
        os.environ.get("SQLITE_TMPDIR"),
        os.environ.get("TMPDIR"),
        "/var/tmp",
        "/usr/tmp",
        "/tmp",
    ):
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            return candidate
    return "."


def vacuum_space(path: Path, before: DbFigures) -> tuple[int, dict[str, int]]:
    """What VACUUM needs (the used pages, written once as a temporary copy and once
    into the WAL) and what is free where it writes, by directory. Raises
    :class:`StorageError` when a file system has too little room."""
    used = before.page_size * (before.page_count - before.freelist_count)
    places = {str(path.parent): used, sqlite_temp_dir(): used}
    # Both on one file system: it needs room for both.
    needed_by_dev: dict[int, int] = {}
    free_by_dev: dict[int, int] = {}
    where: dict[int, str] = {}
    for place, need in places.items():
        dev = os.stat(place).st_dev
        needed_by_dev[dev] = needed_by_dev.get(dev, 0) + need + VACUUM_MARGIN_BYTES
        free_by_dev[dev] = shutil.disk_usage(place).free
        where.setdefault(dev, place)
    free = {place: shutil.disk_usage(place).free for place in places}
    for dev, need in needed_by_dev.items():
        if free_by_dev[dev] < need:
            raise StorageError(
                f"not enough free disk for VACUUM: it needs about {need} bytes on the file "
                f"system of {where[dev]} (a copy of the database's {used} used bytes, in "
                f"the temporary directory and in the WAL, plus a margin), and "
                f"{free_by_dev[dev]} are free. Free some space, or set SQLITE_TMPDIR for "
                "mimird to a directory on another file system",
                detail={"needed_bytes": need, "free_bytes": free_by_dev[dev], "path": where[dev]},
            )
    return sum(needed_by_dev.values()), free


def vacuum(driver: Any) -> None:
    driver.execute("VACUUM")
