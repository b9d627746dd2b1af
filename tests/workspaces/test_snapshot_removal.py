"""Snapshots and the worktree's index, and what a refused snapshot says. A file
staged with ``add -f`` despite an ignore rule is work too, a sparse checkout's files
out of the cone are not deleted, a ``--no-checkout`` worktree (no index at all)
starts from HEAD, and each refusal names its field and says exactly what was wrong.
All but the sparse checkout test killed mutants of the snapshot (``make mutate``)
that the other worktree tests let survive."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pytest

from mimird.errors import InvalidParams, InvalidState
from mimird.workspaces.git import add_worktree, resolve_commit, snapshot
from tests.support.helpers import git

SNAPSHOT_REF: Final = "refs/mimir/snapshots/s1"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for name in ("in/kept.txt", "out/elsewhere.txt", "top.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"{name}\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


def tree_of(repo: Path, rev: str) -> list[str]:
    return sorted(git(repo, "ls-tree", "-r", "--name-only", rev).split())


def test_a_staged_file_that_an_ignore_rule_matches_is_in_the_snapshot(
    repo: Path, tmp_path: Path
) -> None:
    # The private index starts as a copy of the real one: what the user staged with
    # `add -f` stays tracked, and `add --all` saves it despite the ignore rule.
    path = tmp_path / "worktrees" / "s1"
    add_worktree(repo, path, "mimir/s1", resolve_commit(repo, "HEAD"))
    (path / ".gitignore").write_text("*.log\n")
    (path / "build.log").write_text("the only copy\n")
    git(path, "add", "-f", "build.log")

    saved = snapshot(path, SNAPSHOT_REF, "")

    assert "build.log" in tree_of(repo, saved.commit)
    assert git(repo, "show", f"{saved.commit}:build.log") == "the only copy\n"


def test_a_sparse_checkout_snapshot_keeps_the_files_outside_the_cone(
    repo: Path, tmp_path: Path
) -> None:
    path = tmp_path / "worktrees" / "s1"
    add_worktree(repo, path, "mimir/s1", resolve_commit(repo, "HEAD"))
    git(path, "sparse-checkout", "set", "in")
    assert not (path / "out").exists(), "out/ is outside the cone: not on disk"
    (path / "in" / "new.txt").write_text("work\n")

    saved = snapshot(path, SNAPSHOT_REF, "")

    # Only the new file changed: out/elsewhere.txt is skipped, not deleted.
    assert saved.files == 1
    assert tree_of(repo, saved.commit) == [
        "in/kept.txt",
        "in/new.txt",
        "out/elsewhere.txt",
        "top.txt",
    ]


def test_a_worktree_without_an_index_is_snapshotted(repo: Path, tmp_path: Path) -> None:
    path = tmp_path / "worktrees" / "bare"
    git(repo, "worktree", "add", "-q", "--no-checkout", "-b", "mimir/bare", str(path))
    head = git(path, "rev-parse", "HEAD").strip()

    saved = snapshot(path, SNAPSHOT_REF, "")

    # No index: the snapshot starts from HEAD's tree and holds what is on disk
    # (nothing), on top of HEAD.
    assert (saved.head, saved.files) == (head, 3)
    assert git(repo, "rev-parse", f"{SNAPSHOT_REF}^").strip() == head
    assert tree_of(repo, saved.commit) == []


def test_a_worktree_without_an_index_keeps_tracked_files_an_ignore_rule_matches(
    repo: Path, tmp_path: Path
) -> None:
    # HEAD tracks keep.log despite "*.log": starting from HEAD's tree, the copy on
    # disk is saved as tracked (an empty index would drop it as ignored).
    (repo / ".gitignore").write_text("*.log\n")
    (repo / "keep.log").write_text("v1\n")
    git(repo, "add", "-f", ".gitignore", "keep.log")
    git(repo, "commit", "-q", "-m", "a tracked log")
    path = tmp_path / "worktrees" / "bare"
    git(repo, "worktree", "add", "-q", "--no-checkout", "-b", "mimir/bare", str(path))
    (path / ".gitignore").write_text("*.log\n")
    (path / "keep.log").write_text("v2\n")

    saved = snapshot(path, SNAPSHOT_REF, "")

    assert tree_of(repo, saved.commit) == [".gitignore", "keep.log"]
    assert git(repo, "show", f"{saved.commit}:keep.log") == "v2\n"


def test_a_ref_outside_the_snapshot_namespace_is_refused_naming_the_field(
    repo: Path, tmp_path: Path
) -> None:
    path = tmp_path / "worktrees" / "s1"
    add_worktree(repo, path, "mimir/s1", resolve_commit(repo, "HEAD"))
    with pytest.raises(InvalidParams) as outside:
        snapshot(path, "refs/heads/main", "")
    assert outside.value.field == "snapshot_ref"
    assert outside.value.message == (
        "snapshot ref 'refs/heads/main' must be under refs/mimir/ "
        "(a snapshot never moves a branch or a tag)"
    )
    with pytest.raises(InvalidParams) as invalid:
        snapshot(path, "refs/mimir/snapshots/a..b", "")
    assert invalid.value.field == "snapshot_ref"
    assert invalid.value.message == "'refs/mimir/snapshots/a..b' is not a valid ref name"


def test_a_missing_worktree_is_refused_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidState) as missing:
        snapshot(tmp_path / "gone", SNAPSHOT_REF, "")
    assert missing.value.field == "path"
    assert missing.value.message == f"cannot snapshot {tmp_path / 'gone'}: it does not exist"


def test_a_snapshot_that_fails_says_nothing_was_removed(repo: Path, tmp_path: Path) -> None:
    path = tmp_path / "worktrees" / "s1"
    add_worktree(repo, path, "mimir/s1", resolve_commit(repo, "HEAD"))
    nested = path / "vendor"
    nested.mkdir()
    git(nested, "init", "-q")
    (nested / "f.txt").write_text("x\n")
    git(nested, "add", "-A")
    git(nested, "commit", "-q", "-m", "nested")
    with pytest.raises(InvalidState) as failed:
        snapshot(path, SNAPSHOT_REF, "")
    assert failed.value.field == "path"
    assert failed.value.message.startswith(
        f"cannot snapshot the work in {path} (nothing was removed): vendor is a nested"
    )


def test_an_unborn_branch_snapshot_counts_every_file_and_refuses_a_nested_repository(
    repo: Path, tmp_path: Path
) -> None:
    path = tmp_path / "worktrees" / "s1"
    add_worktree(repo, path, "mimir/s1", resolve_commit(repo, "HEAD"))
    git(path, "switch", "-q", "--orphan", "fresh-start")
    for name in ("a.txt", "b.txt", "c/d.txt"):
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(f"{name}\n")
    saved = snapshot(path, SNAPSHOT_REF, "")
    assert (saved.head, saved.files) == (None, 3)

    nested = path / "vendor"
    nested.mkdir()
    git(nested, "init", "-q")
    (nested / "f.txt").write_text("x\n")
    git(nested, "add", "-A")
    git(nested, "commit", "-q", "-m", "nested")
    with pytest.raises(InvalidState) as failed:
        snapshot(path, SNAPSHOT_REF, "")
    assert failed.value.detail == {"nested_repositories": ["vendor"]}
