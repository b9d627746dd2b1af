"""mimird.workspaces.integrate: bringing a branch into another in the user's repository
(fast-forward, merge, squash), never half-done, never over the user's uncommitted work.

Every test works on a real repository in a temporary directory; git runs with no user
or system config, so the merge commits prove they need no identity of the user's.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Final

import pytest

from mimird.errors import (
    BranchMoved,
    CheckoutDirty,
    InvalidParams,
    InvalidState,
    MergeConflict,
    NotFound,
)
from mimird.workspaces.integrate import integrate
from tests.support.helpers import GIT_ENV, GIT_IDENTITY, git, make_repo, write

BASE_FILES: Final = {
    "README.md": "hello\n",
    "src/app.py": "one\ntwo\nthree\n",
    "gone.txt": "to be deleted\n",
    ".gitignore": "*.log\nbuild/\n",
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """On main (checked out): the base. Branch ``feature`` adds a file, changes the
    first line of src/app.py and deletes gone.txt; ``target`` starts at the base."""
    root = make_repo(tmp_path / "repo", BASE_FILES)
    git(root, "branch", "target")
    commit_on(root, "feature", {"feature.txt": "new\n", "src/app.py": "ONE\ntwo\nthree\n"})
    git(root, "rm", "-q", "gone.txt")
    git(root, "commit", "-q", "-m", "feature: drop gone.txt")
    git(root, "switch", "-q", "main")
    return root


def commit_on(root: Path, branch: str, files: dict[str, str | bytes], message: str = "") -> str:
    """Commit ``files`` on ``branch`` (made from HEAD if new), leaving it checked out."""
    exists = git(root, "branch", "--list", branch).strip()
    git(root, "switch", "-q", *([] if exists else ["-c"]), branch)
    write(root, files)
    git(root, "add", "--force", "--", *files)  # an ignored name too, as a user may
    git(root, "commit", "-q", "-m", message or f"{branch}: {', '.join(files)}")
    return tip(root, branch)


def tip(root: Path, ref: str) -> str:
    return git(root, "rev-parse", ref).strip()


def refs(root: Path) -> str:
    return git(root, "for-each-ref", "--format=%(refname) %(objectname)")


def status(root: Path) -> str:
    return git(root, "status", "--porcelain=v1", "--untracked-files=all", "--ignored")


def files_of(root: Path, rev: str) -> dict[str, str]:
    names = git(root, "ls-tree", "-r", "--name-only", "-z", rev).split("\0")
    return {n: git(root, "show", f"{rev}:{n}") for n in names if n}


def state(root: Path) -> tuple[str, str, bool]:
    """Everything an integration that changed nothing must leave as it was."""
    merge_head = os.path.lexists(git(root, "rev-parse", "--git-path", "MERGE_HEAD").strip())
    return refs(root), status(root), merge_head


def diverge_target(root: Path) -> str:
    """A commit on target that touches another file than feature's: a clean true merge."""
    new = commit_on(root, "target", {"target.txt": "from target\n"})
    git(root, "switch", "-q", "main")
    return new


def conflicting_target(root: Path) -> None:
    """target changes the line feature changes, and changes the file feature deletes."""
    commit_on(root, "target", {"src/app.py": "uno\ntwo\nthree\n", "gone.txt": "kept\n"})
    git(root, "switch", "-q", "main")


# ---- not checked out: the user's checkout is never touched -----------------------------


def test_a_branch_ahead_of_the_target_is_fast_forwarded(repo: Path) -> None:
    before = status(repo)
    result = integrate(repo, "feature", "target")
    assert result.kind == "fast_forward"
    assert result.commit == tip(repo, "feature") == tip(repo, "target")
    assert result.previous == tip(repo, "main")
    assert {(f.path, f.status) for f in result.files} == {
        ("feature.txt", "added"),
        ("src/app.py", "modified"),
        ("gone.txt", "deleted"),
    }
    assert result.worktree is None
    assert status(repo) == before
    assert (repo / "gone.txt").read_text() == "to be deleted\n"


def test_diverged_branches_get_a_merge_commit_by_mimir_with_both_parents(repo: Path) -> None:
    old_target = diverge_target(repo)
    before = status(repo)
    result = integrate(repo, "feature", "target")
    assert result.kind == "merge"
    assert tip(repo, "target") == result.commit
    parents = git(repo, "log", "-1", "--format=%P", "target").split()
    assert parents == [old_target, tip(repo, "feature")]
    assert git(repo, "log", "-1", "--format=%an <%ae>|%cn|%s", "target").strip() == (
        "Mimir <mimir@localhost>|Mimir|Merge branch 'feature' into target"
    )
    merged = files_of(repo, "target")
    assert merged["target.txt"] == "from target\n"
    assert merged["feature.txt"] == "new\n"
    assert merged["src/app.py"] == "ONE\ntwo\nthree\n"
    assert "gone.txt" not in merged
    assert {f.path for f in result.files} == {"feature.txt", "src/app.py", "gone.txt"}
    assert status(repo) == before


def test_squash_makes_one_commit_whose_only_parent_is_the_target(repo: Path) -> None:
    old_target = diverge_target(repo)
    result = integrate(repo, "feature", "target", squash=True)
    assert result.kind == "squash"
    assert git(repo, "log", "-1", "--format=%P", "target").split() == [old_target]
    message = git(repo, "log", "-1", "--format=%B", "target")
    assert message.startswith("Squashed branch 'feature' into target\n")
    assert "* feature: drop gone.txt" in message
    assert set(files_of(repo, "target")) == {
        "README.md",
        ".gitignore",
        "src/app.py",
        "feature.txt",
        "target.txt",
    }


def test_squash_of_a_branch_ahead_is_one_commit_not_a_fast_forward(repo: Path) -> None:
    old_target = tip(repo, "target")
    result = integrate(repo, "feature", "target", squash=True, message="one change\n")
    assert result.kind == "squash"
    assert result.commit != tip(repo, "feature")
    assert git(repo, "log", "-1", "--format=%P|%B", "target").strip() == f"{old_target}|one change"
    assert files_of(repo, "target") == files_of(repo, "feature")


def test_a_branch_already_in_the_target_is_up_to_date_and_nothing_moves(repo: Path) -> None:
    integrate(repo, "feature", "target")
    before = state(repo)
    result = integrate(repo, "feature", "target")
    assert (result.kind, result.commit, result.files) == ("up_to_date", tip(repo, "target"), [])
    assert state(repo) == before


def test_a_conflict_lists_every_file_and_changes_nothing(repo: Path) -> None:
    conflicting_target(repo)
    before = state(repo)
    with pytest.raises(MergeConflict) as caught:
        integrate(repo, "feature", "target")
    assert caught.value.detail is not None
    assert caught.value.detail["files"] == ["gone.txt", "src/app.py"]
    assert "gone.txt" in caught.value.message
    assert "src/app.py" in caught.value.message
    assert any("modify/delete" in c for c in caught.value.detail["conflicts"])
    assert state(repo) == before


# ---- checked out -----------------------------------------------------------------------


def test_a_clean_checkout_of_the_target_is_moved_with_it(repo: Path) -> None:
    diverge_target(repo)
    git(repo, "switch", "-q", "target")
    (repo / "build").mkdir()
    (repo / "build" / "out.bin").write_bytes(b"\0ignored")
    result = integrate(repo, "feature", "target")
    assert result.kind == "merge"
    assert result.worktree == repo
    assert tip(repo, "HEAD") == result.commit
    assert (repo / "feature.txt").read_text() == "new\n"
    assert (repo / "src/app.py").read_text() == "ONE\ntwo\nthree\n"
    assert not (repo / "gone.txt").exists()
    assert (repo / "build" / "out.bin").read_bytes() == b"\0ignored"
    assert status(repo) == "!! build/out.bin\n"


@pytest.mark.parametrize(
    ("change", "listed"),
    [
        ("modified", " M src/app.py"),
        ("staged", "M  src/app.py"),
        ("untracked", "?? notes/todo.txt"),
        ("deleted", " D README.md"),
    ],
)
def test_a_dirty_checkout_of_the_target_is_refused_and_nothing_changes(
    repo: Path, change: str, listed: str
) -> None:
    git(repo, "switch", "-q", "target")
    if change in ("modified", "staged"):
        (repo / "src/app.py").write_text("mine\n")
        if change == "staged":
            git(repo, "add", "src/app.py")
    elif change == "untracked":
        write(repo, {"notes/todo.txt": "mine\n"})
    else:
        (repo / "README.md").unlink()
    before = state(repo)
    with pytest.raises(CheckoutDirty) as caught:
        integrate(repo, "feature", "target")
    assert str(repo) in caught.value.message
    assert listed.strip() in caught.value.message
    assert caught.value.detail == {"worktree": str(repo), "changes": [listed]}
    assert state(repo) == before


def test_an_ignored_file_where_the_merge_adds_one_is_refused_not_overwritten(
    repo: Path,
) -> None:
    commit_on(repo, "feature", {"debug.log": "tracked now\n"})
    git(repo, "switch", "-q", "target")
    (repo / "debug.log").write_text("the user's log\n")
    before = state(repo)
    with pytest.raises(CheckoutDirty) as caught:
        integrate(repo, "feature", "target")
    assert caught.value.detail is not None
    assert caught.value.detail["in_the_way"] == ["debug.log"]
    assert (repo / "debug.log").read_text() == "the user's log\n"
    assert state(repo) == before


def test_a_conflict_on_a_checked_out_target_leaves_its_files_and_no_merge_head(
    repo: Path,
) -> None:
    conflicting_target(repo)
    git(repo, "switch", "-q", "target")
    before = state(repo)
    with pytest.raises(MergeConflict):
        integrate(repo, "feature", "target")
    assert state(repo) == before
    assert (repo / "src/app.py").read_text() == "uno\ntwo\nthree\n"


def test_a_target_checked_out_in_a_linked_worktree_is_moved_there(
    repo: Path, tmp_path: Path
) -> None:
    linked = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", str(linked), "target")
    main_before = status(repo)
    result = integrate(repo, "feature", "target")
    assert result.kind == "fast_forward"
    assert result.worktree == linked
    assert tip(linked, "HEAD") == tip(repo, "feature")
    assert (linked / "feature.txt").read_text() == "new\n"
    assert git(linked, "status", "--porcelain").strip() == ""
    assert status(repo) == main_before


def test_a_dirty_linked_worktree_of_the_target_is_refused_by_its_path(
    repo: Path, tmp_path: Path
) -> None:
    linked = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", str(linked), "target")
    (linked / "scratch.txt").write_text("mine\n")
    before = (state(repo), status(linked))
    with pytest.raises(CheckoutDirty) as caught:
        integrate(repo, "feature", "target")
    assert caught.value.detail == {"worktree": str(linked), "changes": ["?? scratch.txt"]}
    assert (state(repo), status(linked)) == before


def test_a_target_being_rebased_is_refused(repo: Path) -> None:
    conflicting_target(repo)
    git(repo, "switch", "-q", "target")
    rebase = git_status_code(repo, "rebase", "feature")
    assert rebase != 0  # stopped at the conflict: target is being rebased
    before = refs(repo)
    with pytest.raises(InvalidState, match="being rebased"):
        integrate(repo, "feature", "target")
    assert refs(repo) == before


def git_status_code(root: Path, *args: str) -> int:
    return subprocess.run(
        ["git", *GIT_IDENTITY, *args], cwd=root, env=GIT_ENV, capture_output=True, check=False
    ).returncode


# ---- a target that moves meanwhile -----------------------------------------------------


def shim_git_that_moves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo: Path) -> None:
    """A ``git`` first on PATH that, when Mimir writes its merge commit, first moves
    ``target`` as a concurrent user would, then runs the real git."""
    real = next(
        os.path.join(d, "git")
        for d in os.environ["PATH"].split(os.pathsep)
        if os.access(os.path.join(d, "git"), os.X_OK)
    )
    moved_to = commit_on(repo, "elsewhere", {"other.txt": "x\n"})
    git(repo, "switch", "-q", "main")
    shim = tmp_path / "bin" / "git"
    shim.parent.mkdir()
    shim.write_text(
        "#!/bin/sh\n"
        'case " $* " in *" commit-tree "*)\n'
        f"  {real} -C {repo} update-ref refs/heads/target {moved_to} ;;\n"
        "esac\n"
        f'exec {real} "$@"\n'
    )
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{shim.parent}{os.pathsep}{os.environ['PATH']}")


def test_a_target_moved_while_the_merge_was_computed_is_not_overwritten(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    diverge_target(repo)
    shim_git_that_moves(tmp_path, monkeypatch, repo)
    moved_to = tip(repo, "elsewhere")
    with pytest.raises(BranchMoved, match="try again"):
        integrate(repo, "feature", "target")
    assert tip(repo, "target") == moved_to


# ---- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["-f", "--output=/tmp/x", "a..b", "refs/heads/main", "x y", "x\0y", "@{-1}", "HEAD", ""],
)
@pytest.mark.parametrize("field", ["branch", "into"])
def test_hostile_branch_names_are_refused_before_git_sees_them(
    repo: Path, name: str, field: str
) -> None:
    before = state(repo)
    args = {"branch": "feature", "into": "target", field: name}
    with pytest.raises(InvalidParams) as caught:
        integrate(repo, args["branch"], args["into"])
    assert caught.value.field == field
    assert state(repo) == before


def test_a_branch_that_does_not_exist_is_not_found(repo: Path) -> None:
    with pytest.raises(NotFound) as caught:
        integrate(repo, "feature", "nope")
    assert (caught.value.field, caught.value.id) == ("into", "nope")


def test_a_branch_cannot_be_integrated_into_itself(repo: Path) -> None:
    with pytest.raises(InvalidParams, match="into itself"):
        integrate(repo, "feature", "feature")


def test_a_message_with_nul_is_refused(repo: Path) -> None:
    with pytest.raises(InvalidParams) as caught:
        integrate(repo, "feature", "target", squash=True, message="a\0b")
    assert caught.value.field == "message"
