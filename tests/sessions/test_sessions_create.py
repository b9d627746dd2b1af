"""session.create: worktrees, in-place and private workspaces, and what the call answers.

Over the socket of an in-process daemon, against real git repositories (see
tests/support/sessions.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mimird.wire.errors import ErrorCode
from tests.support.helpers import (
    README,
    TrioClient,
    add_project,
    count_git_calls,
    git,
    write,
)
from tests.support.sessions import (
    branch_tip,
    branches,
    commit_all,
    create,
    error_of,
    files_of,
    git_worktrees,
    head,
    workspace,
)

pytestmark = pytest.mark.timeout(60)


# ---- session.create --------------------------------------------------------------------------


async def test_create_makes_a_worktree_on_a_new_branch_from_head(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project, title="Fix the login bug")
    path = workspace(session)
    assert session["status"] == "created"
    assert session["workspace"]["kind"] == "worktree"
    assert session["workspace"]["state"] == "ok"
    assert session["workspace"]["base_commit"] == head(repo)
    assert session["workspace"]["base_ref"] == "main"
    branch = session["workspace"]["branch"]
    assert branch.startswith("mimir/fix-the-login-bug-")
    assert git(path, "symbolic-ref", "--short", "HEAD").strip() == branch
    assert head(path) == head(repo)
    assert files_of(path) == files_of(repo)
    assert path in git_worktrees(repo)


async def test_create_from_a_base_ref_starts_the_branch_at_that_commit(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    first = head(repo)
    git(repo, "tag", "v1")
    write(repo, {"later.txt": "later\n"})
    commit_all(repo, "later")
    session = await create(client, project, base_ref="v1")
    assert session["workspace"]["base_ref"] == "v1"
    assert session["workspace"]["base_commit"] == first
    assert head(workspace(session)) == first
    assert not (workspace(session) / "later.txt").exists()


async def test_create_asks_git_each_thing_once(
    client: TrioClient, project: dict[str, Any], repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a worktree session costs in git processes before its agent starts: the
    # project's state (or the base_ref resolved), the branch looked up, the add.
    # The add does not look up the branch and the commit again (it did, twice more).
    calls = count_git_calls(monkeypatch)
    await create(client, project)
    assert calls == ["status", "show-ref", "worktree"]
    calls.clear()
    await create(client, project, base_ref="main")
    assert calls == ["rev-parse", "show-ref", "worktree"]


async def test_create_with_an_explicit_branch_uses_that_name(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project, branch="feature/explicit")
    assert session["workspace"]["branch"] == "feature/explicit"
    assert branch_tip(repo, "feature/explicit") == head(repo)
    assert git(workspace(session), "symbolic-ref", "--short", "HEAD").strip() == "feature/explicit"


async def test_create_in_place_works_in_the_project_directory(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project, workspace="in_place")
    assert session["workspace"]["kind"] == "in_place"
    assert workspace(session) == repo
    assert session["workspace"]["branch"] == "main"
    assert session["workspace"]["base_commit"] == head(repo)
    assert git_worktrees(repo) == [repo]
    assert branches(repo) == ["main"]


async def test_create_in_a_project_outside_git_makes_a_private_copy(
    client: TrioClient, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    write(plain, {"notes.txt": "mine\n", "sub/data.bin": b"\x00\x01\xff"})
    project = await add_project(client, plain)
    session = await create(client, project)
    copy = workspace(session)
    assert session["workspace"]["kind"] == "private"
    assert session["workspace"]["branch"] is None
    assert copy != plain.resolve()
    assert files_of(copy) == files_of(plain)
    (copy / "notes.txt").write_text("changed in the copy\n")
    assert (plain / "notes.txt").read_text() == "mine\n"


async def test_a_worktree_in_a_project_outside_git_is_invalid_params(
    client: TrioClient, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    write(plain, {"notes.txt": "mine\n"})
    project = await add_project(client, plain)
    error = await error_of(
        client, "session.create", {"project": project["id"], "workspace": "worktree"}
    )
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "workspace"


async def test_create_in_a_dirty_project_with_a_base_ref_succeeds_without_the_dirt(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    (repo / "README.md").write_text("uncommitted\n")
    session = await create(client, project, base_ref="main")
    assert (workspace(session) / "README.md").read_text() == README
    assert (repo / "README.md").read_text() == "uncommitted\n"
