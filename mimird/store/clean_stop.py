"""What the database file looked like when mimird last stopped cleanly.

After an unclean shutdown the next start checks the database (``daemon_runs``
says so). After a clean one it had no reason to, so damage done to the file
while no daemon ran (a disk that returns other bytes, a tool that wrote into
it) went unnoticed until a query tripped over it. At a clean stop the store now
records the file's size, modification time and inode in a small JSON file in
the state directory (not in the database, whose own bytes are in question);
the next start compares, and checks the database when anything differs.

Plain synchronous file functions; the store calls them in its thread.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Final

import structlog

log = structlog.get_logger("mimird.store")

#: The record's name in the state directory.
RECORD_NAME: Final = "database-at-clean-stop.json"


def _state_of(database: Path) -> dict[str, Any] | None:
    try:
        st = os.stat(database)
    except FileNotFoundError:
        return None
    return {
        "database": str(database),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "inode": st.st_ino,
    }


def record(database: Path, record_file: Path) -> None:
    """Record the database file as it is now (call once every connection is closed).
    Never raises: without a record the next start checks the database anyway."""
    state = _state_of(database)
    if state is None:
        return
    tmp = record_file.with_name(f".{record_file.name}.{os.getpid()}.tmp")
    try:
        record_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)
        os.replace(tmp, record_file)
    except OSError as exc:
        log.warning("clean_stop_not_recorded", path=str(record_file), error=exc.strerror)
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def changes_since(database: Path, record_file: Path) -> str | None:
    """What changed in the database file since the recorded clean stop, in words;
    None when nothing did, or when there is nothing to compare (a new database).
    A database with no record of a clean stop (the last run crashed, a first
    start, a start refused before) counts as changed."""
    now = _state_of(database)
    if now is None or now["size"] == 0:
        return None
    try:
        recorded = json.loads(record_file.read_text())
    except FileNotFoundError:
        return "there is no record of its last clean stop"
    except (OSError, ValueError):
        return f"the record of its last clean stop ({record_file}) is unreadable"
    if not isinstance(recorded, dict) or recorded.get("database") != now["database"]:
        return "there is no record of its last clean stop"
    if recorded.get("inode") != now["inode"]:
        return "it was replaced by another file since mimird last stopped cleanly"
    if recorded.get("size") != now["size"]:
        return (
            f"its size changed from {recorded.get('size')} to {now['size']} bytes since "
            "mimird last stopped cleanly"
        )
    if recorded.get("mtime_ns") != now["mtime_ns"]:
        return "it was modified since mimird last stopped cleanly"
    return None


def forget(record_file: Path) -> None:
    """Remove the record: the database is in use from now on."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(record_file)
