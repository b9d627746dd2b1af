"""Concurrent creates and deletes.

Over the socket of an in-process daemon, against real git repositories (see
tests/support/sessions.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from mimird.wire.errors import ErrorCode
from tests.support.helpers import (
    InProcessDaemon,
    TrioClient,
    git,
)
from tests.support.sessions import (
    CALL_TIMEOUT_S,
    CONCURRENT_CREATES,
    all_sessions,
    create,
    get,
    git_worktrees,
    make_work,
    workspace,
)

pytestmark = pytest.mark.timeout(60)


# ---- concurrency -----------------------------------------------------------------------------


async def test_concurrent_creates_in_one_project_all_succeed_without_colliding(
    daemon: InProcessDaemon, client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    made: list[dict[str, Any]] = []

    async def create_one(n: int) -> None:
        async with TrioClient.connect(daemon.socket) as own:
            # The same title for all: the names must still not collide.
            made.append(await create(own, project, title="same title", task=f"task {n}"))

    with trio.fail_after(CALL_TIMEOUT_S * 2):
        async with trio.open_nursery() as nursery:
            for n in range(CONCURRENT_CREATES):
                nursery.start_soon(create_one, n)
    assert len({s["id"] for s in made}) == CONCURRENT_CREATES
    assert len({s["workspace"]["branch"] for s in made}) == CONCURRENT_CREATES
    assert len({s["workspace"]["path"] for s in made}) == CONCURRENT_CREATES
    assert {s["status"] for s in made} == {"created"}
    assert set(git_worktrees(repo)) == {repo, *(workspace(s) for s in made)}
    for session in made:
        assert (
            git(workspace(session), "symbolic-ref", "--short", "HEAD").strip()
            == (session["workspace"]["branch"])
        )
    assert {s["id"] for s in await all_sessions(client)} == {s["id"] for s in made}


async def test_concurrent_creates_on_one_branch_name_make_exactly_one_session(
    daemon: InProcessDaemon, client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    codes: list[int] = []

    async def create_one() -> None:
        async with TrioClient.connect(daemon.socket) as own:
            with trio.fail_after(CALL_TIMEOUT_S):
                response = await own.call_raw(
                    "session.create", {"project": project["id"], "branch": "contested"}
                )
            codes.append(response["error"]["code"] if "error" in response else 0)

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(create_one)
    assert sorted(codes) == [ErrorCode.ALREADY_EXISTS] * 4 + [0]
    assert len(git_worktrees(repo)) == 2
    assert len(await all_sessions(client, include_deleted=True)) == 1


async def test_two_deletes_of_one_session_at_once_delete_it_once_and_keep_its_snapshot(
    daemon: InProcessDaemon, client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    make_work(workspace(session))
    answers: list[dict[str, Any]] = []

    async def delete() -> None:
        async with TrioClient.connect(daemon.socket) as own:
            with trio.fail_after(CALL_TIMEOUT_S):
                answers.append(await own.call_raw("session.delete", {"session": session["id"]}))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(delete)
        nursery.start_soon(delete)
    [ok] = [a for a in answers if "result" in a]
    [refused] = [a for a in answers if "error" in a]
    assert refused["error"]["code"] == ErrorCode.INVALID_STATE
    snapshot = ok["result"]["snapshot"]
    assert snapshot["files"] == 8
    got = await get(client, session)
    assert got["workspace"]["snapshot_commit"] == snapshot["commit"]
    assert git(repo, "rev-parse", snapshot["ref"]).strip() == snapshot["commit"]
