"""The audit log of session methods.

Over the socket of an in-process daemon, against real git repositories (see
tests/support/sessions.py)."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

import pytest

from mimird.wire.errors import ErrorCode
from tests.support.helpers import (
    DaemonDirs,
    TrioClient,
)
from tests.support.sessions import (
    CALL_TIMEOUT_S,
    call,
    create,
    error_of,
)

pytestmark = pytest.mark.timeout(60)


# ---- the audit log ---------------------------------------------------------------------------


def audit_rows(dirs: DaemonDirs) -> list[tuple[str, str | None, str, int | None]]:
    with contextlib.closing(sqlite3.connect(dirs.database, timeout=CALL_TIMEOUT_S)) as db:
        rows = db.execute(
            "SELECT method, target, outcome, error_code FROM audit_log"
            " WHERE method LIKE 'session.%' ORDER BY id"
        ).fetchall()
    return [tuple(row) for row in rows]


async def test_every_mutating_session_call_is_audited_with_its_outcome(
    client: TrioClient, dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = await create(client, project)
    ref = {"session": session["id"]}
    await call(client, "session.update", {**ref, "title": "t"})
    await call(client, "session.archive", ref)
    await call(client, "session.restore", ref)
    await call(client, "session.repair", ref)
    await call(client, "session.get", ref)  # not mutating: not audited
    await error_of(client, "session.restore", ref)
    rows = audit_rows(dirs)
    assert [(method, outcome, code) for method, _, outcome, code in rows] == [
        ("session.create", "ok", None),
        ("session.update", "ok", None),
        ("session.archive", "ok", None),
        ("session.restore", "ok", None),
        ("session.repair", "ok", None),
        ("session.restore", "error", ErrorCode.INVALID_STATE),
    ]


async def test_the_audit_log_names_the_session_each_call_acted_on(
    client: TrioClient, dirs: DaemonDirs, project: dict[str, Any]
) -> None:
    session = await create(client, project)
    await call(client, "session.delete", {"session": session["id"]})
    await error_of(client, "session.delete", {"session": session["id"]})
    assert [target for _, target, _, _ in audit_rows(dirs)] == [session["id"]] * 3
