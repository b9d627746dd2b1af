"""Workspace drift: missing, moved, wrong branch, detached, not a worktree; and repair.

Over the socket of an in-process daemon, against real git repositories (see
tests/support/sessions.py)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Final

import pytest

from mimird.wire.errors import ErrorCode
from tests.support.helpers import (
    DaemonDirs,
    TrioClient,
    add_project,
    git,
    write,
)
from tests.support.sessions import (
    branch_tip,
    call,
    commit_all,
    create,
    error_of,
    events,
    files_of,
    get,
    git_exit_code,
    git_worktrees,
    head,
    kinds,
    workspace,
)

pytestmark = pytest.mark.timeout(60)


# ---- drift -----------------------------------------------------------------------------------


def drift(kind: str, repo: Path, path: Path, tmp_path: Path) -> dict[str, Any]:
    """Make the session's worktree drift in one way; returns what session.get must show."""
    if kind == "missing":
        shutil.rmtree(path)
        return {"state": "missing"}
    if kind == "moved":
        moved = tmp_path / "moved-here"
        git(repo, "worktree", "move", str(path), str(moved))
        return {"state": "moved", "actual_path": str(moved.resolve())}
    if kind == "wrong_branch":
        git(path, "switch", "-q", "-c", "someone-elses")
        return {"state": "wrong_branch", "actual_branch": "someone-elses"}
    if kind == "detached":
        git(path, "switch", "-q", "--detach")
        return {"state": "wrong_branch", "actual_branch": "HEAD"}
    assert kind == "not_a_worktree"
    shutil.rmtree(path)
    path.mkdir()
    (path / "unrelated.txt").write_text("not a worktree\n")
    return {"state": "not_a_worktree"}


DRIFTS: Final = ["missing", "moved", "wrong_branch", "detached", "not_a_worktree"]


@pytest.mark.parametrize("kind", DRIFTS)
async def test_drift_is_reported_by_get_and_journaled(
    client: TrioClient, project: dict[str, Any], repo: Path, tmp_path: Path, kind: str
) -> None:
    session = await create(client, project)
    expected = drift(kind, repo, workspace(session), tmp_path)
    got = await get(client, session)
    shown = {k: got["workspace"][k] for k in ("state", "actual_path", "actual_branch")}
    assert shown == {"actual_path": None, "actual_branch": None, **expected}
    assert got["git"] is None
    [changed] = [e for e in await events(client, session) if e["kind"] == "workspace_state_changed"]
    assert changed["data"] == {"from": "ok", "to": expected["state"]} | {
        k: v for k, v in expected.items() if k != "state"
    }
    # Seen again: no new event for a state that did not change.
    await get(client, session)
    assert kinds(await events(client, session)).count("workspace_state_changed") == 1


@pytest.mark.parametrize("kind", DRIFTS)
async def test_worktree_list_reports_drift(
    client: TrioClient, project: dict[str, Any], repo: Path, tmp_path: Path, kind: str
) -> None:
    session = await create(client, project)
    expected = drift(kind, repo, workspace(session), tmp_path)
    listed = await call(client, "worktree.list", {"project": project["id"]})
    [info] = listed["worktrees"]
    assert (info["session_id"], info["state"]) == (session["id"], expected["state"])


@pytest.mark.parametrize("kind", DRIFTS)
async def test_diff_of_a_drifted_session_is_invalid_state(
    client: TrioClient, project: dict[str, Any], repo: Path, tmp_path: Path, kind: str
) -> None:
    session = await create(client, project)
    expected = drift(kind, repo, workspace(session), tmp_path)
    error = await error_of(client, "session.diff", {"session": session["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert error["data"]["detail"] == {"workspace_state": expected["state"]}


@pytest.mark.parametrize("kind", ["moved", "wrong_branch", "detached", "not_a_worktree"])
async def test_delete_of_a_drifted_session_without_force_is_invalid_state_and_removes_nothing(
    client: TrioClient, project: dict[str, Any], repo: Path, tmp_path: Path, kind: str
) -> None:
    session = await create(client, project)
    path = workspace(session)
    expected = drift(kind, repo, path, tmp_path)
    where = Path(expected.get("actual_path", path))
    before = files_of(where)
    worktrees_before = git_worktrees(repo)
    error = await error_of(client, "session.delete", {"session": session["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert error["data"]["detail"] == {"workspace_state": expected["state"]}
    assert files_of(where) == before
    assert git_worktrees(repo) == worktrees_before
    assert (await get(client, session))["status"] == "created"


async def test_delete_of_a_session_whose_worktree_is_missing_keeps_its_branch(
    client: TrioClient, project: dict[str, Any], repo: Path, tmp_path: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    write(path, {"committed.txt": "c\n"})
    tip = commit_all(path, "committed")
    drift("missing", repo, path, tmp_path)
    removed = await call(client, "session.delete", {"session": session["id"]})
    assert removed["session"]["status"] == "deleted"
    assert branch_tip(repo, session["workspace"]["branch"]) == tip
    assert git_worktrees(repo) == [repo]


async def test_force_delete_never_removes_a_directory_that_is_not_a_worktree(
    client: TrioClient, project: dict[str, Any], repo: Path, tmp_path: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    drift("not_a_worktree", repo, path, tmp_path)
    error = await error_of(client, "session.delete", {"session": session["id"], "force": True})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert (path / "unrelated.txt").read_text() == "not a worktree\n"


async def test_repair_adopts_a_moved_worktree(
    client: TrioClient, project: dict[str, Any], repo: Path, tmp_path: Path
) -> None:
    session = await create(client, project)
    write(workspace(session), {"work.txt": "work\n"})
    expected = drift("moved", repo, workspace(session), tmp_path)
    repaired = await call(client, "session.repair", {"session": session["id"]})
    assert repaired["workspace"]["state"] == "ok"
    assert repaired["workspace"]["path"] == expected["actual_path"]
    got = await get(client, session)
    assert (got["workspace"]["state"], got["workspace"]["path"]) == ("ok", expected["actual_path"])
    diff = await call(client, "session.diff", {"session": session["id"]})
    assert [f["path"] for f in diff["files"]] == ["work.txt"]
    assert kinds(await events(client, session))[-1] == "workspace_repaired"


async def test_repair_recreates_a_missing_worktree_from_its_branch(
    client: TrioClient, project: dict[str, Any], repo: Path, tmp_path: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    write(path, {"committed.txt": "c\n"})
    tip = commit_all(path, "committed")
    drift("missing", repo, path, tmp_path)
    repaired = await call(client, "session.repair", {"session": session["id"]})
    assert repaired["workspace"]["state"] == "ok"
    assert head(path) == tip
    assert (path / "committed.txt").read_text() == "c\n"
    assert git(path, "status", "--porcelain") == ""
    assert (await get(client, session))["workspace"]["state"] == "ok"


@pytest.mark.parametrize("kind", ["wrong_branch", "not_a_worktree"])
async def test_repair_of_drift_it_cannot_fix_is_invalid_state_and_changes_nothing(
    client: TrioClient, project: dict[str, Any], repo: Path, tmp_path: Path, kind: str
) -> None:
    session = await create(client, project)
    path = workspace(session)
    drift(kind, repo, path, tmp_path)
    before = files_of(path)
    error = await error_of(client, "session.repair", {"session": session["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert files_of(path) == before


async def test_switching_back_to_the_sessions_branch_returns_the_state_to_ok(
    client: TrioClient, project: dict[str, Any], repo: Path, tmp_path: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    drift("wrong_branch", repo, path, tmp_path)
    assert (await get(client, session))["workspace"]["state"] == "wrong_branch"
    git(path, "switch", "-q", session["workspace"]["branch"])
    got = await get(client, session)
    assert got["workspace"]["state"] == "ok"
    assert got["git"] is not None
    changes = [
        (e["data"]["from"], e["data"]["to"])
        for e in await events(client, session)
        if e["kind"] == "workspace_state_changed"
    ]
    assert changes == [("ok", "wrong_branch"), ("wrong_branch", "ok")]
    assert (await call(client, "session.diff", {"session": session["id"]}))["files"] == []


async def test_a_rebase_in_progress_is_not_drift(
    client: TrioClient, project: dict[str, Any], repo: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    (path / "README.md").write_text("ours\n")
    commit_all(path, "ours")
    git(path, "switch", "-q", "-c", "other", "HEAD~1")
    (path / "README.md").write_text("theirs\n")
    commit_all(path, "theirs")
    git(path, "switch", "-q", session["workspace"]["branch"])
    # A conflict: the rebase stops with HEAD detached.
    assert git_exit_code(path, "rebase", "other") != 0
    assert (await get(client, session))["workspace"]["state"] == "ok"


async def test_a_session_deleted_while_its_worktree_was_missing_can_be_restored_from_its_branch(
    client: TrioClient, project: dict[str, Any], repo: Path, tmp_path: Path
) -> None:
    session = await create(client, project)
    path = workspace(session)
    write(path, {"committed.txt": "c\n"})
    tip = commit_all(path, "committed")
    drift("missing", repo, path, tmp_path)
    await call(client, "session.delete", {"session": session["id"]})
    restored = await call(client, "session.restore", {"session": session["id"]})
    assert restored["workspace"]["state"] == "ok"
    assert head(path) == tip


@pytest.mark.parametrize("parent_gone", [False, True])
async def test_a_private_copy_is_kept_by_delete_and_brought_back_by_restore(
    client: TrioClient, dirs: DaemonDirs, tmp_path: Path, parent_gone: bool
) -> None:
    plain = tmp_path / "plain"
    write(plain, {"notes.txt": "mine\n"})
    project = await add_project(client, plain)
    session = await create(client, project)
    copy = workspace(session)
    write(copy, {"work.txt": "the agent's work\n", "bin/tool": b"\x00\xff"})
    before = files_of(copy)
    await call(client, "session.delete", {"session": session["id"]})
    assert not copy.exists()
    if parent_gone:
        copy.parent.rmdir()  # the project's directory of copies, empty now, tidied away
    trashed = (dirs.state / "trash" / session["id"]).stat().st_ino
    restored = await call(client, "session.restore", {"session": session["id"]})
    assert restored["workspace"]["state"] == "ok"
    assert files_of(copy) == before
    # Moved back in one rename, not copied file by file (a copy may hold a GiB).
    assert copy.stat().st_ino == trashed
