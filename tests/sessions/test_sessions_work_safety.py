"""Never lose work (Invariant 4): a delete snapshots first, a restore brings the
work back byte for byte.

Over the socket of an in-process daemon, against real git repositories (see
tests/support/sessions.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from mimird.wire.errors import ErrorCode
from tests.support.helpers import (
    README,
    TrioClient,
    add_project,
    git,
    make_repo,
    write,
)
from tests.support.sessions import (
    branch_tip,
    call,
    commit_all,
    create,
    error_of,
    fail_post_checkout,
    files_of,
    get,
    git_worktrees,
    head,
    main_checkout_state,
    make_work,
    without_git,
    workspace,
)

pytestmark = pytest.mark.timeout(60)


# ---- never lose work (Invariant 4) -----------------------------------------------------------


async def test_delete_and_restore_bring_back_every_file_byte_for_byte(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    make_work(path)
    before = files_of(path)
    removed = await call(client, "session.delete", {"session": session["id"]})
    assert not path.exists()
    assert removed["session"]["status"] == "deleted"
    assert removed["session"]["workspace"]["state"] == "removed"
    assert removed["snapshot"]["ref"] == f"refs/mimir/snapshots/{session['id']}"
    assert removed["snapshot"]["files"] == 8
    restored = await call(client, "session.restore", {"session": session["id"]})
    assert restored["status"] == "created"
    assert restored["workspace"]["state"] == "ok"
    assert files_of(path) == before
    assert (await get(client, session))["git"]["dirty"] is True


async def test_delete_does_not_move_the_sessions_branch(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    write(path, {"committed.txt": "c\n"})
    tip = commit_all(path, "committed work")
    make_work(path)
    removed = await call(client, "session.delete", {"session": session["id"]})
    assert branch_tip(repo, session["workspace"]["branch"]) == tip
    assert git(repo, "rev-parse", f"{removed['snapshot']['commit']}^").strip() == tip


async def test_delete_and_restore_leave_the_main_checkout_and_its_index_untouched(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    write(repo, {"user-untracked.txt": "the user's\n", "user-staged.txt": "staged\n"})
    git(repo, "add", "user-staged.txt")
    before = main_checkout_state(repo)
    session = await create(client, project, base_ref="main")
    make_work(workspace(session))
    await call(client, "session.delete", {"session": session["id"]})
    assert main_checkout_state(repo) == before
    await call(client, "session.restore", {"session": session["id"]})
    assert main_checkout_state(repo) == before


async def test_ignored_files_are_not_in_the_snapshot(client: TrioClient, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {".gitignore": "*.log\nbuild/\n", "README.md": README})
    project = await add_project(client, repo)
    session = await create(client, project)
    path = workspace(session)
    write(path, {"debug.log": "noise\n", "build/out.o": b"\x7fELF", "kept.txt": "kept\n"})
    removed = await call(client, "session.delete", {"session": session["id"]})
    listed = git(repo, "ls-tree", "-r", "--name-only", removed["snapshot"]["commit"]).split()
    assert sorted(listed) == [".gitignore", "README.md", "kept.txt"]


async def test_delete_with_delete_branch_keeps_the_work_reachable_from_the_snapshot_ref(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    branch = session["workspace"]["branch"]
    write(path, {"committed.txt": "committed\n"})
    commit_all(path, "committed work")
    write(path, {"untracked.txt": "untracked\n"})
    await call(client, "session.delete", {"session": session["id"], "delete_branch": True})
    assert branch_tip(repo, branch) is None
    ref = f"refs/mimir/snapshots/{session['id']}"
    assert git(repo, "show", f"{ref}:committed.txt") == "committed\n"
    assert git(repo, "show", f"{ref}:untracked.txt") == "untracked\n"


async def test_restore_after_delete_branch_brings_back_branch_and_work(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    branch = session["workspace"]["branch"]
    write(path, {"committed.txt": "committed\n"})
    tip = commit_all(path, "committed work")
    make_work(path)
    before = files_of(path)
    await call(client, "session.delete", {"session": session["id"], "delete_branch": True})
    await call(client, "session.restore", {"session": session["id"]})
    assert branch_tip(repo, branch) == tip
    assert files_of(path) == before


def block_snapshot_ref(repo: Path, session_id: str) -> Path:
    """A stale lock file: git's update of the snapshot ref fails (even for root)."""
    lock = repo / ".git" / "refs" / "mimir" / "snapshots" / f"{session_id}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("")
    return lock


async def test_a_delete_whose_snapshot_fails_is_refused_and_removes_nothing(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    make_work(path)
    before = files_of(path)
    stored = without_git(await get(client, session))
    block_snapshot_ref(repo, session["id"])
    error = await error_of(client, "session.delete", {"session": session["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert "nothing was removed" in error["message"]
    assert files_of(path) == before
    assert path in git_worktrees(repo)
    assert branch_tip(repo, session["workspace"]["branch"]) == head(repo)
    assert without_git(await get(client, session)) == stored


async def test_a_refusal_naming_a_file_that_is_not_utf8_is_answered(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    # The refusal names a nested repository by the name git gave: its message could
    # not be written as JSON, and the connection died without an answer.
    session = await create(client, project)
    nested = workspace(session) / os.fsdecode(b"n\xff")
    git(repo, "init", "-q", str(nested))
    git(nested, "commit", "-q", "--allow-empty", "-m", "nested")
    error = await error_of(client, "session.delete", {"session": session["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert "n\\xff is a nested git repository" in error["message"]
    assert (await get(client, session))["status"] == "created"


async def test_force_removes_a_worktree_whose_snapshot_fails(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    make_work(path)
    block_snapshot_ref(repo, session["id"])
    removed = await call(client, "session.delete", {"session": session["id"], "force": True})
    assert removed["snapshot"] is None
    assert removed["session"]["status"] == "deleted"
    assert not path.exists()
    assert path not in git_worktrees(repo)
    assert branch_tip(repo, session["workspace"]["branch"]) == head(repo)


async def test_restoring_a_force_deleted_worktree_session_is_invalid_state(
    client: TrioClient, project: dict[str, Any]
) -> None:
    session = await create(client, project)
    await call(client, "session.delete", {"session": session["id"], "force": True})
    error = await error_of(client, "session.restore", {"session": session["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert (await get(client, session))["status"] == "deleted"


async def test_deleting_twice_is_invalid_state(client: TrioClient, project: dict[str, Any]) -> None:
    session = await create(client, project)
    await call(client, "session.delete", {"session": session["id"]})
    error = await error_of(client, "session.delete", {"session": session["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert error["data"]["detail"]["status"] == "deleted"


async def test_restoring_a_session_that_is_not_deleted_is_invalid_state(
    client: TrioClient, project: dict[str, Any]
) -> None:
    session = await create(client, project)
    error = await error_of(client, "session.restore", {"session": session["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert error["data"]["detail"]["status"] == "created"


async def test_restore_onto_a_path_that_is_taken_is_already_exists_and_keeps_the_snapshot(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    make_work(path)
    removed = await call(client, "session.delete", {"session": session["id"]})
    path.mkdir()
    (path / "someone-elses.txt").write_text("theirs\n")
    error = await error_of(client, "session.restore", {"session": session["id"]})
    assert error["code"] == ErrorCode.ALREADY_EXISTS
    assert files_of(path) == {"someone-elses.txt": b"theirs\n\n[exec bits 0]"}
    assert (await get(client, session))["status"] == "deleted"
    assert (
        git(repo, "rev-parse", removed["snapshot"]["ref"]).strip() == removed["snapshot"]["commit"]
    )


async def test_deleting_an_in_place_session_leaves_the_project_directory_alone(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project, workspace="in_place")
    write(repo, {"user-work.txt": "the user's\n"})
    before = main_checkout_state(repo)
    removed = await call(client, "session.delete", {"session": session["id"]})
    assert removed["snapshot"] is None
    assert main_checkout_state(repo) == before


async def test_a_restore_that_fails_keeps_the_session_deleted_and_its_snapshot(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    make_work(path)
    before = files_of(path)
    removed = await call(client, "session.delete", {"session": session["id"]})
    hook = fail_post_checkout(repo)
    error = await error_of(client, "session.restore", {"session": session["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert not path.exists()
    assert git_worktrees(repo) == [repo]
    assert (await get(client, session))["status"] == "deleted"
    hook.unlink()
    await call(client, "session.restore", {"session": session["id"]})
    assert files_of(path) == before
    assert (
        git(repo, "rev-parse", removed["snapshot"]["ref"]).strip()
        == (removed["snapshot"]["commit"])
    )
