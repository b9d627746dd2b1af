"""The store: migrations (and the check that the schema has them), pre-migration
backups, pragmas, one writer, and encryption at rest with SQLCipher."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
import sqlcipher3.dbapi2 as sqlcipher
import trio
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from mimird.config import DatabaseSection, Secret
from mimird.errors import StartupError, StorageError
from mimird.ids import IdGenerator
from mimird.store import Store, schema
from mimird.store.database import integrity_problems
from mimird.store.engine import SQLITE_HEADER, connector, make_engine
from mimird.store.migrate import BACKUP_PREFIX, alembic_config, head_revision
from tests.journal.test_search import add_project, add_session, journal_texts
from tests.support.helpers import (
    DaemonDirs,
    InProcessDaemon,
    TrioClient,
    blocking_call,
    daemon_process,
    in_process_daemon,
    start_daemon_process,
)

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")

#: A key with a quote in it: the PRAGMA key quoting must cope.
KEY = "correct-horse-'battery'-staple-91c4"
WRONG_KEY = "incorrect-mule-saddle-77ab"
#: A project name that must never be found in clear in an encrypted file.
SECRET_NAME = "classified-orchard-5e1d"
#: The first revision with the projects table: the oldest database a user can have.
OLDEST_REVISION = "0001"
REFUSAL_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 20.0
CALL_TIMEOUT_S = 20.0

SCRIPT = ScriptDirectory.from_config(alembic_config())
REVISIONS = [revision.revision for revision in SCRIPT.walk_revisions()]


@pytest.fixture(autouse=True)
def config_file(dirs: DaemonDirs) -> None:
    # DaemonDirs.env() names the config file explicitly, and an explicit file must exist.
    dirs.config.write_text("")


# ---- helpers -------------------------------------------------------------------------


def migration_engine(path: Path, key: str | None = None) -> sa.Engine:
    """An engine like the daemon's migration engine (foreign keys off for batch ALTERs)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = None if key is None else Secret(key.encode())
    connect = connector(
        path, secret, busy_timeout_ms=5000, synchronous="normal", foreign_keys=False
    )
    return make_engine(connect, secret, pool_size=0, writer=True)


@contextlib.contextmanager
def migrated(path: Path, revision: str = "head", key: str | None = None) -> Iterator[sa.Engine]:
    engine = migration_engine(path, key)
    try:
        upgrade(engine, revision)
        yield engine
    finally:
        engine.dispose()


def upgrade(engine: sa.Engine, revision: str) -> None:
    with engine.connect() as conn:
        command.upgrade(alembic_config(conn), revision)
        conn.commit()


def downgrade(engine: sa.Engine, revision: str) -> None:
    with engine.connect() as conn:
        command.downgrade(alembic_config(conn), revision)
        conn.commit()


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
        conn.rollback()
    return revision


def schema_differences(engine: sa.Engine, metadata: sa.MetaData = schema.metadata) -> list[Any]:
    """What differs between the database and ``metadata``, with the filter the
    migrations use: the FTS5 search index, made by hand, is checked by its own tests."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": schema.include_name})
        differences = compare_metadata(context, metadata)
        conn.rollback()
    return list(differences)


def insert_old_project(engine: sa.Engine, name: str, path: str) -> str:
    """A project row as revision 0001 stores it (spelled out, so that later
    changes to the schema module do not change what an old database holds)."""
    project_id = IdGenerator().new()
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO projects (id, name, path, type, is_git, description, config, "
            "archived, created_at, updated_at) VALUES (?, ?, ?, 'unknown', 0, '', '{}', 0, "
            "'2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
            (project_id, name, path),
        )
    return project_id


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def backups(dirs: DaemonDirs) -> list[Path]:
    return sorted((dirs.state / "backups").glob(f"{BACKUP_PREFIX}*.db"))


def error_lines(stderr: str) -> list[str]:
    """The lines of stderr that are not JSON log records."""
    return [line for line in stderr.splitlines() if not line.startswith("{")]


def refused_start(dirs: DaemonDirs, *args: str, **env: str) -> tuple[int, str]:
    """Start a daemon that is expected to give up; return its exit code and stderr."""
    daemon = start_daemon_process(dirs, *args, env=dirs.env(**env), wait=False)
    try:
        code = daemon.proc.wait(REFUSAL_TIMEOUT_S)
    finally:
        daemon.kill()
    return code, daemon.stderr


def project_dir(dirs: DaemonDirs, name: str) -> Path:
    path = dirs.root / "projects" / name
    path.mkdir(parents=True)
    return path


def with_in_process_daemon(
    dirs: DaemonDirs, fn: Callable[[TrioClient], Awaitable[T]], **env: str
) -> T:
    """Run ``fn(client)`` against an in-process daemon, from sync code; stop it cleanly."""

    async def main() -> T:
        with trio.fail_after(CALL_TIMEOUT_S):
            async with (
                in_process_daemon(dirs, settings=dirs.settings(**env)) as daemon,
                TrioClient.connect(daemon.socket) as client,
            ):
                return await fn(client)

    return trio.run(main)


def make_database_with_project(dirs: DaemonDirs, name: str, **env: str) -> None:
    path = project_dir(dirs, name)

    async def add(client: TrioClient) -> None:
        await client.call("project.add", {"path": str(path), "name": name})

    with_in_process_daemon(dirs, add, **env)


def sqlcipher_connect(path: Path, key: str) -> Any:
    conn = sqlcipher.connect(str(path))
    conn.execute("PRAGMA key = '" + key.replace("'", "''") + "'")
    return conn


@contextlib.asynccontextmanager
async def open_store(dirs: DaemonDirs) -> AsyncIterator[Store]:
    async with Store.open(
        dirs.database, key=None, options=DatabaseSection(), backup_dir=dirs.state / "backups"
    ) as store:
        yield store


# ---- migrations ----------------------------------------------------------------------


def test_migrations_bring_an_empty_database_to_head(dirs: DaemonDirs) -> None:
    with migrated(dirs.database) as engine:
        assert current_revision(engine) == head_revision()


def test_migrated_schema_matches_the_schema_module(dirs: DaemonDirs) -> None:
    # A change to mimird/store/schema.py without a migration fails here.
    with migrated(dirs.database) as engine:
        assert schema_differences(engine) == []


def test_schema_check_notices_a_column_without_a_migration(dirs: DaemonDirs) -> None:
    changed = sa.MetaData(naming_convention=schema.metadata.naming_convention)
    for table in schema.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["projects"].append_column(sa.Column("colour", sa.Text, nullable=True))
    with migrated(dirs.database) as engine:
        differences = schema_differences(engine, changed)
    assert [(d[0], d[2], d[3].name) for d in differences] == [("add_column", "projects", "colour")]


@pytest.mark.parametrize("revision", REVISIONS)
def test_revision_downgrades_and_upgrades_again(dirs: DaemonDirs, revision: str) -> None:
    previous = SCRIPT.get_revision(revision).down_revision
    assert previous is None or isinstance(previous, str), "branched history is not expected"
    with migrated(dirs.database) as engine:
        downgrade(engine, previous or "base")
        assert current_revision(engine) == previous
        upgrade(engine, "head")
        assert current_revision(engine) == head_revision()
        assert schema_differences(engine) == []


def insert_0003_events(engine: sa.Engine, project_id: str, count: int) -> list[tuple[Any, ...]]:
    """A session with ``count`` events as revision 0003 stores them; the events' rows."""
    session_id = IdGenerator().new()
    now = "2026-01-01T00:00:00.000000Z"
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO sessions (id, project_id, title, status, created_at, updated_at, "
            "last_seq) VALUES (?, ?, 'old', 'created', ?, ?, ?)",
            (session_id, project_id, now, now, count),
        )
        for seq in range(1, count + 1):
            conn.exec_driver_sql(
                "INSERT INTO events (session_id, seq, kind, data, created_at) "
                "VALUES (?, ?, 'status_changed', '{}', ?)",
                (session_id, seq, now),
            )
    return event_rows(engine)


def event_rows(engine: sa.Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = [tuple(row) for row in conn.exec_driver_sql("SELECT * FROM events ORDER BY id")]
        conn.rollback()
    return rows


def events_sql(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        sql = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'events'"
        ).scalar_one()
        conn.rollback()
    return str(sql)


def search_objects(engine: sa.Engine) -> list[tuple[str, str]]:
    """The search index's tables and trigger in sqlite_master, as (type, name)."""
    with engine.connect() as conn:
        found = conn.exec_driver_sql(
            "SELECT type, name FROM sqlite_master WHERE name LIKE 'events_fts%' ORDER BY name"
        ).all()
        conn.rollback()
    return [(kind, name) for kind, name in found]


def test_upgrade_to_0004_keeps_every_event_and_its_id(dirs: DaemonDirs) -> None:
    with migrated(dirs.database, "0003") as engine:
        project_id = insert_old_project(engine, "legacy", str(dirs.root / "legacy"))
        before = insert_0003_events(engine, project_id, 3)
        upgrade(engine, "0004")
        assert event_rows(engine) == before
        assert "AUTOINCREMENT" in events_sql(engine)


def test_upgrade_to_0004_makes_event_ids_never_reused(dirs: DaemonDirs) -> None:
    with migrated(dirs.database, "0003") as engine:
        project_id = insert_old_project(engine, "legacy", str(dirs.root / "legacy"))
        before = insert_0003_events(engine, project_id, 3)
        upgrade(engine, "0004")
        newest_id, session_id = before[-1][0], before[-1][1]
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM events WHERE id = ?", (newest_id,))
            conn.exec_driver_sql(
                "INSERT INTO events (session_id, seq, kind, data, created_at) "
                "VALUES (?, 99, 'status_changed', '{}', '2026-01-02T00:00:00.000000Z')",
                (session_id,),
            )
        assert event_rows(engine)[-1][0] == newest_id + 1


def test_upgrade_to_0004_makes_the_search_index_and_its_trigger(dirs: DaemonDirs) -> None:
    with migrated(dirs.database, "0004") as engine:
        objects = search_objects(engine)
    assert ("table", schema.SEARCH_TABLE) in objects
    assert ("trigger", schema.SEARCH_DELETE_TRIGGER) in objects


def test_downgrade_from_0004_keeps_the_events_and_drops_the_index(dirs: DaemonDirs) -> None:
    with migrated(dirs.database, "0003") as engine:
        project_id = insert_old_project(engine, "legacy", str(dirs.root / "legacy"))
        before = insert_0003_events(engine, project_id, 3)
        upgrade(engine, "0004")
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO events_fts (rowid, text) SELECT id, kind FROM events")
        downgrade(engine, "0003")
        assert event_rows(engine) == before
        assert search_objects(engine) == []
        assert "AUTOINCREMENT" not in events_sql(engine)


# ---- upgrades at start-up, and their backups -------------------------------------------


@pytest.fixture
def old_database(dirs: DaemonDirs) -> str:
    """A database at the oldest revision holding one project; returns the project's id."""
    with migrated(dirs.database, OLDEST_REVISION) as engine:
        return insert_old_project(engine, "legacy", str(dirs.root / "legacy"))


def test_daemon_upgrades_an_old_database_to_head(dirs: DaemonDirs, old_database: str) -> None:
    with daemon_process(dirs):
        status = blocking_call(dirs.socket, "daemon.status")["result"]
    assert status["schema_revision"] == head_revision()


def test_upgrade_keeps_the_rows_of_an_old_database(dirs: DaemonDirs, old_database: str) -> None:
    with daemon_process(dirs):
        project = blocking_call(dirs.socket, "project.get", {"project": "legacy"})["result"]
    assert project["id"] == old_database
    assert project["path"] == str(dirs.root / "legacy")


def test_upgrade_takes_one_backup_at_the_old_revision_with_the_old_rows(
    dirs: DaemonDirs, old_database: str
) -> None:
    with daemon_process(dirs) as daemon:
        assert daemon.terminate(STOP_TIMEOUT_S) == 0
    [backup] = backups(dirs)
    with contextlib.closing(sqlite3.connect(backup)) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (OLDEST_REVISION,)
        ]
        assert conn.execute("SELECT id, name FROM projects").fetchall() == [
            (old_database, "legacy")
        ]


def test_new_database_is_not_backed_up(dirs: DaemonDirs) -> None:
    with daemon_process(dirs) as daemon:
        assert daemon.terminate(STOP_TIMEOUT_S) == 0
    assert backups(dirs) == []


def test_database_from_a_newer_mimird_is_refused_and_left_untouched(dirs: DaemonDirs) -> None:
    with migrated(dirs.database) as engine, engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    before = file_digest(dirs.database)
    code, stderr = refused_start(dirs)
    assert code == 1
    [error] = error_lines(stderr)
    assert error.startswith("mimird: ")
    assert "9999" in error
    assert "newer mimird" in error
    assert file_digest(dirs.database) == before
    assert backups(dirs) == []


# ---- pragmas and the single writer ----------------------------------------------------


async def test_database_is_in_wal_mode(dirs: DaemonDirs) -> None:
    with trio.fail_after(CALL_TIMEOUT_S):
        async with open_store(dirs) as store:
            mode = await store.read(
                lambda conn: conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            )
    assert mode == "wal"


async def test_store_connections_enforce_foreign_keys(dirs: DaemonDirs) -> None:
    def orphan_session(conn: sa.Connection) -> None:
        conn.execute(
            sa.insert(schema.sessions).values(
                id="s1",
                project_id="no-such-project",
                status="created",
                created_at="",
                updated_at="",
            )
        )

    with trio.fail_after(CALL_TIMEOUT_S):
        async with open_store(dirs) as store:
            with pytest.raises(StorageError, match="FOREIGN KEY"):
                await store.write(orphan_session)
            readers_enforce = await store.read(
                lambda conn: conn.exec_driver_sql("PRAGMA foreign_keys").scalar()
            )
    assert readers_enforce == 1


async def test_store_runs_one_write_at_a_time(dirs: DaemonDirs) -> None:
    lock = threading.Lock()
    active = most = 0

    def write(conn: sa.Connection) -> None:
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        time.sleep(0.002)  # give another writer the chance to overlap, if it could
        with lock:
            active -= 1

    with trio.fail_after(CALL_TIMEOUT_S):
        async with open_store(dirs) as store, trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(store.write, write)
    assert most == 1


@pytest.fixture
def many_project_dirs(dirs: DaemonDirs) -> list[Path]:
    return [project_dir(dirs, f"concurrent-{i:02d}") for i in range(24)]


async def test_concurrent_project_adds_all_succeed_with_distinct_names(
    daemon: InProcessDaemon, many_project_dirs: list[Path]
) -> None:
    added: list[str] = []

    async def add(path: Path) -> None:
        async with TrioClient.connect(daemon.socket) as client:
            added.append((await client.call("project.add", {"path": str(path)}))["name"])

    with trio.fail_after(CALL_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            for path in many_project_dirs:
                nursery.start_soon(add, path)
        async with TrioClient.connect(daemon.socket) as client:
            listed = [p["name"] for p in (await client.call("project.list"))["projects"]]
    expected = sorted(path.name for path in many_project_dirs)
    assert sorted(added) == expected
    assert listed == expected


# ---- encryption at rest --------------------------------------------------------------


@pytest.fixture
def encrypted_database(dirs: DaemonDirs) -> Path:
    """An encrypted database (made by a daemon given MIMIR_DB_KEY) holding one project."""
    make_database_with_project(dirs, SECRET_NAME, MIMIR_DB_KEY=KEY)
    return dirs.database


@pytest.fixture
def plaintext_database(dirs: DaemonDirs) -> Path:
    make_database_with_project(dirs, SECRET_NAME)
    return dirs.database


def test_encrypted_database_has_no_sqlite_header(encrypted_database: Path) -> None:
    assert encrypted_database.read_bytes()[: len(SQLITE_HEADER)] != SQLITE_HEADER


def test_encrypted_database_cannot_be_read_by_plain_sqlite(encrypted_database: Path) -> None:
    with (
        contextlib.closing(sqlite3.connect(encrypted_database)) as conn,
        pytest.raises(sqlite3.DatabaseError, match="not a database"),
    ):
        conn.execute("SELECT count(*) FROM sqlite_master").fetchall()


def test_encrypted_database_holds_no_data_in_clear(encrypted_database: Path) -> None:
    assert not Path(f"{encrypted_database}-wal").exists()
    assert SECRET_NAME.encode() not in encrypted_database.read_bytes()


def test_plaintext_database_does_hold_the_name_in_clear(plaintext_database: Path) -> None:
    # The control for the test above: the name would be visible without encryption.
    assert SECRET_NAME.encode() in plaintext_database.read_bytes()


@pytest.mark.slow
def test_restart_with_the_key_finds_the_data(dirs: DaemonDirs, encrypted_database: Path) -> None:
    with daemon_process(dirs, env=dirs.env(MIMIR_DB_KEY=KEY)):
        project = blocking_call(dirs.socket, "project.get", {"project": SECRET_NAME})
        status = blocking_call(dirs.socket, "daemon.status")["result"]
    assert project["result"]["name"] == SECRET_NAME
    assert status["database_encrypted"] is True


@pytest.mark.slow
def test_wrong_key_is_refused_and_the_file_is_untouched(
    dirs: DaemonDirs, encrypted_database: Path
) -> None:
    before = file_digest(encrypted_database)
    code, stderr = refused_start(dirs, MIMIR_DB_KEY=WRONG_KEY)
    assert code == 1
    [error] = error_lines(stderr)
    assert error.startswith("mimird: ")
    assert "key is wrong" in error
    assert file_digest(encrypted_database) == before


@pytest.mark.slow
def test_wrong_key_error_shows_neither_key(dirs: DaemonDirs, encrypted_database: Path) -> None:
    _, stderr = refused_start(dirs, MIMIR_DB_KEY=WRONG_KEY)
    assert WRONG_KEY not in stderr
    assert KEY not in stderr


@pytest.mark.slow
def test_encrypted_database_without_a_key_is_refused_and_untouched(
    dirs: DaemonDirs, encrypted_database: Path
) -> None:
    before = file_digest(encrypted_database)
    code, stderr = refused_start(dirs)
    assert code == 1
    [error] = error_lines(stderr)
    assert "is encrypted" in error
    assert "no key is configured" in error
    assert file_digest(encrypted_database) == before


def test_key_for_a_plaintext_database_is_refused_and_the_file_untouched(
    dirs: DaemonDirs, plaintext_database: Path
) -> None:
    before = file_digest(plaintext_database)
    code, stderr = refused_start(dirs, MIMIR_DB_KEY=KEY)
    assert code == 1
    [error] = error_lines(stderr)
    assert "is not encrypted" in error
    assert file_digest(plaintext_database) == before


def _key_by_flag(dirs: DaemonDirs, key_file: Path) -> tuple[list[str], dict[str, str]]:
    return ["--db-key-file", str(key_file)], {}


def _key_by_env_file(dirs: DaemonDirs, key_file: Path) -> tuple[list[str], dict[str, str]]:
    return [], {"MIMIR_DB_KEY_FILE": str(key_file)}


def _key_by_credential(dirs: DaemonDirs, key_file: Path) -> tuple[list[str], dict[str, str]]:
    credentials = dirs.root / "credentials"
    credentials.mkdir(mode=0o700)
    key_file.rename(credentials / "mimir-db-key")
    return [], {"CREDENTIALS_DIRECTORY": str(credentials)}


def _key_by_config_file(dirs: DaemonDirs, key_file: Path) -> tuple[list[str], dict[str, str]]:
    dirs.config.write_text(f'[database]\nkey_file = "{key_file}"\n')
    return [], {}


@pytest.mark.slow
@pytest.mark.parametrize(
    "key_source",
    [_key_by_flag, _key_by_env_file, _key_by_credential, _key_by_config_file],
    ids=["db-key-file-flag", "MIMIR_DB_KEY_FILE", "systemd-credential", "config-key_file"],
)
def test_key_from_a_file_opens_the_encrypted_database(
    dirs: DaemonDirs,
    encrypted_database: Path,
    key_source: Callable[[DaemonDirs, Path], tuple[list[str], dict[str, str]]],
) -> None:
    key_file = dirs.root / "db.key"
    key_file.write_text(KEY + "\n")  # the trailing newline an editor adds is not the key's
    key_file.chmod(0o600)
    args, env = key_source(dirs, key_file)
    with daemon_process(dirs, *args, env=dirs.env(**env)):
        status = blocking_call(dirs.socket, "daemon.status")["result"]
    assert status["database_encrypted"] is True
    assert status["counts"]["projects"] == 1


@pytest.mark.slow
def test_key_never_appears_in_the_log_or_in_daemon_status(
    dirs: DaemonDirs, encrypted_database: Path
) -> None:
    with daemon_process(dirs, "--log-level", "debug", env=dirs.env(MIMIR_DB_KEY=KEY)) as daemon:
        path = project_dir(dirs, "another")
        blocking_call(dirs.socket, "project.add", {"path": str(path)})
        status = blocking_call(dirs.socket, "daemon.status")
        assert daemon.terminate(STOP_TIMEOUT_S) == 0
    assert KEY not in repr(status)
    assert "daemon_stopped" in daemon.stderr  # the log is there, and complete
    assert KEY not in daemon.stderr


@pytest.mark.slow
def test_backup_of_an_encrypted_database_is_encrypted_with_the_same_key(
    dirs: DaemonDirs,
) -> None:
    with migrated(dirs.database, OLDEST_REVISION, key=KEY) as engine:
        project_id = insert_old_project(engine, SECRET_NAME, str(dirs.root / "legacy"))
    with daemon_process(dirs, env=dirs.env(MIMIR_DB_KEY=KEY)) as daemon:
        assert daemon.terminate(STOP_TIMEOUT_S) == 0
    [backup] = backups(dirs)
    assert backup.read_bytes()[: len(SQLITE_HEADER)] != SQLITE_HEADER
    assert SECRET_NAME.encode() not in backup.read_bytes()
    with contextlib.closing(sqlcipher_connect(backup, KEY)) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (OLDEST_REVISION,)
        ]
        assert conn.execute("SELECT id, name FROM projects").fetchall() == [
            (project_id, SECRET_NAME)
        ]


@pytest.mark.slow
def test_key_from_the_environment_is_wiped_from_proc_environ(
    dirs: DaemonDirs, encrypted_database: Path
) -> None:
    # unsetenv() alone leaves the key in /proc/<pid>/environ, readable by every
    # process of the user (agents included) for the daemon's whole life.
    with daemon_process(dirs, env=dirs.env(MIMIR_DB_KEY=KEY)) as daemon:
        environ = Path(f"/proc/{daemon.proc.pid}/environ").read_bytes()
    assert KEY.encode() not in environ
    assert b"MIMIR_DB_KEY=" in environ  # the name stays, only the value is wiped


# ---- integrity after an unclean shutdown -------------------------------------------------


def fill_pages(conn: sa.Connection) -> None:
    """Enough journal (400 texts) for a database of many pages."""
    session_id = add_session(conn, add_project(conn, "api"))
    journal_texts(conn, session_id, [f"text number {n} " * 20 for n in range(400)])


def tear_a_page_as_if_killed(path: Path) -> None:
    """Mark the last run as never stopped (so the next start checks the database)
    and overwrite a page in the middle of the file, as a torn write would."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("UPDATE daemon_runs SET status = 'running'")
        conn.commit()
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    with open(path, "r+b") as f:
        f.seek(page_size * (pages // 2))
        f.write(b"\xff" * page_size)


async def test_a_database_damaged_by_a_crash_is_refused_with_where_the_backups_are(
    dirs: DaemonDirs,
) -> None:
    async with open_store(dirs) as store:
        await store.write(fill_pages)
    tear_a_page_as_if_killed(dirs.database)
    with pytest.raises(StartupError) as refused:
        async with open_store(dirs):
            pass
    message = str(refused.value)
    assert "failed its integrity check after an unclean shutdown" in message
    assert str(dirs.state / "backups") in message
    assert "mimirctl db backup" in message


async def test_the_check_reports_damage_that_stops_sqlite_itself(dirs: DaemonDirs) -> None:
    """What db.check runs: damage is a finding, never an error of the check."""
    async with open_store(dirs) as store:
        await store.write(fill_pages)
        assert await store.read(integrity_problems) == []
    tear_a_page_as_if_killed(dirs.database)
    engine = sa.create_engine(f"sqlite:///{dirs.database}")
    try:
        with engine.connect() as conn:
            for full in (False, True):
                problems = integrity_problems(conn, full=full)
                assert problems, "the torn page is found"
                assert len(problems) <= 100
    finally:
        engine.dispose()
