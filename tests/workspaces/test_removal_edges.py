"""Removing a worktree at its edges: a path already gone (the branch tip still saved,
git's record dropped, even when git forgot it already or has it locked), a branch
kept unless asked, a branch that cannot go, and a branch whose commits the
snapshot holds although the worktree moved to another branch. Each test killed
mutants of ``remove_worktree`` and the functions it calls (``make mutate``) that
the other removal tests let survive."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Final

import pytest

from mimird.errors import InvalidState
from mimird.workspaces.git import (
    add_worktree,
    branch_exists,
    list_git_worktrees,
    remove_worktree,
    resolve_commit,
)
from tests.support.helpers import git

REF: Final = "refs/mimir/snapshots/s1"
BRANCH: Final = "mimir/s1"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "a.txt").write_text("a\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.fixture
def worktree(repo: Path, tmp_path: Path) -> Path:
    """A worktree on BRANCH with a commit of its own."""
    path = tmp_path / "worktrees" / "s1"
    add_worktree(repo, path, BRANCH, resolve_commit(repo, "HEAD"))
    (path / "b.txt").write_text("b\n")
    git(path, "add", "b.txt")
    git(path, "commit", "-q", "-m", "work")
    return path


def ref(repo: Path, name: str) -> str | None:
    out = git(repo, "for-each-ref", "--format=%(objectname)", name).strip()
    return out or None


def listed(repo: Path, path: Path) -> bool:
    return any(w.path.resolve() == path.resolve() for w in list_git_worktrees(repo))


def test_a_gone_worktree_keeps_its_branch_unless_asked_and_saves_its_tip(
    repo: Path, worktree: Path
) -> None:
    tip = resolve_commit(repo, BRANCH)
    shutil.rmtree(worktree)

    saved = remove_worktree(repo, worktree, branch=BRANCH, snapshot_ref=REF)

    assert saved is not None
    assert (saved.ref, saved.commit, saved.head) == (REF, tip, tip)
    assert ref(repo, REF) == tip
    assert branch_exists(repo, BRANCH)
    assert not listed(repo, worktree)


def test_a_gone_worktree_without_a_branch_saves_nothing(repo: Path, worktree: Path) -> None:
    shutil.rmtree(worktree)

    assert remove_worktree(repo, worktree, branch=None, snapshot_ref=REF) is None
    assert ref(repo, REF) is None
    assert not listed(repo, worktree)


def test_a_gone_worktree_removed_with_force_saves_nothing_and_drops_its_branch(
    repo: Path, worktree: Path
) -> None:
    shutil.rmtree(worktree)

    saved = remove_worktree(
        repo, worktree, branch=BRANCH, snapshot_ref=REF, force=True, delete_branch=True
    )

    assert saved is None
    assert ref(repo, REF) is None
    assert not branch_exists(repo, BRANCH)


def test_a_gone_worktree_that_git_forgot_already_is_removed(repo: Path, worktree: Path) -> None:
    shutil.rmtree(worktree)
    git(repo, "worktree", "prune")  # git says "is not a working tree" now

    saved = remove_worktree(repo, worktree, branch=BRANCH, snapshot_ref=REF, delete_branch=True)

    assert saved is not None
    assert ref(repo, REF) == saved.commit
    assert not branch_exists(repo, BRANCH)


def test_a_gone_locked_worktree_is_refused_unless_forced(repo: Path, worktree: Path) -> None:
    git(repo, "worktree", "lock", str(worktree))
    shutil.rmtree(worktree)

    with pytest.raises(InvalidState, match="cannot drop git's record") as refused:
        remove_worktree(repo, worktree, branch=BRANCH, snapshot_ref=REF)
    assert "locked" in str(refused.value.detail)
    assert listed(repo, worktree)

    assert remove_worktree(repo, worktree, branch=BRANCH, snapshot_ref=REF, force=True) is None
    assert not listed(repo, worktree)


def test_a_branch_checked_out_elsewhere_is_not_deleted_with_a_gone_worktree(
    repo: Path, worktree: Path
) -> None:
    shutil.rmtree(worktree)
    git(repo, "worktree", "prune")
    git(repo, "checkout", "-q", BRANCH)  # the user's own checkout is on it now

    with pytest.raises(InvalidState, match="could not be deleted") as refused:
        remove_worktree(repo, worktree, branch=BRANCH, snapshot_ref=REF, delete_branch=True)
    assert refused.value.field == "delete_branch"
    assert branch_exists(repo, BRANCH)
    assert ref(repo, REF) == resolve_commit(repo, BRANCH)  # its tip was saved first


def test_a_branch_checked_out_elsewhere_stops_the_removal_before_anything_goes(
    repo: Path, worktree: Path, tmp_path: Path
) -> None:
    git(worktree, "checkout", "-q", "--detach")
    other = tmp_path / "worktrees" / "other"
    git(repo, "worktree", "add", "-q", str(other), BRANCH)

    with pytest.raises(InvalidState, match="is checked out in") as refused:
        remove_worktree(repo, worktree, branch=BRANCH, snapshot_ref=REF, delete_branch=True)
    assert refused.value.field == "delete_branch"
    assert worktree.is_dir()
    assert branch_exists(repo, BRANCH)

    # Keeping the branch, the same removal goes ahead.
    assert remove_worktree(repo, worktree, branch=BRANCH, snapshot_ref=REF) is not None
    assert not worktree.exists()
    assert branch_exists(repo, BRANCH)


def test_a_branch_whose_commits_the_snapshot_holds_goes_though_the_worktree_moved_on(
    repo: Path, worktree: Path
) -> None:
    """The worktree left BRANCH for a branch built on it: BRANCH's tip is neither the
    snapshot nor its HEAD, but an ancestor of the snapshot, so nothing is lost."""
    git(worktree, "checkout", "-q", "-b", "mimir/s1-next")
    (worktree / "c.txt").write_text("c\n")
    git(worktree, "add", "c.txt")
    git(worktree, "commit", "-q", "-m", "more")
    (worktree / "d.txt").write_text("uncommitted\n")

    saved = remove_worktree(repo, worktree, branch=BRANCH, snapshot_ref=REF, delete_branch=True)

    assert saved is not None
    assert not worktree.exists()
    assert not branch_exists(repo, BRANCH)
    files = git(repo, "ls-tree", "-r", "--name-only", saved.commit).split()
    assert sorted(files) == ["a.txt", "b.txt", "c.txt", "d.txt"]


def test_a_directory_that_is_not_a_worktree_is_refused_naming_the_path(
    repo: Path, tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "mine.txt").write_text("mine\n")

    with pytest.raises(InvalidState, match="is not a worktree of") as refused:
        remove_worktree(repo, stranger, branch=None, snapshot_ref=REF)
    assert refused.value.field == "path"
    assert (stranger / "mine.txt").read_text() == "mine\n"


def test_a_removed_worktree_keeps_its_branch_unless_asked(repo: Path, worktree: Path) -> None:
    tip = resolve_commit(repo, BRANCH)

    saved = remove_worktree(repo, worktree, branch=BRANCH, snapshot_ref=REF)

    assert saved is not None
    assert saved.commit == tip
    assert not worktree.exists()
    assert resolve_commit(repo, BRANCH) == tip
