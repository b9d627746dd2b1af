"""A create that fails leaves nothing behind: no worktree, no branch, no row.

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
    DaemonDirs,
    TrioClient,
    add_project,
    git,
    make_repo,
    write,
)
from tests.support.sessions import (
    all_sessions,
    branch_tip,
    branches,
    create,
    error_of,
    fail_post_checkout,
    git_worktrees,
    head,
    main_checkout_state,
    workspace,
)

pytestmark = pytest.mark.timeout(60)


# ---- a create that fails leaves nothing behind -----------------------------------------------


async def leftovers(client: TrioClient, dirs: DaemonDirs, repo: Path) -> dict[str, Any]:
    """Everything a create could leave behind: sessions, branches, worktrees, directories."""
    worktrees_dir = dirs.data / "worktrees"
    return {
        "sessions": await all_sessions(client, include_archived=True, include_deleted=True),
        "branches": branches(repo),
        "worktrees": git_worktrees(repo),
        "admin": sorted(os.listdir(repo / ".git" / "worktrees"))
        if (repo / ".git" / "worktrees").exists()
        else [],
        # Sessions' directories, two levels down (the per-project parent may stay).
        "directories": sorted(str(p) for p in worktrees_dir.glob("*/*")),
        "checkout": main_checkout_state(repo),
    }


async def test_create_on_an_existing_branch_is_already_exists_and_leaves_nothing(
    client: TrioClient, dirs: DaemonDirs, project: dict[str, Any], repo: Path
) -> None:
    git(repo, "branch", "taken")
    before = await leftovers(client, dirs, repo)
    error = await error_of(client, "session.create", {"project": project["id"], "branch": "taken"})
    assert error["code"] == ErrorCode.ALREADY_EXISTS
    assert error["data"]["field"] == "branch"
    assert await leftovers(client, dirs, repo) == before
    assert branch_tip(repo, "taken") == head(repo)


async def test_create_on_an_invalid_branch_name_is_invalid_params_and_leaves_nothing(
    client: TrioClient, dirs: DaemonDirs, project: dict[str, Any], repo: Path
) -> None:
    before = await leftovers(client, dirs, repo)
    error = await error_of(
        client, "session.create", {"project": project["id"], "branch": "bad..name"}
    )
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "branch"
    assert await leftovers(client, dirs, repo) == before


async def test_create_from_a_bad_base_ref_is_invalid_params_and_leaves_nothing(
    client: TrioClient, dirs: DaemonDirs, project: dict[str, Any], repo: Path
) -> None:
    before = await leftovers(client, dirs, repo)
    error = await error_of(
        client, "session.create", {"project": project["id"], "base_ref": "no-such-ref"}
    )
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "base_ref"
    assert await leftovers(client, dirs, repo) == before


async def test_create_in_a_dirty_project_without_a_base_ref_is_invalid_state_and_leaves_nothing(
    client: TrioClient, dirs: DaemonDirs, project: dict[str, Any], repo: Path
) -> None:
    (repo / "README.md").write_text("uncommitted\n")
    write(repo, {"untracked.txt": "u\n"})
    before = await leftovers(client, dirs, repo)
    error = await error_of(client, "session.create", {"project": project["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert "base_ref" in error["message"]
    assert await leftovers(client, dirs, repo) == before


@pytest.mark.parametrize("pattern", ["../outside.txt", "/etc/hostname", "sub/../../outside.txt"])
async def test_create_with_a_copy_files_pattern_escaping_the_repo_leaves_nothing(
    client: TrioClient, dirs: DaemonDirs, project: dict[str, Any], repo: Path, pattern: str
) -> None:
    before = await leftovers(client, dirs, repo)
    error = await error_of(
        client,
        "session.create",
        {"project": project["id"], "config": {"copy_files": [".env", pattern]}},
    )
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["detail"]["key"] == "copy_files.1"
    assert await leftovers(client, dirs, repo) == before


async def test_create_whose_copy_files_match_leads_outside_through_a_symlink_leaves_nothing(
    client: TrioClient, dirs: DaemonDirs, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    write(outside, {"secret.txt": "not yours\n"})
    repo = make_repo(tmp_path / "repo", {".gitignore": "escape\n", "README.md": README})
    (repo / "escape").symlink_to(outside)
    project = await add_project(client, repo, config={"copy_files": ["escape/*"]})
    before = await leftovers(client, dirs, repo)
    error = await error_of(client, "session.create", {"project": project["id"]})
    assert error["code"] == ErrorCode.INVALID_PARAMS
    assert error["data"]["field"] == "copy_files"
    assert await leftovers(client, dirs, repo) == before


async def test_copy_files_copies_ignored_files_into_the_new_worktree(
    client: TrioClient, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {".gitignore": ".env\n", "README.md": README})
    write(repo, {".env": "TOKEN=local\n"})
    project = await add_project(client, repo, config={"copy_files": [".env"]})
    session = await create(client, project)
    assert (workspace(session) / ".env").read_text() == "TOKEN=local\n"


@pytest.mark.parametrize(
    "target", ["mimird.workspaces.git.copy_files", "mimird.sessions.records.insert"]
)
async def test_create_that_fails_after_the_worktree_was_made_leaves_nothing(
    client: TrioClient,
    dirs: DaemonDirs,
    project: dict[str, Any],
    repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    target: str,
) -> None:
    made: list[Path] = []

    def fail(*args: Any, **kwargs: Any) -> Any:
        # Only once git has made the worktree: the failure must undo it.
        made.extend(p for p in (dirs.data / "worktrees").glob("*/*") if (p / ".git").exists())
        raise RuntimeError("injected failure")

    before = await leftovers(client, dirs, repo)
    monkeypatch.setattr(target, fail)
    error = await error_of(client, "session.create", {"project": project["id"]})
    monkeypatch.undo()
    assert error["code"] == ErrorCode.INTERNAL_ERROR
    assert len(made) == 1
    assert await leftovers(client, dirs, repo) == before


async def test_create_whose_post_checkout_hook_fails_leaves_nothing(
    client: TrioClient, dirs: DaemonDirs, project: dict[str, Any], repo: Path
) -> None:
    fail_post_checkout(repo)
    before = await leftovers(client, dirs, repo)
    error = await error_of(client, "session.create", {"project": project["id"]})
    assert error["code"] == ErrorCode.INVALID_STATE
    assert "hook says no" in error["message"]
    assert await leftovers(client, dirs, repo) == before
