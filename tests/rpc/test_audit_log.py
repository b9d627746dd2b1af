"""AuditLog on a real store: what a row holds when the call's params carry a config
with secret env values, secrets the call names, or a result that holds a session.
Each test killed a mutant of mimird/rpc/audit.py (``make mutate``) that the audit
tests through the daemon let survive."""

from __future__ import annotations

import os
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
