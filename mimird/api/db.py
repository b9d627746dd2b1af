"""``db.check``, ``db.backup``, ``db.optimize`` and ``db.vacuum``: the database's
integrity, copies of it, and its upkeep, all while the daemon runs."""

from __future__ import annotations

import datetime as dt
import errno
import os
import time
from pathlib import Path

import msgspec
import trio

from mimird.api.methods import MethodTable
from mimird.config import Settings
from mimird.errors import AlreadyExists, InvalidParams, StorageError
from mimird.journal.search import optimize_index
from mimird.rpc.registry import CallContext, Registry
from mimird.store import Store, maintenance
from mimird.store.database import integrity_problems
from mimird.wire.db_types import (
    DbBackup,
    DbBackupParams,
    DbCheck,
    DbCheckParams,
    DbOptimize,
    DbVacuum,
)
from mimird.wire.errors import ErrorCode
from mimird.wire.types import EmptyParams

#: Manual backups in the backups directory are named so, beside the ones made
#: before migrations (``mimir-pre-migration-*``); they are never rotated away.
BACKUP_PREFIX = "mimir-backup-"
#: Longest file name of a backup: its temporary copy (".NAME.mimir-PID.tmp-wal") must
#: still fit in NAME_MAX (255 bytes).
MAX_NAME_BYTES = 200


_method = MethodTable()


class DbService:
    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._backup_dir = settings.backup_dir

    def register(self, registry: Registry) -> None:
        _method.register(self, registry)

    @_method(
        "db.check",
        params=DbCheckParams,
        result=DbCheck,
        summary=(
            "Check the database's integrity while the daemon runs (SQLite's "
            "quick_check, or integrity_check with full, and foreign_key_check)."
        ),
        concurrent=True,
    )
    async def check(self, ctx: CallContext, params: DbCheckParams) -> DbCheck:
        began = time.perf_counter()
        problems = await self._store.read(integrity_problems, full=params.full)
        return DbCheck(
            ok=not problems,
            kind="full" if params.full else "quick",
            problems=problems,
            duration_ms=round((time.perf_counter() - began) * 1000, 1),
        )

    @_method(
        "db.backup",
        params=DbBackupParams,
        result=DbBackup,
        summary=(
            "Copy the database while the daemon runs, consistent as of one moment, "
            "encrypted as the database is."
        ),
        description=(
            "The copy is made beside its path and linked into place, so a "
            "failed backup leaves nothing and an existing file is never overwritten."
        ),
        errors=(ErrorCode.ALREADY_EXISTS, ErrorCode.STORAGE_ERROR),
        mutating=True,
        concurrent=True,
    )
    async def backup(self, ctx: CallContext, params: DbBackupParams) -> DbBackup:
        if params.path is msgspec.UNSET:
            await trio.Path(self._backup_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
            target = self._backup_dir / f"{BACKUP_PREFIX}{stamp}.db"
        else:
            target = await trio.to_thread.run_sync(_target, params.path)
        began = time.perf_counter()
        try:
            size = await self._store.backup(target)
        except FileExistsError:
            raise AlreadyExists(
                f"{target} already exists; a backup never overwrites", field="path"
            ) from None
        except OSError as exc:
            raise StorageError(
                f"cannot write the backup {target}: {exc.strerror or exc}",
                field="path",
                detail={"errno": errno.errorcode.get(exc.errno or 0, "")},
            ) from None
        return DbBackup(
            path=str(target),
            bytes=size,
            encrypted=self._store.encrypted,
            duration_ms=round((time.perf_counter() - began) * 1000, 1),
        )

    @_method(
        "db.optimize",
        params=EmptyParams,
        result=DbOptimize,
        summary=(
            "Tidy the database while the daemon runs: merge the search index (FTS5 "
            "optimize), PRAGMA optimize, and a WAL checkpoint (TRUNCATE); the file's "
            "figures before and after."
        ),
        description=(
            "Runs between two writes (writes wait meanwhile, reads and subscribers go "
            "on). The checkpoint is busy when a reader still holds old pages."
        ),
        errors=(ErrorCode.STORAGE_ERROR,),
        mutating=True,
        concurrent=True,
    )
    async def optimize(self, ctx: CallContext, params: EmptyParams) -> DbOptimize:
        path = self._store.path
        began = time.perf_counter()

        def run(driver: object) -> DbOptimize:
            before = maintenance.figures(driver, path)
            optimize_index(driver)
            maintenance.optimize(driver)
            checkpoint = maintenance.checkpoint(driver)
            return DbOptimize(
                before=before,
                after=maintenance.figures(driver, path),
                checkpoint=checkpoint,
                duration_ms=round((time.perf_counter() - began) * 1000, 1),
            )

        return await self._store.maintain(run)

    @_method(
        "db.vacuum",
        params=EmptyParams,
        result=DbVacuum,
        summary=(
            "Rewrite the database file without its free pages (VACUUM), then a WAL "
            "checkpoint (TRUNCATE); the file's figures before and after."
        ),
        description=(
            "VACUUM writes a copy of the database's used pages to SQLite's temporary "
            "directory and to the WAL: it is refused (storage_error, with "
            "data.detail.needed_bytes and free_bytes) when the disk lacks the room. Writes "
            "wait while it runs; reads and subscribers go on."
        ),
        errors=(ErrorCode.STORAGE_ERROR,),
        mutating=True,
        concurrent=True,
    )
    async def vacuum(self, ctx: CallContext, params: EmptyParams) -> DbVacuum:
        path = self._store.path
        began = time.perf_counter()

        def run(driver: object) -> DbVacuum:
            before = maintenance.figures(driver, path)
            needed, free = maintenance.vacuum_space(path, before)
            maintenance.vacuum(driver)
            checkpoint = maintenance.checkpoint(driver)
            return DbVacuum(
                before=before,
                after=maintenance.figures(driver, path),
                checkpoint=checkpoint,
                needed_bytes=needed,
                free_bytes=free,
                duration_ms=round((time.perf_counter() - began) * 1000, 1),
            )

        return await self._store.maintain(run)


def _target(path: str) -> Path:
    target = Path(path)
    if not target.is_absolute() or "\0" in path:
        raise InvalidParams(f"path must be absolute, got {path!r}", field="path")
    if len(os.fsencode(target.name)) > MAX_NAME_BYTES:
        raise InvalidParams(
            f"the backup's file name is longer than {MAX_NAME_BYTES} bytes (the copy is made "
            "beside it under a longer name, which must fit NAME_MAX)",
            field="path",
        )
    if os.path.lexists(target):
        raise AlreadyExists(f"{target} already exists; a backup never overwrites", field="path")
    if not target.parent.is_dir():
        raise InvalidParams(f"{target.parent} is not a directory", field="path")
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise InvalidParams(f"{target.parent} is not writable by mimird", field="path")
    return target
