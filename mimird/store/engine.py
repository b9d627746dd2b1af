"""Opening SQLite (or SQLCipher) connections with Mimir's pragmas.

Connections are made by hand (``creator=``) so that the same code serves plain
and encrypted databases: SQLAlchemy's pysqlite dialect is used with the DBAPI
module swapped for ``sqlcipher3`` when a key is configured. ``isolation_level
= None`` hands transaction control to us: the writer engine starts every
transaction with ``BEGIN IMMEDIATE`` (it waits for ``busy_timeout`` instead of
failing at once when another process holds the write lock), readers with a
plain deferred ``BEGIN``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy import event

from mimird.config import Secret
from mimird.errors import StartupError

SQLITE_HEADER: Final = b"SQLite format 3\x00"
KEY_HELP: Final = (
    "set MIMIR_DB_KEY, pass --db-key-file, set MIMIR_DB_KEY_FILE, provide the systemd "
    "credential 'mimir-db-key', or set database.key_file in the config file"
)

Connect = Callable[[], Any]


def dbapi_module(key: Secret | None) -> ModuleType:
    if key is None:
        return sqlite3
    try:
        import sqlcipher3.dbapi2 as sqlcipher
    except ImportError:
        raise StartupError(
            "a database key is configured but SQLCipher is not installed: "
            "pip install 'mimir[encryption]' (sqlcipher3-binary)"
        ) from None
    module: ModuleType = sqlcipher
    return module


def check_header(path: Path, key: Secret | None) -> None:
    """Refuse, with a message that says why, to open a file with the wrong kind of key.

    Never touches the file: a wrong or missing key must not re-create or damage it."""
    try:
        with path.open("rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    if not header:
        return
    if key is None and header != SQLITE_HEADER:
        raise StartupError(
            f"database {path} is encrypted (or is not a SQLite database) and no key is "
            f"configured: {KEY_HELP}"
        )
    if key is not None and header == SQLITE_HEADER:
        raise StartupError(
            f"database {path} is not encrypted, but a database key is configured; refusing "
            "to open it (its contents would stay unencrypted). Remove the key setting, or "
            "encrypt the database first (see README, 'Encryption at rest')"
        )


def _quote(key: Secret) -> str:
    try:
        text = key.reveal().decode("utf-8")
    except UnicodeDecodeError:
        raise StartupError("the database key must be UTF-8 text") from None
    return "'" + text.replace("'", "''") + "'"


def connector(
    path: Path,
    key: Secret | None,
    *,
    busy_timeout_ms: int,
    synchronous: Literal["normal", "full"],
    foreign_keys: bool = True,
) -> Connect:
    """A function that opens one configured DBAPI connection to ``path``."""
    module = dbapi_module(key)

    def connect() -> Any:
        conn = module.connect(
            str(path),
            timeout=busy_timeout_ms / 1000,
            check_same_thread=False,
            isolation_level=None,
        )
        try:
            if key is not None:
                # SQLCipher logs wrong-key errors on stderr by itself; we report them.
                conn.execute("PRAGMA cipher_log_level = NONE")
                conn.execute(f"PRAGMA key = {_quote(key)}")
            # The first real read is where a wrong key shows up.
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            conn.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
            conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        except module.DatabaseError as exc:
            conn.close()
            if key is not None and "not a database" in str(exc):
                raise StartupError(
                    f"cannot open database {path}: the database key is wrong "
                    f"(or the file is not a Mimir database)"
                ) from None
            raise StartupError(f"cannot open database {path}: {exc}") from None
        return conn

    return connect


def make_engine(connect: Connect, key: Secret | None, *, pool_size: int, writer: bool) -> sa.Engine:
    engine = sa.create_engine(
        "sqlite+pysqlite://",
        creator=connect,
        module=dbapi_module(key),
        poolclass=sa.pool.QueuePool if pool_size else sa.pool.NullPool,
        **({"pool_size": pool_size, "max_overflow": 0} if pool_size else {}),
    )
    begin = "BEGIN IMMEDIATE" if writer else "BEGIN"

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql(begin)

    return engine
