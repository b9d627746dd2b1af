"""The session state machine: illegal transitions are refused and change nothing.

Over the socket of an in-process daemon, against real git repositories (see
tests/support/sessions.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import pytest

from mimird.wire.errors import ErrorCode
from tests.support.helpers import (
    TrioClient,
    add_project,
)
from tests.support.sessions import (
    archived,
    call,
    create,
    deleted,
    error_of,
    files_of,
    make_work,
    stored,
    untouched,
    workspace,
)

pytestmark = pytest.mark.timeout(60)


# ---- the state machine -----------------------------------------------------------------------


async def archived_then_deleted(client: TrioClient, session: dict[str, Any]) -> None:
    await archived(client, session)
    await deleted(client, session)


ILLEGAL: Final = [
    # (how the session got there, its status, the call that must be refused)
    (archived, "archived", "session.archive"),
    (untouched, "created", "session.restore"),
    (deleted, "deleted", "session.delete"),
    (deleted, "deleted", "session.archive"),
    (archived_then_deleted, "deleted", "session.delete"),
    (archived_then_deleted, "deleted", "session.archive"),
]


@pytest.mark.parametrize(
    ("prepare", "status", "method"), ILLEGAL, ids=[f"{m}-when-{s}" for _, s, m in ILLEGAL]
)
async def test_an_illegal_transition_is_invalid_state_and_changes_nothing(
    client: TrioClient, project: dict[str, Any], prepare: Any, status: str, method: str
) -> None:
    session = await create(client, project)
    await prepare(client, session)
    before = await stored(client, session)
    assert before["session"]["status"] == status
    error = await error_of(client, method, {"session": session["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert error["data"]["detail"]["status"] == status
    assert error["data"]["id"] == session["id"]
    assert status in error["message"]
    assert await stored(client, session) == before


async def test_a_failed_session_cannot_be_restored_but_can_be_archived(
    client: TrioClient, repo: Path
) -> None:
    project = await add_project(client, repo, config={"setup_command": "exit 1"})
    session = await create(client, project)
    error = await error_of(client, "session.restore", {"session": session["id"]})
    assert (error["code"], error["data"]["detail"]["status"]) == (ErrorCode.INVALID_STATE, "failed")
    assert (await call(client, "session.archive", {"session": session["id"]}))["status"] == (
        "archived"
    )


async def test_an_archived_session_keeps_its_worktree_and_can_be_deleted(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    make_work(workspace(session))
    before = files_of(workspace(session))
    await archived(client, session)
    assert files_of(workspace(session)) == before
    removed = await call(client, "session.delete", {"session": session["id"]})
    assert removed["session"]["status"] == "deleted"
    assert removed["snapshot"]["files"] == 8
