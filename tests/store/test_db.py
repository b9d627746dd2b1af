"""``db.check`` and ``db.backup`` (and ``mimirctl db``) against a real daemon and
real SQLite files: a check that finds what is wrong, backups that are complete,
consistent while writes go on, private, encrypted like the database, and never
overwrite anything."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any, Final

import pytest
import sqlalchemy as sa
import trio
import trio.lowlevel

from mimird.config import DatabaseSection, Secret
from mimird.store import Store, schema
from mimird.wire.errors import ErrorCode
from tests.journal.test_search import KEY, add_project, add_session, journal_texts, open_store
from tests.mimirctl.test_mimirctl import mimirctl_in
from tests.support.helpers import DaemonDirs, InProcessDaemon, TrioClient, run_mimirctl

pytestmark = pytest.mark.timeout(60)

SQLITE_HEADER: Final = b"SQLite format 3\x00"


def plain_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return conn.execute(sql).fetchall()


def leftovers(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if name.endswith(".tmp")]


# ---- db.check --------------------------------------------------------------------------


async def test_a_sound_database_checks_ok_quick_and_full(client: TrioClient) -> None:
    quick = await client.call("db.check", {})
    assert (quick["ok"], quick["kind"], quick["problems"]) == (True, "quick", [])
    full = await client.call("db.check", {"full": True})
    assert (full["ok"], full["kind"], full["problems"]) == (True, "full", [])


async def test_a_check_reports_a_row_that_refers_to_nothing(
    daemon: InProcessDaemon, client: TrioClient
) -> None:
    # Written behind mimird's back, with foreign keys off (sqlite3's default).
    with contextlib.closing(sqlite3.connect(daemon.dirs.database)) as conn:
        conn.execute(
            "INSERT INTO events (session_id, seq, kind, data, created_at) "
            "VALUES ('no-such-session', 1, 'update', '{}', '2026-01-01T00:00:00Z')"
        )
        conn.commit()
    found = await client.call("db.check", {})
    assert found["ok"] is False
    assert found["problems"] == ["row 1 of events refers to a missing row of sessions"]
    done = await trio.to_thread.run_sync(run_mimirctl, daemon.dirs, "db", "check")
    assert done.returncode == 1
    assert "database has problems (quick check):" in done.stdout
    assert "row 1 of events refers to a missing row of sessions" in done.stdout


# ---- db.backup -------------------------------------------------------------------------


async def test_a_backup_is_a_complete_private_copy(
    daemon: InProcessDaemon, client: TrioClient, tmp_path: Path
) -> None:
    project = tmp_path / "api"
    project.mkdir()
    await client.call("project.add", {"path": str(project), "name": "api"})
    target = tmp_path / "copy.db"
    result = await client.call("db.backup", {"path": str(target)})
    assert result["path"] == str(target)
    assert result["bytes"] == target.stat().st_size
    assert result["encrypted"] is False
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert plain_rows(target, "SELECT name FROM projects") == [("api",)]
    assert plain_rows(target, "PRAGMA integrity_check") == [("ok",)]
    assert leftovers(tmp_path) == []
    # Without a path: a new file in the state directory's backups/.
    default = await client.call("db.backup", {})
    path = Path(default["path"])
    assert path.parent == daemon.dirs.state / "backups"
    assert path.name.startswith("mimir-backup-")
    assert plain_rows(path, "SELECT name FROM projects") == [("api",)]


async def test_a_backup_never_overwrites_and_refuses_bad_paths(
    client: TrioClient, tmp_path: Path
) -> None:
    existing = tmp_path / "precious.db"
    existing.write_text("not a database, and not to be lost")
    error = await client.call_raw("db.backup", {"path": str(existing)})
    assert error["error"]["code"] == ErrorCode.ALREADY_EXISTS
    assert existing.read_text() == "not a database, and not to be lost"
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    error = await client.call_raw("db.backup", {"path": str(tmp_path / "dangling")})
    assert error["error"]["code"] == ErrorCode.ALREADY_EXISTS
    assert not (tmp_path / "nowhere").exists()
    for bad in ("relative.db", str(tmp_path / "no-such-dir" / "x.db")):
        error = await client.call_raw("db.backup", {"path": bad})
        assert error["error"]["code"] == ErrorCode.INVALID_PARAMS
        assert error["error"]["data"]["field"] == "path"
    assert leftovers(tmp_path) == []


async def test_backups_taken_while_writes_go_on_are_each_consistent(
    dirs: DaemonDirs, tmp_path: Path
) -> None:
    async with open_store(dirs) as store:
        session_id = await store.write(lambda conn: add_session(conn, add_project(conn, "api")))
        stop = trio.Event()

        async def keep_writing() -> None:
            n = 0
            while not stop.is_set():
                await store.write(journal_texts, session_id, [f"text {n}", f"more {n}"])
                n += 1
                await trio.lowlevel.checkpoint()

        copies = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_writing)
            for n in range(5):
                copies.append(tmp_path / f"copy{n}.db")
                await store.backup(copies[-1])
                await trio.sleep(0.01)
            stop.set()
    for copy in copies:
        assert plain_rows(copy, "PRAGMA integrity_check") == [("ok",)]
        seqs = [row[0] for row in plain_rows(copy, "SELECT seq FROM events ORDER BY seq")]
        assert seqs == list(range(1, len(seqs) + 1)), "a moment's state: no gap"
        assert plain_rows(copy, "SELECT last_seq FROM sessions") == [(len(seqs),)]
        indexed = plain_rows(copy, "SELECT count(*) FROM events_fts")[0][0]
        assert indexed == len(seqs), "the search index is of the same moment"
    assert plain_rows(copies[-1], "SELECT count(*) FROM events")[0][0] > 0, "writes went on"


async def test_the_backup_of_an_encrypted_database_is_encrypted_with_its_key(
    dirs: DaemonDirs, tmp_path: Path
) -> None:
    secret_word = "quillwort"
    copy = tmp_path / "copy.db"
    async with open_store(dirs, key=KEY) as store:

        def fill(conn: sa.Connection) -> None:
            journal_texts(conn, add_session(conn, add_project(conn, "vault")), [secret_word])

        await store.write(fill)
        await store.backup(copy)
    data = copy.read_bytes()
    assert not data.startswith(SQLITE_HEADER)
    assert secret_word.encode() not in data
    # With the key, the copy opens like the database itself.
    async with Store.open(
        copy,
        key=Secret(KEY.encode()),
        options=DatabaseSection(),
        backup_dir=tmp_path / "backups",
    ) as restored:
        texts = await restored.read(
            lambda conn: conn.execute(sa.select(schema.events.c.data)).scalars().all()
        )
    assert secret_word in texts[0]


async def test_mimirctl_db_backup_takes_a_path_relative_to_where_it_runs(
    daemon: InProcessDaemon, client: TrioClient, tmp_path: Path
) -> None:
    done = await trio.to_thread.run_sync(
        lambda: mimirctl_in(daemon.dirs, tmp_path, "db", "backup", "here.db")
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"backed up to {tmp_path / 'here.db'} (")
    again = await trio.to_thread.run_sync(
        lambda: mimirctl_in(daemon.dirs, tmp_path, "db", "backup", "here.db")
    )
    assert again.returncode == 5, "already exists"
    checked = await trio.to_thread.run_sync(run_mimirctl, daemon.dirs, "db", "check", "--full")
    assert checked.returncode == 0
    assert checked.stdout.startswith("database ok (full check, ")
