"""Alembic migrations, applied at start-up, after a backup of an existing database."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from mimird.errors import StartupError
from mimird.store.engine import Connect

log = structlog.get_logger("mimird.store")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
BACKUP_PREFIX = "mimir-pre-migration-"


def alembic_config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def backup_database(connect: Connect, connect_target: Connect) -> None:
    """Copy a live database with SQLite's online backup API (never ``cp``: WAL)."""
    source = connect()
    try:
        target = connect_target()
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


def _rotate_backups(backup_dir: Path, keep: int) -> None:
    backups = sorted(backup_dir.glob(f"{BACKUP_PREFIX}*.db"))
    for old in backups[:-keep]:
        old.unlink(missing_ok=True)
        log.info("backup_rotated", path=str(old))


def upgrade(
    engine: sa.Engine,
    *,
    connect: Connect,
    backup_connector: Any,
    backup_dir: Path,
    backups_to_keep: int,
) -> str:
    """Bring the database to the newest revision; return it.

    ``engine`` must have foreign keys OFF (SQLite's batch ALTER copies tables);
    they are checked once the upgrade is done. ``backup_connector(path)`` returns
    a connect function for a backup file with the same key as the database."""
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    assert head is not None, "the migrations directory has no head revision"
    current = current_revision(engine)
    if current == head:
        return head
    known = {rev.revision for rev in script.walk_revisions()}
    if current is not None and current not in known:
        raise StartupError(
            f"the database is at schema revision {current}, which this mimird does not know "
            f"(its newest is {head}); it was written by a newer mimird: upgrade mimird"
        )
    with engine.connect() as conn:
        has_tables = bool(
            conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE type='table'").scalar()
        )
        conn.rollback()
    if has_tables:
        backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = backup_dir / f"{BACKUP_PREFIX}{stamp}-rev{current or 'none'}.db"
        backup_database(connect, backup_connector(target))
        log.info("database_backed_up", path=str(target), revision=current, reason="migration")
        _rotate_backups(backup_dir, backups_to_keep)
    with engine.connect() as conn:
        command.upgrade(alembic_config(conn), "head")
        conn.commit()
        violations = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        conn.rollback()
    if violations:
        raise StartupError(f"migration to {head} left foreign key violations: {violations[:5]}")
    log.info("database_migrated", from_revision=current, to_revision=head)
    return head
