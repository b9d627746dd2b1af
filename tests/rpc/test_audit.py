"""The audit log: every mutating call, successful or not (refused params too), is
recorded with who made it (uid, pid), what it acted on and how it ended; nothing
else is recorded (tests/rpc/test_audit_coverage.py calls every method).

The rows are read straight from the SQLite file (WAL mode: reading beside the
running daemon is safe). A call's audit row is written before its response is
sent, so once a response has arrived the row is there.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any, Final

import msgspec
import pytest
import sqlalchemy as sa
import trio

from mimird import policy
from mimird.config import DatabaseSection
from mimird.rpc.audit import MAX_PARAMS_CHARS, MAX_PENDING_CHARS, AuditLog
from mimird.rpc.registry import CallContext, PeerCredentials
from mimird.store import Store
from mimird.store.schema import audit_log
from mimird.wire.errors import ErrorCode
from tests.support.helpers import DaemonDirs, TrioClient

DEADLINE_S: Final = 10.0


def audit_rows(dirs: DaemonDirs) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(f"file:{dirs.database}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM audit_log ORDER BY id").fetchall()
    return [dict(row) for row in rows]


def project_dir(dirs: DaemonDirs, name: str) -> Path:
    path = dirs.root / "projects" / name
    path.mkdir(parents=True)
    return path


async def call(client: TrioClient, method: str, params: Any = None) -> dict[str, Any]:
    """The whole response."""
    with trio.fail_after(DEADLINE_S):
        return await client.call_raw(method, params)


async def add_project(client: TrioClient, dirs: DaemonDirs, name: str) -> dict[str, Any]:
    response = await call(client, "project.add", {"path": str(project_dir(dirs, name))})
    assert "result" in response, response
    project: dict[str, Any] = response["result"]
    return project


async def test_successful_project_add_is_recorded_with_caller_and_target(
    client: TrioClient, dirs: DaemonDirs
) -> None:
    path = project_dir(dirs, "api")
    response = await call(client, "project.add", {"path": str(path), "description": "d"})
    project = response["result"]
    [row] = audit_rows(dirs)
    assert row["uid"] == os.geteuid()
    assert row["pid"] == os.getpid()  # the in-process daemon's client is this process
    assert row["method"] == "project.add"
    assert row["target"] == project["id"]
    assert row["outcome"] == "ok"
    assert row["error_code"] is None
    assert row["error_message"] is None
    assert row["at"]
    assert str(path) in row["params"]


async def test_successful_project_update_is_recorded(client: TrioClient, dirs: DaemonDirs) -> None:
    project = await add_project(client, dirs, "api")
    response = await call(
        client, "project.update", {"project": "api", "description": "the API server"}
    )
    assert "result" in response, response
    row = audit_rows(dirs)[-1]
    assert (row["method"], row["target"], row["outcome"], row["error_code"]) == (
        "project.update",
        project["id"],
        "ok",
        None,
    )


async def test_successful_project_remove_is_recorded(client: TrioClient, dirs: DaemonDirs) -> None:
    project = await add_project(client, dirs, "api")
    response = await call(client, "project.remove", {"project": project["id"]})
    assert "result" in response, response
    row = audit_rows(dirs)[-1]
    assert (row["method"], row["target"], row["outcome"], row["error_code"]) == (
        "project.remove",
        project["id"],
        "ok",
        None,
    )


async def test_add_that_fails_as_already_existing_is_recorded_as_an_error(
    client: TrioClient, dirs: DaemonDirs
) -> None:
    project = await add_project(client, dirs, "api")
    response = await call(client, "project.add", {"path": project["path"]})
    assert response["error"]["code"] == ErrorCode.ALREADY_EXISTS
    rows = audit_rows(dirs)
    assert len(rows) == 2
    row = rows[-1]
    assert row["method"] == "project.add"
    assert row["outcome"] == "error"
    assert row["error_code"] == ErrorCode.ALREADY_EXISTS
    assert row["error_message"] == response["error"]["message"]
    assert (row["uid"], row["pid"]) == (os.geteuid(), os.getpid())


async def test_update_of_an_unknown_project_is_recorded_as_an_error_naming_it(
    client: TrioClient, dirs: DaemonDirs
) -> None:
    response = await call(client, "project.update", {"project": "ghost", "description": "x"})
    assert response["error"]["code"] == ErrorCode.NOT_FOUND
    [row] = audit_rows(dirs)
    assert (row["method"], row["target"], row["outcome"], row["error_code"]) == (
        "project.update",
        "ghost",
        "error",
        ErrorCode.NOT_FOUND,
    )


async def test_remove_of_an_unknown_project_is_recorded_as_an_error_naming_it(
    client: TrioClient, dirs: DaemonDirs
) -> None:
    response = await call(client, "project.remove", {"project": "ghost"})
    assert response["error"]["code"] == ErrorCode.NOT_FOUND
    [row] = audit_rows(dirs)
    assert (row["method"], row["target"], row["outcome"], row["error_code"]) == (
        "project.remove",
        "ghost",
        "error",
        ErrorCode.NOT_FOUND,
    )


async def test_calls_that_change_nothing_are_not_recorded(
    client: TrioClient, dirs: DaemonDirs
) -> None:
    await add_project(client, dirs, "api")
    recorded = audit_rows(dirs)
    for method, params in [
        ("project.list", None),
        ("project.list", {"include_archived": True}),
        ("project.get", {"project": "api"}),
        ("project.get", {"project": "ghost"}),
        ("daemon.status", None),
        ("rpc.discover", None),
    ]:
        await call(client, method, params)
    assert audit_rows(dirs) == recorded


@pytest.mark.parametrize(
    ("method", "params"),
    [
        pytest.param("project.add", {"path": "/tmp", "colour": "red"}, id="add-unknown-field"),
        pytest.param("project.add", {"path": 5}, id="add-wrong-type"),
        pytest.param("project.add", {}, id="add-missing-path"),
        pytest.param("project.update", ["api"], id="update-array-params"),
        pytest.param("project.update", {"project": "api", "name": "a/b"}, id="update-bad-name"),
        pytest.param("project.remove", {"project": "api", "force": "yes"}, id="remove-wrong-type"),
    ],
)
async def test_mutating_call_rejected_for_invalid_params_is_recorded_as_refused(
    client: TrioClient, dirs: DaemonDirs, method: str, params: Any
) -> None:
    await add_project(client, dirs, "api")
    recorded = audit_rows(dirs)
    response = await call(client, method, params)
    assert response["error"]["code"] == ErrorCode.INVALID_PARAMS
    *before, row = audit_rows(dirs)
    assert before == recorded
    assert (row["method"], row["outcome"], row["error_code"]) == (
        method,
        "error",
        ErrorCode.INVALID_PARAMS,
    )
    assert row["error_message"] == response["error"]["message"]


async def test_an_audit_line_that_cannot_be_made_loses_only_itself(tmp_path: Path) -> None:
    """A params value the masking cannot walk fails the audit line, not the call
    that already happened (before, the exception dropped the client's connection)."""

    def failing_mask(config: dict[str, Any]) -> dict[str, Any]:
        raise RecursionError("maximum recursion depth exceeded")

    peer = PeerCredentials(pid=os.getpid(), uid=os.geteuid(), gid=os.getegid())
    ctx = CallContext(peer=peer, conn_id=1)

    class WithConfig(msgspec.Struct):
        config: dict[str, Any]

    async with Store.open(
        tmp_path / "mimir.db", key=None, options=DatabaseSection(), backup_dir=tmp_path / "backups"
    ) as store:
        audit = AuditLog(store, failing_mask)
        await audit.record(ctx, "project.update", b"{}", WithConfig(config={"env": {}}))
        rows = await store.read(lambda conn: conn.execute(sa.select(audit_log)).all())
    assert rows == []


class Note(msgspec.Struct):
    project: str
    description: str


async def stored_audit_rows(store: Store) -> list[tuple[str, str | None]]:
    rows = await store.read(
        lambda conn: conn.execute(
            sa.select(audit_log.c.method, audit_log.c.target).order_by(audit_log.c.id)
        ).all()
    )
    return [(row.method, row.target) for row in rows]


def set_max_pages(conn: sa.Connection, pages: int) -> None:
    # SQLite's own limit on the file's size: past it, writes fail with SQLITE_FULL
    # ("database or disk is full"), as on a full disk.
    conn.exec_driver_sql(f"PRAGMA max_page_count = {pages}")


async def test_rows_a_full_disk_refuses_are_kept_and_written_when_space_returns(
    tmp_path: Path,
) -> None:
    peer = PeerCredentials(pid=os.getpid(), uid=os.geteuid(), gid=os.getegid())
    ctx = CallContext(peer=peer, conn_id=1)
    note = "x" * 20_000  # a row that needs new pages
    async with Store.open(
        tmp_path / "mimir.db", key=None, options=DatabaseSection(), backup_dir=tmp_path / "backups"
    ) as store:
        audit = AuditLog(store, policy.mask_config)
        pages = await store.read(
            lambda conn: conn.exec_driver_sql("PRAGMA page_count").scalar_one()
        )
        await store.write(set_max_pages, pages)
        for name in ("first", "second"):
            params = Note(project=name, description=note)
            await audit.record(ctx, "project.update", msgspec.json.encode(params), params)
        assert await stored_audit_rows(store) == []
        assert audit.pending == 2
        await store.write(set_max_pages, 1 << 30)
        params = Note(project="third", description="")
        await audit.record(ctx, "project.remove", msgspec.json.encode(params), params)
        assert audit.pending == 0
        assert await stored_audit_rows(store) == [
            ("project.update", "first"),
            ("project.update", "second"),
            ("project.remove", "third"),
        ]


async def test_rows_kept_for_a_full_disk_are_bounded(tmp_path: Path) -> None:
    peer = PeerCredentials(pid=os.getpid(), uid=os.geteuid(), gid=os.getegid())
    ctx = CallContext(peer=peer, conn_id=1)
    per_row = MAX_PARAMS_CHARS  # the largest row there is
    bound = MAX_PENDING_CHARS // per_row
    async with Store.open(
        tmp_path / "mimir.db", key=None, options=DatabaseSection(), backup_dir=tmp_path / "backups"
    ) as store:
        audit = AuditLog(store, policy.mask_config)
        pages = await store.read(
            lambda conn: conn.exec_driver_sql("PRAGMA page_count").scalar_one()
        )
        await store.write(set_max_pages, pages)
        for n in range(bound + 5):
            params = Note(project=f"p{n}", description="x" * per_row)
            await audit.record(ctx, "project.update", msgspec.json.encode(params), params)
        assert audit.pending == bound  # the oldest kept, the newest dropped
        await store.write(set_max_pages, 1 << 30)
        await audit.flush()
        written = await stored_audit_rows(store)
    assert written == [("project.update", f"p{n}") for n in range(bound)]
