"""AuditLog on a real store: what a row holds when the call's params carry a config
with secret env values, secrets the call names, or a result that holds a session.
Each test killed a mutant of mimird/rpc/audit.py (``make mutate``) that the audit
tests through the daemon let survive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa

from mimird import policy
from mimird.config import DatabaseSection
from mimird.rpc.audit import MAX_PENDING_ROWS, AuditLog, SecretsOf
from mimird.rpc.registry import CallContext, PeerCredentials
from mimird.store import Store
from mimird.store.schema import audit_log
from tests.rpc.test_audit import set_max_pages

CTX = CallContext(
    peer=PeerCredentials(pid=os.getpid(), uid=os.geteuid(), gid=os.getegid()), conn_id=1
)


class WithConfig(msgspec.Struct):
    project: str
    config: dict[str, Any]


class Note(msgspec.Struct):
    description: str


class Session(msgspec.Struct):
    id: str


class Answer(msgspec.Struct):
    session: Session


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open(
        tmp_path / "mimir.db", key=None, options=DatabaseSection(), backup_dir=tmp_path / "backups"
    ) as opened:
        yield opened


async def rows(store: Store) -> list[tuple[str | None, str]]:
    found = await store.read(
        lambda conn: conn.execute(
            sa.select(audit_log.c.target, audit_log.c.params).order_by(audit_log.c.id)
        ).all()
    )
    return [(row.target, row.params) for row in found]


async def test_a_secret_env_value_in_a_config_is_masked_without_other_secrets(
    store: Store,
) -> None:
    # secrets_of finds none (the default): the config's own secret flag is enough.
    params = WithConfig(
        project="demo",
        config={"env": {"TOKEN": {"value": "sk-live-123", "secret": True}, "MODE": "dev"}},
    )
    await AuditLog(store, policy.mask_config).record(
        CTX, "project.update", msgspec.json.encode(params), params
    )
    [(target, stored)] = await rows(store)
    assert target == "demo"
    assert "sk-live-123" not in stored
    assert msgspec.json.decode(stored)["config"]["env"] == {"TOKEN": "***", "MODE": "dev"}


async def test_the_secrets_a_call_names_are_masked_in_every_string(store: Store) -> None:
    async def secrets_of(params: Any) -> set[str]:
        return {"hunter2"}

    checked: SecretsOf = secrets_of
    params = Note(description="the password is hunter2")
    await AuditLog(store, policy.mask_config, checked).record(
        CTX, "session.update", msgspec.json.encode(params), params
    )
    [(_, stored)] = await rows(store)
    assert "hunter2" not in stored
    assert msgspec.json.decode(stored) == {"description": "the password is ***"}


async def test_the_target_is_the_session_a_result_holds(store: Store) -> None:
    params = Note(description="no names here")
    await AuditLog(store, policy.mask_config).record(
        CTX, "session.create", b"{}", params, result=Answer(session=Session(id="s-42"))
    )
    assert [target for target, _ in await rows(store)] == ["s-42"]


async def test_a_row_the_database_can_never_take_is_not_kept_for_later(store: Store) -> None:
    # Not a full disk: SQLite cannot hold the pid at all. Keeping the row would
    # retry it with every later row, forever.
    huge = CallContext(peer=PeerCredentials(pid=2**70, uid=os.geteuid(), gid=0), conn_id=1)
    audit = AuditLog(store, policy.mask_config)
    params = Note(description="lost")
    await audit.record(huge, "session.update", msgspec.json.encode(params), params)
    assert audit.pending == 0
    await audit.record(CTX, "session.update", msgspec.json.encode(params), params)
    assert audit.pending == 0
    assert len(await rows(store)) == 1


async def test_rows_kept_for_a_full_disk_are_at_most_max_pending_rows(store: Store) -> None:
    # Small rows: the row bound, not the characters bound, is what holds.
    audit = AuditLog(store, policy.mask_config)
    pages = await store.read(lambda conn: conn.exec_driver_sql("PRAGMA page_count").scalar_one())
    await store.write(set_max_pages, pages)
    params = Note(description="small")
    for _ in range(MAX_PENDING_ROWS + 100):  # the first ones still fit in the last page
        await audit.record(CTX, "session.update", msgspec.json.encode(params), params)
    assert audit.pending == MAX_PENDING_ROWS


# Run in a process of its own: the log lines are read from its stderr, written by
# mimird's own logging setup (structlog caches a logger on first use, so capturing
# them inside the test process depends on which test logged first).
FULL_DISK_SCRIPT = """
import sys
from pathlib import Path
import msgspec, trio
from mimird import policy
from mimird.config import DatabaseSection
from mimird.log import configure_logging
from mimird.rpc.audit import MAX_PENDING_ROWS, AuditLog
from mimird.store import Store
from tests.rpc.test_audit import set_max_pages
from tests.rpc.test_audit_log import CTX, Note

async def main(root):
    async with Store.open(
        Path(root, "mimir.db"), key=None, options=DatabaseSection(), backup_dir=Path(root, "b")
    ) as store:
        audit = AuditLog(store, policy.mask_config)
        params = Note(description="small")

        async def record(params=params):
            await audit.record(CTX, "session.update", msgspec.json.encode(params), params)

        async def disk(full):
            pages = await store.read(
                lambda conn: conn.exec_driver_sql("PRAGMA page_count").scalar_one()
            )
            await store.write(set_max_pages, pages if full else 2**30)

        await disk(full=True)
        while audit.pending < MAX_PENDING_ROWS:
            await record()
        print("FULL", file=sys.stderr, flush=True)
        await record()  # two rows past the bound: each one dropped and counted
        await record()
        await disk(full=False)
        await record()  # the backlog, then this one: the drops are reported once
        await record()  # no backlog: nothing to report
        await disk(full=True)
        await record(Note(description="x" * 50_000))  # needs new pages: kept
        await disk(full=False)
        await record()  # a backlog of one, nothing dropped since the last report

configure_logging("info", "json")
trio.run(main, sys.argv[1])
"""


def test_dropped_rows_are_counted_in_the_log_and_reported_once_written(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    after_full = done.stderr.split("FULL\n", 1)[1]
    lines = [json.loads(line) for line in after_full.splitlines()]
    events = [
        {k: v for k, v in line.items() if k not in ("timestamp", "method", "error")}
        for line in lines
        if line["event"].startswith("audit_")
    ]
    assert events == [
        {"event": "audit_write_failed", "level": "error", "pending": MAX_PENDING_ROWS + 1},
        {"event": "audit_rows_dropped", "level": "warning", "count": 1, "total": 1},
        {"event": "audit_write_failed", "level": "error", "pending": MAX_PENDING_ROWS + 1},
        {"event": "audit_rows_dropped", "level": "warning", "count": 1, "total": 2},
        {
            "event": "audit_backlog_written",
            "level": "warning",
            "rows": MAX_PENDING_ROWS,
            "dropped": 2,
        },
        {"event": "audit_write_failed", "level": "error", "pending": 1},
        {"event": "audit_backlog_written", "level": "warning", "rows": 1, "dropped": 0},
    ]
