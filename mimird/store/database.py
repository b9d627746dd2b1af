"""The store: one SQLite file, one writer, a few readers, all off the event loop.

Every database function is a plain sync function that takes a SQLAlchemy
``Connection`` and returns plain data; ``Store.read``/``Store.write`` run it in
a worker thread. Writes are serialised through a single connection (pool of
one, ``BEGIN IMMEDIATE``) behind a ``trio.Lock``. A cancelled caller
waits for its thread to finish (``abandon_on_cancel=False``), so a write that
was cancelled may still have committed: writes must be idempotent.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

import sqlalchemy as sa
import structlog
import trio

from mimird import __version__
from mimird.config import DatabaseSection, Secret
from mimird.errors import MimirError, StartupError, StorageError
from mimird.ids import IdGenerator
from mimird.store import clean_stop, migrate, schema
from mimird.store.engine import Connect, check_header, connector, make_engine
from mimird.timeutil import utc_now

log = structlog.get_logger("mimird.store")

P = ParamSpec("P")
T = TypeVar("T")

CLOSE_TIMEOUT_S: Final = 30.0
#: A write function appends here (``conn.info``) what is to be published once its
#: transaction commits: the journal's events (see ``Store.on_commit``).
COMMITTED_KEY: Final = "mimir.committed"
#: The same for the events of runs' journals (see ``Store.on_run_commit``).
RUN_COMMITTED_KEY: Final = "mimir.run_committed"


#: A value at least this long (characters or bytes) is inserted by
#: :func:`insert_releasing`, so that no cached statement keeps a copy of it.
LARGE_VALUE: Final = 64 * 1024


def insert_releasing(
    cursor: Any, table: str, columns: Sequence[str], values: Sequence[Any]
) -> None:
    """Insert one row with a DBAPI cursor, and leave SQLite holding none of its values.

    SQLite keeps the values bound to a prepared statement until they are bound
    again (``sqlite3_reset`` does not clear them), and Python's ``sqlite3`` keeps up
    to 128 prepared statements per connection: a 20 MB agent message bound once
    stayed in memory for as long as its statement stayed cached, a new 20 MB for
    each statement it went through. Here the statement is an ``INSERT ... SELECT
    ... WHERE ?`` run a second time with NULLs and a false condition, which inserts
    nothing and replaces the bindings. ``last_insert_rowid()`` is the row's id after
    the call. Blocking; call it in the store's worker thread."""
    cursor.execute(_insert_select(table, tuple(columns)), (*values, 1))
    cursor.execute(_insert_select(table, tuple(columns)), (None,) * len(values) + (0,))


@functools.cache
def _insert_select(table: str, columns: tuple[str, ...]) -> str:
    marks = ", ".join("?" * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) SELECT {marks} WHERE ?"


def after_commit(conn: sa.Connection, key: str = COMMITTED_KEY) -> list[Any]:
    """The list of things ``conn``'s transaction publishes when it commits (the
    sessions' events; with ``key=RUN_COMMITTED_KEY``, the runs' events)."""
    pending: list[Any] = conn.info.setdefault(key, [])
    return pending


class Store:
    """Owner of the database. Open with ``async with Store.open(...) as store``."""

    def __init__(
        self,
        *,
        path: Path,
        encrypted: bool,
        revision: str,
        writer: sa.Engine,
        reader: sa.Engine,
        reader_threads: int,
        run_id: int,
        recovered_from_crash: bool,
        connect_to: Callable[[Path], Connect],
        clean_stop_file: Path | None = None,
    ) -> None:
        self.path = path
        #: Where a clean stop records the file's size and mtime (see :mod:`.clean_stop`).
        self._clean_stop_file = clean_stop_file
        #: A connect function for any file with this database's key (backups).
        self._connect_to = connect_to
        self.encrypted = encrypted
        self.revision = revision
        self.run_id = run_id
        self.recovered_from_crash = recovered_from_crash
        self.ids = IdGenerator()
        self._writer = writer
        self._reader = reader
        #: One write at a time, held from its start until its events are published,
        #: so that subscribers see events in commit order.
        self._write_lock = trio.Lock()
        #: Called (in the trio thread, before the next write starts) with the journal
        #: events a write committed; set by the journal.
        self.on_commit: Callable[[list[Any]], None] | None = None
        #: The same for the events of runs' journals (kept apart: the sessions' hot
        #: path never looks at them).
        self.on_run_commit: Callable[[list[Any]], None] | None = None
        self._read_limiter = trio.CapacityLimiter(reader_threads)
        #: The writer's own thread (writes are one at a time anyway): never one of
        #: trio's default threads, which anything else may be holding.
        self._write_limiter = trio.CapacityLimiter(1)
        #: Reader connections between two reads. The limiter bounds reads in flight,
        #: so these and the ones in use are never more than the reader pool holds.
        self._idle_readers: list[sa.Connection] = []
        #: Bumped after every committed write; lets callers cache derived data.
        self.generation = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        path: Path,
        *,
        key: Secret | None,
        options: DatabaseSection,
        backup_dir: Path,
        clean_stop_file: Path | None = None,
    ) -> AsyncIterator[Store]:
        """Open (creating or migrating as needed) the database at ``path``.

        With ``clean_stop_file``, a database that changed since the clean stop
        recorded there is checked first (as after a crash), and a clean stop is
        recorded there when the store closes.

        Raises :class:`StartupError` with a message for the user when the file
        cannot be opened; the file is never re-created or modified in that case."""
        store = await trio.to_thread.run_sync(
            cls._open_sync, path, key, options, backup_dir, clean_stop_file, abandon_on_cancel=False
        )
        try:
            yield store
        finally:
            with trio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
                await trio.to_thread.run_sync(store._close_sync)

    @classmethod
    def _open_sync(
        cls,
        path: Path,
        key: Secret | None,
        options: DatabaseSection,
        backup_dir: Path,
        clean_stop_file: Path | None,
    ) -> Store:
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"cannot create directory {path.parent}: {exc.strerror}") from None
        check_header(path, key)
        # Before anything here writes to the file: it is compared as it was left.
        changed = (
            None if clean_stop_file is None else clean_stop.changes_since(path, clean_stop_file)
        )

        def connect_to(target: Path, *, foreign_keys: bool = True) -> Connect:
            return connector(
                target,
                key,
                busy_timeout_ms=options.busy_timeout_ms,
                synchronous=options.synchronous,
                foreign_keys=foreign_keys,
            )

        connect = connect_to(path)
        # Creating the file with a umask keeps a new database private from its first byte.
        old_umask = os.umask(0o077)
        try:
            connect().close()
        finally:
            os.umask(old_umask)

        if changed is not None:
            log.warning("database_changed_since_clean_stop", reason=changed)
            check_engine = make_engine(connect, key, pool_size=0, writer=False)
            try:
                _quick_check(check_engine, path, backup_dir, f"at start ({changed})")
            finally:
                check_engine.dispose()
        if clean_stop_file is not None:
            clean_stop.forget(clean_stop_file)

        migration_engine = make_engine(
            connect_to(path, foreign_keys=False), key, pool_size=0, writer=True
        )
        try:
            revision = migrate.upgrade(
                migration_engine,
                connect=connect,
                backup_connector=lambda target: connect_to(target),
                backup_dir=backup_dir,
                backups_to_keep=options.backups_to_keep,
            )
        finally:
            migration_engine.dispose()

        writer = make_engine(connect, key, pool_size=1, writer=True)
        reader = make_engine(connect, key, pool_size=options.reader_threads, writer=False)
        try:
            run_id, unfinished = _record_start(writer)
            if unfinished:
                log.warning("unclean_shutdown_detected", previous_runs=unfinished)
                if changed is None:  # else checked above
                    _quick_check(writer, path, backup_dir, "after an unclean shutdown")
        except BaseException:
            writer.dispose()
            reader.dispose()
            raise
        return cls(
            path=path,
            encrypted=key is not None,
            revision=revision,
            writer=writer,
            reader=reader,
            reader_threads=options.reader_threads,
            run_id=run_id,
            recovered_from_crash=bool(unfinished),
            connect_to=connect_to,
            clean_stop_file=clean_stop_file,
        )

    def _close_sync(self) -> None:
        clean = False
        try:
            with self._writer.begin() as conn:
                conn.execute(
                    sa.update(schema.daemon_runs)
                    .where(schema.daemon_runs.c.id == self.run_id)
                    .values(stopped_at=utc_now(), status="stopped")
                )
            # Outside any transaction: fold the WAL back into the main file so that
            # a copy of mimir.db alone is complete after a clean stop.
            raw = self._writer.raw_connection()
            try:
                raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
                raw.driver_connection.execute("PRAGMA optimize")  # type: ignore[union-attr]
            finally:
                raw.close()
            log.info("database_closed", path=str(self.path))
            clean = True
        except sa.exc.DBAPIError as exc:
            log.error("database_close_failed", error=str(exc.orig))
        finally:
            while self._idle_readers:
                self._idle_readers.pop().close()
            self._reader.dispose()
            self._writer.dispose()
        if clean and self._clean_stop_file is not None:
            # Every connection is closed: the file is as the next start will find it.
            clean_stop.record(self.path, self._clean_stop_file)

    async def read(
        self,
        fn: Callable[Concatenate[sa.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(connection, *args, **kwargs)`` in a read transaction in a worker thread."""
        return await trio.to_thread.run_sync(
            self._read_sync, lambda conn: fn(conn, *args, **kwargs), limiter=self._read_limiter
        )

    async def write(
        self,
        fn: Callable[Concatenate[sa.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(connection, *args, **kwargs)`` in one ``BEGIN IMMEDIATE`` transaction.

        Commits if ``fn`` returns, rolls back if it raises. Exactly one write runs
        at a time. The journal events it appended are published once it committed."""
        async with self._write_lock:
            # Not abandoned on cancel: the result (and the events) arrive even when
            # the caller is cancelled meanwhile, so what committed is published.
            result, committed, run_committed = await trio.to_thread.run_sync(
                self._write_sync,
                lambda conn: fn(conn, *args, **kwargs),
                limiter=self._write_limiter,
            )
            self.generation += 1
            if committed and self.on_commit is not None:
                self.on_commit(committed)
            if run_committed and self.on_run_commit is not None:
                self.on_run_commit(run_committed)
        return result

    def _read_sync(self, fn: Callable[[sa.Connection], T]) -> T:
        # A connection kept between reads (its transaction ended by a rollback) instead
        # of one checked out of the pool and reset each time: ~25 µs less per read.
        # One that saw an error goes back to the pool, which resets or replaces it.
        try:
            try:
                conn = self._idle_readers.pop()  # list.pop and append are atomic
            except IndexError:
                conn = self._reader.connect()
            try:
                result = fn(conn)
                conn.rollback()
            except BaseException:
                conn.close()
                raise
            self._idle_readers.append(conn)
            return result
        except MimirError:
            raise
        except sa.exc.DBAPIError as exc:
            raise _storage_error(exc) from exc

    def _write_sync(self, fn: Callable[[sa.Connection], T]) -> tuple[T, list[Any], list[Any]]:
        try:
            with self._writer.begin() as conn:
                try:
                    result = fn(conn)
                finally:
                    committed = conn.info.pop(COMMITTED_KEY, None) or []
                    run_committed = conn.info.pop(RUN_COMMITTED_KEY, None) or []
            return result, committed, run_committed
        except MimirError:
            raise
        except sa.exc.DBAPIError as exc:
            raise _storage_error(exc) from exc

    async def maintain(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(dbapi_connection)`` on the writer's connection outside any
        transaction (``VACUUM``, ``PRAGMA wal_checkpoint``), between two writes: the
        writes wait meanwhile, the readers go on. ``fn`` runs in the writer's thread."""
        async with self._write_lock:
            result = await trio.to_thread.run_sync(
                self._maintain_sync, fn, limiter=self._write_limiter
            )
            self.generation += 1
        return result

    def _maintain_sync(self, fn: Callable[[Any], T]) -> T:
        raw = self._writer.raw_connection()
        try:
            return fn(raw.driver_connection)
        except MimirError:
            raise
        except Exception as exc:
            # The driver's own errors (sqlite3's or sqlcipher3's), not SQLAlchemy's.
            if type(exc).__module__.split(".")[0] not in ("sqlite3", "sqlcipher3"):
                raise
            log.error("database_error", error=str(exc))
            raise StorageError(f"database error: {exc}", detail={"sqlite": str(exc)}) from exc
        finally:
            raw.close()

    async def backup(self, target: Path) -> int:
        """Copy the live database to ``target`` (which must not exist) with SQLite's
        online backup API, encrypted as the database is; returns its size. Writes go
        on meanwhile: the copy is the database as of one moment."""
        return await trio.to_thread.run_sync(self._backup_sync, target)

    def _backup_sync(self, target: Path) -> int:
        # Built beside the target and linked into place: a backup that fails half
        # way leaves nothing, and an existing file is never overwritten.
        tmp = target.with_name(f".{target.name}.mimir-{os.getpid()}.tmp")
        try:
            # Made here first, so that the copy is private from its first byte.
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            migrate.backup_database(self._connect_to(self.path), self._connect_to(tmp))
            os.link(tmp, target)
            return target.stat().st_size
        except sa.exc.DBAPIError as exc:
            raise _storage_error(exc) from exc
        finally:
            for leftover in (
                tmp,
                tmp.with_name(tmp.name + "-wal"),
                tmp.with_name(tmp.name + "-shm"),
            ):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover)

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(f"{self.path}{suffix}").st_size
        return total


def _storage_error(exc: sa.exc.DBAPIError) -> StorageError:
    log.error("database_error", error=str(exc.orig), statement=exc.statement)
    return StorageError(f"database error: {exc.orig}", detail={"sqlite": str(exc.orig)})


def _record_start(engine: sa.Engine) -> tuple[int, int]:
    """Insert this run's row; return its id and how many earlier runs never stopped."""
    runs = schema.daemon_runs
    with engine.begin() as conn:
        unfinished = conn.execute(
            sa.select(sa.func.count()).select_from(runs).where(runs.c.status == "running")
        ).scalar_one()
        # Mark them so that the next start does not report them again.
        conn.execute(sa.update(runs).where(runs.c.status == "running").values(status="crashed"))
        run_id = conn.execute(
            sa.insert(runs).values(
                pid=os.getpid(), version=__version__, started_at=utc_now(), status="running"
            )
        ).inserted_primary_key
        assert run_id is not None
        return int(run_id[0]), int(unfinished)


#: At most this many problems are reported by a check.
MAX_PROBLEMS: Final = 100


def integrity_problems(conn: sa.Connection, *, full: bool = False) -> list[str]:
    """What SQLite finds wrong with the database: ``quick_check`` (or, ``full``,
    ``integrity_check``, which also checks that indexes match their tables) and
    ``foreign_key_check``. Empty when all is well."""
    pragma = "integrity_check" if full else "quick_check"
    try:
        rows = [str(r[0]) for r in conn.exec_driver_sql(f"PRAGMA {pragma}({MAX_PROBLEMS})")]
        problems = [] if rows == ["ok"] else rows
        for table, rowid, parent, _ in conn.exec_driver_sql("PRAGMA foreign_key_check"):
            problems.append(f"row {rowid} of {table} refers to a missing row of {parent}")
    except sa.exc.DatabaseError as exc:
        # Damage bad enough that SQLite stops the check itself ("database disk image
        # is malformed") is a finding too, not an error of the check.
        return [f"SQLite stopped the check: {exc.orig}"]
    return problems[:MAX_PROBLEMS]


def _quick_check(engine: sa.Engine, path: Path, backup_dir: Path, why: str) -> None:
    """Refuse to start on a database that fails ``quick_check``; ``why`` it was checked."""
    try:
        with engine.connect() as conn:
            problems = integrity_problems(conn)
            conn.rollback()
    except StartupError as exc:
        # A file too damaged to open at all ("file is not a database").
        problems = [str(exc)]
    if problems:
        # On one line: SQLite's findings may hold newlines (which page is damaged decides).
        found = "; ".join(" ".join(problem.split()) for problem in problems[:5])
        raise StartupError(
            f"database {path} failed its integrity check {why}: "
            f"{found}. Put a backup (from {backup_dir}, or your own "
            f"'mimirctl db backup') in its place, removing {path.name}-wal and "
            f"{path.name}-shm, or run 'sqlite3 {path} .recover'"
        )
    log.info("database_checked", result="ok")
