"""mimird.workspaces.integrate.commit_worktree: a worktree's work committed onto its
branch, everything that is not ignored and nothing that is hostile.

Real repositories and worktrees in a temporary directory; git runs with no user or
system config, so the commits prove they need no identity of the user's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Final

import pytest

from mimird.errors import InvalidParams, InvalidState
from mimird.runs import work
from mimird.workspaces import git as worktrees_git
from mimird.workspaces import integrate
from mimird.workspaces.git import add_worktree, resolve_commit
from mimird.workspaces.integrate import commit_worktree
from tests.support.helpers import GIT_ENV, GIT_IDENTITY, count_git_calls, git, make_repo, write

BRANCH: Final = "mimir/run-x/1-fake"
SECRET: Final = "the user's secret, outside the worktree\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "repo",
        {
            "README.md": "hello\n",
            "src/app.py": "x = 1\n",
            "old.txt": "old\n",
            ".gitignore": "*.log\n",
        },
    )


@pytest.fixture
def worktree(repo: Path, tmp_path: Path) -> Path:
    path = tmp_path / "worktrees" / "member"
    add_worktree(repo, path, BRANCH, resolve_commit(repo, "HEAD"))
    return path


def tree_of(path: Path, rev: str = "HEAD") -> dict[str, tuple[str, bytes]]:
    """path -> (mode, content) of every file of ``rev``."""
    found = {}
    for entry in git(path, "ls-tree", "-r", "-z", rev).split("\0"):
        if entry:
            meta, _, name = entry.partition("\t")
            mode, _, sha = meta.split(" ")
            content = subprocess.run(
                ["git", "cat-file", "blob", sha],
                cwd=path,
                env=GIT_ENV,
                capture_output=True,
                check=True,
            ).stdout
            found[name] = (mode, content)
    return found


def test_every_change_that_is_not_ignored_is_committed_by_mimir(repo: Path, worktree: Path) -> None:
    base = git(worktree, "rev-parse", "HEAD").strip()
    (worktree / "src/app.py").write_text("x = 2\n")
    (worktree / "old.txt").unlink()
    write(worktree, {"new/notes.md": "notes\n", "image.bin": b"\x89PNG\0\xff\x00binary"})
    (worktree / "debug.log").write_text("ignored\n")
    commit = commit_worktree(worktree, "member 1's work")
    assert commit is not None
    assert git(repo, "rev-parse", f"refs/heads/{BRANCH}").strip() == commit
    assert git(repo, "log", "-1", "--format=%P|%an <%ae>|%cn|%s", commit).strip() == (
        f"{base}|Mimir <mimir@localhost>|Mimir|member 1's work"
    )
    files = tree_of(worktree)
    assert files["src/app.py"] == ("100644", b"x = 2\n")
    assert files["image.bin"] == ("100644", b"\x89PNG\0\xff\x00binary")
    assert files["new/notes.md"] == ("100644", b"notes\n")
    assert "old.txt" not in files
    assert "debug.log" not in files
    # The worktree is clean against its new HEAD; the ignored file is still there.
    assert git(worktree, "status", "--porcelain", "--ignored").strip() == "!! debug.log"


def test_a_clean_worktree_gives_none_and_no_commit(worktree: Path) -> None:
    before = git(worktree, "rev-parse", "HEAD").strip()
    assert commit_worktree(worktree, "nothing") is None
    assert git(worktree, "rev-parse", "HEAD").strip() == before


def test_symlinks_are_committed_as_links_and_never_followed_out(
    worktree: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    write(outside, {"secret.txt": SECRET, "dir/inner.txt": SECRET})
    (worktree / "to-file").symlink_to(outside / "secret.txt")
    (worktree / "to-dir").symlink_to(outside / "dir")
    commit_worktree(worktree, "links")
    files = tree_of(worktree)
    assert files["to-file"] == ("120000", os.fsencode(outside / "secret.txt"))
    assert files["to-dir"] == ("120000", os.fsencode(outside / "dir"))
    assert not any(name.startswith("to-dir/") for name in files)
    assert all(SECRET.encode() not in content for _, content in files.values())


def test_a_dot_git_file_an_agent_writes_is_never_committed(worktree: Path) -> None:
    write(worktree, {"sub/.git": "gitdir: /somewhere/else\n", "sub/code.py": "y = 1\n"})
    commit_worktree(worktree, "sub")
    files = tree_of(worktree)
    assert "sub/code.py" in files
    assert not any(name == ".git" or name.endswith("/.git") for name in files)


@pytest.mark.parametrize("against_base", [False, True], ids=["alone", "with-stats"])
def test_a_nested_repository_is_refused_and_the_branch_does_not_move(
    worktree: Path, against_base: bool
) -> None:
    nested = worktree / "vendor" / "lib"
    make_repo(nested, {"lib.py": "z = 1\n"})
    before = git(worktree, "rev-parse", "HEAD").strip()
    # A run's member: found in the same diff that its stats come from.
    commit = (
        (lambda: work.commit_work(worktree, "nested", before))
        if against_base
        else (lambda: commit_worktree(worktree, "nested"))
    )
    with pytest.raises(InvalidState, match="nested git repository") as caught:
        commit()
    assert caught.value.detail == {"nested_repositories": ["vendor/lib"]}
    assert git(worktree, "rev-parse", "HEAD").strip() == before


def test_a_detached_head_is_refused(worktree: Path) -> None:
    git(worktree, "switch", "-q", "--detach")
    (worktree / "README.md").write_text("changed\n")
    with pytest.raises(InvalidState, match="detached"):
        commit_worktree(worktree, "detached")


def test_a_rebase_in_progress_is_refused(repo: Path, worktree: Path) -> None:
    write(worktree, {"README.md": "member\n"})
    git(worktree, "commit", "-q", "-am", "member")
    write(repo, {"README.md": "main\n"})
    git(repo, "commit", "-q", "-am", "main")
    rebase = subprocess.run(
        ["git", *GIT_IDENTITY, "rebase", "main"], cwd=worktree, env=GIT_ENV, capture_output=True
    )
    assert rebase.returncode != 0  # stopped at the conflict
    before = git(repo, "for-each-ref")
    with pytest.raises(InvalidState, match="rebase is in progress"):
        commit_worktree(worktree, "during a rebase")
    assert git(repo, "for-each-ref") == before


def test_a_directory_inside_a_worktree_is_not_taken_for_one(worktree: Path) -> None:
    (worktree / "src" / "more.py").write_text("m = 1\n")
    with pytest.raises(InvalidState, match="not the top of a git worktree"):
        commit_worktree(worktree / "src", "from below")


def test_an_empty_message_is_refused(worktree: Path) -> None:
    with pytest.raises(InvalidParams):
        commit_worktree(worktree, "  \n")


def test_an_unborn_branch_gets_a_first_commit_with_no_parent(tmp_path: Path) -> None:
    # HEAD names no commit yet: the one-call look at HEAD fails and the slow one
    # finds the branch and no parent.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    git(fresh, "init", "-q", "-b", "main")
    write(fresh, {"a.txt": "a\n"})
    commit = commit_worktree(fresh, "first")
    assert commit is not None
    assert git(fresh, "rev-parse", "refs/heads/main").strip() == commit
    assert git(fresh, "log", "-1", "--format=%P", commit).strip() == ""
    assert tree_of(fresh)["a.txt"] == ("100644", b"a\n")


def test_the_stats_of_committed_work_are_those_of_the_worktree_before(worktree: Path) -> None:
    # A run measures a member's work from its commit (one git call), which must
    # say what measuring the worktree said: renames, binaries, deletions, new files.
    base = git(worktree, "rev-parse", "HEAD").strip()
    git(worktree, "mv", "src/app.py", "src/main.py")
    (worktree / "old.txt").unlink()
    write(worktree, {"README.md": "hello\nmore\n", "new.txt": "n\n", "b.bin": b"\0\xff\x00"})
    before = work.stats(worktree, base)
    commit, after = work.commit_work(worktree, "member", base)
    assert commit is not None
    assert after == before
    assert after == work.WorkStats(files_changed=5, lines_added=2, lines_deleted=1)
    assert work.commit_work(worktree, "again", base) == (None, before)


def test_committing_a_members_work_with_its_stats_takes_six_git_calls(
    worktree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a run pays per member beyond its sessions: rev-parse, add, write-tree, one
    # diff-tree for the nested-repository check and the stats, commit-tree,
    # update-ref; nothing to commit stops after the diff-tree.
    calls = count_git_calls(monkeypatch, worktrees_git, integrate)
    base = git(worktree, "rev-parse", "HEAD").strip()
    write(worktree, {"new.txt": "n\n"})
    commit, stats = work.commit_work(worktree, "member", base)
    assert commit is not None
    assert stats.files_changed == 1
    assert calls == ["rev-parse", "add", "write-tree", "diff-tree", "commit-tree", "update-ref"]
    calls.clear()
    assert work.commit_work(worktree, "again", base) == (None, stats)
    assert calls == ["rev-parse", "add", "write-tree", "diff-tree"]


def logging_hooks(repo: Path, tmp_path: Path, *names: str) -> Path:
    """Install the repository hooks ``names``, each logging ``<name> <first arg>`` to the
    file returned (made when the first of them runs)."""
    ran = tmp_path / "hooks-ran"
    hooks = Path(git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir").strip())
    for name in names:
        hook = hooks / "hooks" / name
        hook.write_text(f'#!/bin/sh\necho "{name} $1" >> {ran}\n')
        hook.chmod(0o755)
    return ran


def test_no_hook_of_the_repository_runs_when_mimir_moves_its_own_refs(
    repo: Path, worktree: Path, tmp_path: Path
) -> None:
    # A member's work committed onto its branch, a snapshot, a saved branch tip:
    # update-ref would run reference-transaction (the commits themselves, made by
    # commit-tree, run none). The user's hooks are not Mimir's to run for those.
    ran = logging_hooks(
        repo, tmp_path, "reference-transaction", "pre-commit", "post-commit", "commit-msg"
    )
    git(repo, "update-ref", "refs/heads/probe", "HEAD")  # the hook works
    assert ran.read_text() == "reference-transaction prepared\nreference-transaction committed\n"
    ran.unlink()
    write(worktree, {"new.txt": "n\n"})
    assert commit_worktree(worktree, "the work") is not None
    write(worktree, {"more.txt": "m\n"})
    worktrees_git.snapshot(worktree, "refs/mimir/snapshots/hooks", "snapshot")
    shutil.rmtree(worktree)
    # The branch tip saved under a snapshot ref (the branch itself stays: deleting a
    # branch is an ordinary change of the user's refs, and their hooks see it).
    worktrees_git.remove_worktree(
        repo, worktree, branch=BRANCH, snapshot_ref="refs/mimir/snapshots/tip"
    )
    assert git(repo, "rev-parse", "refs/mimir/snapshots/tip").strip()
    assert not ran.exists(), ran.read_text()


def test_the_repositorys_hooks_see_a_new_worktree_and_its_branch(
    repo: Path, tmp_path: Path
) -> None:
    # As docs/api.md (Work safety) says: a session's worktree and branch are the
    # user's own checkout and ref, made by plain git, and the user's hooks see them.
    ran = logging_hooks(repo, tmp_path, "reference-transaction", "post-checkout")
    add_worktree(repo, tmp_path / "worktrees" / "seen", "mimir/seen", resolve_commit(repo, "HEAD"))
    hooks_run = {line.split(" ")[0] for line in ran.read_text().splitlines()}
    assert hooks_run == {"reference-transaction", "post-checkout"}
