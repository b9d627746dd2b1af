"""mimird.workspaces.git: session worktrees, snapshots, restores, drift checks and diffs.

Every test works on real git repositories made in a temporary directory. git runs
with no global or system config, so no user identity is configured anywhere: the
snapshot commits prove they need none.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Final

import pytest

from mimird.errors import AlreadyExists, InvalidParams, InvalidState, NotFound
from mimird.workspaces import git as worktrees
from mimird.workspaces.git import (
    add_worktree,
    branch_exists,
    check_branch_name,
    check_worktree,
    copy_files,
    diff,
    list_git_worktrees,
    remove_worktree,
    repo_state,
    resolve_commit,
    restore_worktree,
    snapshot,
    worktree_status,
)
from tests.support.helpers import git

GIT_TIMEOUT_S: Final = 30
SNAPSHOT_REF: Final = "refs/mimir/snapshots/s1"
BRANCH: Final = "mimir/s1"

FILES: Final = {
    "README.md": "# demo\n",
    "src/app.py": "def main() -> None:\n    print('hi')\n",
    "src/util.py": "X = 1\n",
    "run.sh": "#!/bin/sh\necho run\n",
    "docs/guide.md": "one\ntwo\nthree\n",
    ".gitignore": "*.log\nbuild/\n.env\nconfig/*.local\n",
}


# ---- helpers ---------------------------------------------------------------------------


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with one commit: text files, an executable, a symlink, ignores."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    write(root, FILES)
    (root / "run.sh").chmod(0o755)
    (root / "link").symlink_to("README.md")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    git(root, "tag", "-a", "-m", "first release", "v1")
    return root


@pytest.fixture
def worktree(repo: Path, tmp_path: Path) -> Path:
    path = tmp_path / "worktrees" / "s1"
    add_worktree(repo, path, BRANCH, resolve_commit(repo, "HEAD"))
    return path


def head(path: Path, rev: str = "HEAD") -> str:
    return git(path, "rev-parse", rev).strip()


def index_file(worktree: Path) -> Path:
    return Path(git(worktree, "rev-parse", "--path-format=absolute", "--git-path", "index").strip())


def index_entries(worktree: Path) -> list[tuple[str, str, str]]:
    """(mode, sha, path) of every index entry (all at stage 0, or the test fails)."""
    entries = []
    for line in git(worktree, "ls-files", "--stage", "-z").split("\0"):
        if line:
            meta, _, path = line.partition("\t")
            mode, sha, stage = meta.split()
            assert stage == "0"
            entries.append((mode, sha, path))
    return entries


def head_entries(worktree: Path) -> list[tuple[str, str, str]]:
    entries = []
    for line in git(worktree, "ls-tree", "-r", "-z", "HEAD").split("\0"):
        if line:
            meta, _, path = line.partition("\t")
            mode, _, sha = meta.split()
            entries.append((mode, sha, path))
    return entries


def files_of(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Every file and symlink under root (.git left out): kind, permission bits, bytes."""
    found: dict[str, tuple[str, int, bytes]] = {}
    for directory, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in [*names, *(d for d in dirs if os.path.islink(os.path.join(directory, d)))]:
            full = os.path.join(directory, name)
            rel = os.path.relpath(full, root)
            if rel == ".git":
                continue
            info = os.lstat(full)
            if stat.S_ISLNK(info.st_mode):
                found[rel] = ("link", 0, os.fsencode(os.readlink(full)))
            else:
                found[rel] = ("file", stat.S_IMODE(info.st_mode), Path(full).read_bytes())
    return found


def listed_paths(repo: Path) -> list[Path]:
    return [Path(os.path.realpath(w.path)) for w in list_git_worktrees(repo)]


def assert_nothing_left(repo: Path, path: Path, branches_before: str) -> None:
    assert not os.path.lexists(path)
    assert git(repo, "branch", "--list") == branches_before
    assert Path(os.path.realpath(path)) not in listed_paths(repo)
    assert not list((repo / ".git" / "worktrees").glob("*"))


def make_messy(worktree: Path) -> None:
    """Every kind of change an agent leaves behind, some of it staged."""
    (worktree / "README.md").write_text("# demo\nchanged by the agent\n")
    (worktree / "src" / "app.py").unlink()
    (worktree / "run.sh").chmod(0o644)
    (worktree / "src" / "util.py").chmod(0o755)
    (worktree / "notes.txt").write_text("new, untracked\n")
    (worktree / "pkg" / "deep").mkdir(parents=True)
    (worktree / "pkg" / "deep" / "mod.py").write_text("VALUE = 2\n")
    (worktree / "blob.bin").write_bytes(bytes(range(256)) * 3)
    (worktree / "link").unlink()
    (worktree / "link").symlink_to("docs/guide.md")
    (worktree / "new-link").symlink_to("src")
    (worktree / "docs" / "guide.md").write_text("one\n2\nthree\nfour\n")
    git(worktree, "add", "docs/guide.md")
    (worktree / "debug.log").write_text("ignored\n")
    (worktree / "build").mkdir()
    (worktree / "build" / "out.o").write_bytes(b"\x7fELF")


# ---- repo_state, resolve_commit, branch names ------------------------------------------


def test_repo_state_of_a_clean_checkout_names_head_and_branch(repo: Path) -> None:
    assert repo_state(repo) == worktrees.RepoState(
        head_commit=head(repo), branch="main", dirty=False
    )


def test_a_tracked_change_makes_the_repo_dirty(repo: Path) -> None:
    (repo / "README.md").write_text("edited\n")
    assert repo_state(repo).dirty


def test_an_untracked_file_makes_the_repo_dirty(repo: Path) -> None:
    (repo / "scratch.txt").write_text("x\n")
    assert repo_state(repo).dirty


def test_an_ignored_file_alone_does_not_make_the_repo_dirty(repo: Path) -> None:
    (repo / "server.log").write_text("x\n")
    (repo / "build").mkdir()
    (repo / "build" / "a.o").write_text("x\n")
    assert not repo_state(repo).dirty


def test_a_project_directory_that_is_gone_is_invalid_state(tmp_path: Path) -> None:
    with pytest.raises(InvalidState, match="cannot change to"):
        repo_state(tmp_path / "gone")


def test_repo_state_of_a_detached_head_has_no_branch(repo: Path) -> None:
    git(repo, "switch", "-q", "--detach", "HEAD")
    state = repo_state(repo)
    assert (state.branch, state.head_commit) == (None, head(repo))


def test_resolve_commit_accepts_a_branch_a_tag_and_a_sha_prefix(repo: Path) -> None:
    sha = head(repo)
    assert resolve_commit(repo, "main") == sha
    assert resolve_commit(repo, "v1") == sha  # an annotated tag, peeled to its commit
    assert resolve_commit(repo, sha[:8]) == sha


@pytest.mark.parametrize("ref", ["no-such-branch", "HEAD~5", "HEAD^{tree}", "-h", ""])
def test_resolve_commit_rejects_what_does_not_name_a_commit(repo: Path, ref: str) -> None:
    with pytest.raises(InvalidParams) as caught:
        resolve_commit(repo, ref)
    assert caught.value.field == "base_ref"


def test_a_repository_without_commits_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    assert repo_state(empty) == worktrees.RepoState(head_commit=None, branch="main", dirty=False)
    with pytest.raises(InvalidState, match="no commits yet") as caught:
        resolve_commit(empty, "HEAD")
    assert caught.value.field == "base_ref"


@pytest.mark.parametrize("name", ["a..b", "-x", "has space", "ends.lock", "@{-1}", "HEAD", ""])
def test_invalid_branch_names_are_rejected(repo: Path, name: str) -> None:
    with pytest.raises(InvalidParams) as caught:
        check_branch_name(name)
    assert caught.value.field == "branch"


def test_a_valid_branch_name_passes_and_branch_exists_sees_branches(repo: Path) -> None:
    check_branch_name("mimir/fix-login_2")
    assert branch_exists(repo, "main")
    assert not branch_exists(repo, "mimir/fix-login_2")


# ---- add_worktree ----------------------------------------------------------------------


def test_add_worktree_checks_out_a_new_branch_at_the_base(repo: Path, worktree: Path) -> None:
    assert head(worktree) == head(repo)
    assert git(worktree, "branch", "--show-current").strip() == BRANCH
    assert files_of(worktree) == files_of(repo)
    assert Path(os.path.realpath(worktree)) in listed_paths(repo)


def test_add_worktree_with_an_existing_branch_leaves_nothing_behind(
    repo: Path, tmp_path: Path
) -> None:
    git(repo, "branch", BRANCH)
    before = git(repo, "branch", "--list")
    path = tmp_path / "worktrees" / "s1"
    with pytest.raises(AlreadyExists) as caught:
        add_worktree(repo, path, BRANCH, head(repo))
    assert caught.value.field == "branch"
    assert_nothing_left(repo, path, before)
    assert not (tmp_path / "worktrees").exists()


def test_add_worktree_checked_still_refuses_a_branch_made_since_the_check(
    repo: Path, tmp_path: Path
) -> None:
    """``checked`` skips the caller's own checks, not git's: a branch made between the
    caller's look and the add is refused as AlreadyExists, the branch left as it is."""
    git(repo, "branch", BRANCH)
    before = git(repo, "branch", "--list")
    path = tmp_path / "worktrees" / "s1"
    with pytest.raises(AlreadyExists) as caught:
        add_worktree(repo, path, BRANCH, head(repo), checked=True)
    assert caught.value.field == "branch"
    assert_nothing_left(repo, path, before)
    assert not (tmp_path / "worktrees").exists()
    with pytest.raises(InvalidParams):
        add_worktree(repo, tmp_path / "s2", "other", "--orphan", checked=True)
    add_worktree(repo, tmp_path / "s3", "other", head(repo), checked=True)
    assert git(tmp_path / "s3", "branch", "--show-current").strip() == "other"


def test_add_worktree_at_an_existing_path_leaves_it_untouched(repo: Path, tmp_path: Path) -> None:
    path = tmp_path / "taken"
    path.mkdir()
    (path / "keep.txt").write_text("mine\n")
    before = git(repo, "branch", "--list")
    with pytest.raises(AlreadyExists) as caught:
        add_worktree(repo, path, BRANCH, head(repo))
    assert caught.value.field == "path"
    assert (path / "keep.txt").read_text() == "mine\n"
    assert git(repo, "branch", "--list") == before
    assert len(list_git_worktrees(repo)) == 1


def test_add_worktree_with_a_bad_base_commit_leaves_nothing_behind(
    repo: Path, tmp_path: Path
) -> None:
    before = git(repo, "branch", "--list")
    path = tmp_path / "a" / "b" / "s1"
    with pytest.raises(InvalidParams) as caught:
        add_worktree(repo, path, BRANCH, "0123456789abcdef0123456789abcdef01234567")
    assert caught.value.field == "base_ref"
    assert_nothing_left(repo, path, before)
    assert not (tmp_path / "a").exists()


def test_add_worktree_failing_inside_git_removes_what_git_made(repo: Path, tmp_path: Path) -> None:
    """A post-checkout hook that fails makes `git worktree add` exit 1 after it has
    created the branch, the directory and the admin entry: all three must go."""
    hook = repo / ".git" / "hooks" / "post-checkout"
    hook.write_text("#!/bin/sh\necho 'hook says no' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = git(repo, "branch", "--list")
    path = tmp_path / "worktrees" / "deeper" / "s1"
    with pytest.raises(InvalidState, match="hook says no"):
        add_worktree(repo, path, BRANCH, head(repo))
    assert_nothing_left(repo, path, before)
    assert not (tmp_path / "worktrees").exists()


def test_add_worktree_rejects_an_invalid_branch_name(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidParams) as caught:
        add_worktree(repo, tmp_path / "s1", "bad..name", head(repo))
    assert caught.value.field == "branch"
    assert not (tmp_path / "s1").exists()


# ---- snapshot --------------------------------------------------------------------------


def test_snapshot_of_a_clean_worktree_points_at_head(worktree: Path) -> None:
    saved = snapshot(worktree, SNAPSHOT_REF, "clean")
    assert (saved.commit, saved.files) == (head(worktree), 0)
    assert head(worktree, SNAPSHOT_REF) == head(worktree)


def test_snapshot_commits_every_change_on_top_of_head(worktree: Path) -> None:
    make_messy(worktree)
    saved = snapshot(worktree, SNAPSHOT_REF, "session s1 removed")
    assert head(worktree, SNAPSHOT_REF) == saved.commit
    assert head(worktree, f"{saved.commit}^") == head(worktree) == saved.head
    changed = git(worktree, "diff-tree", "-r", "--no-renames", "--name-only", "HEAD", saved.commit)
    assert sorted(changed.split()) == sorted(
        [
            "README.md",
            "src/app.py",
            "run.sh",
            "src/util.py",
            "notes.txt",
            "pkg/deep/mod.py",
            "blob.bin",
            "link",
            "new-link",
            "docs/guide.md",
        ]
    )
    assert saved.files == 10


def test_snapshot_commit_is_authored_by_mimir_without_any_configured_identity(
    worktree: Path,
) -> None:
    (worktree / "notes.txt").write_text("x\n")
    saved = snapshot(worktree, SNAPSHOT_REF, "why it was saved")
    shown = git(worktree, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%B", saved.commit)
    assert shown.startswith("Mimir <mimir@localhost>|Mimir <mimir@localhost>|why it was saved")
    assert f"Mimir-Snapshot: {SNAPSHOT_REF}" in shown


def test_snapshot_leaves_out_ignored_files(worktree: Path) -> None:
    make_messy(worktree)
    (worktree / ".env").write_text("SECRET=1\n")
    saved = snapshot(worktree, SNAPSHOT_REF, "")
    tree = git(worktree, "ls-tree", "-r", "--name-only", saved.commit).split()
    assert "notes.txt" in tree
    assert not {"debug.log", "build/out.o", ".env"} & set(tree)


def test_snapshot_moves_neither_the_branch_nor_the_index(repo: Path, worktree: Path) -> None:
    make_messy(worktree)
    git(worktree, "add", "notes.txt")
    index = index_file(worktree)
    before = (
        head(repo, BRANCH),
        index.read_bytes(),
        git(worktree, "diff", "--cached"),
        git(worktree, "status", "--porcelain"),
        files_of(worktree),
    )
    snapshot(worktree, SNAPSHOT_REF, "")
    after = (
        head(repo, BRANCH),
        index.read_bytes(),
        git(worktree, "diff", "--cached"),
        git(worktree, "status", "--porcelain"),
        files_of(worktree),
    )
    assert after == before


def test_snapshot_works_on_a_detached_head(worktree: Path) -> None:
    git(worktree, "switch", "-q", "--detach")
    (worktree / "notes.txt").write_text("x\n")
    saved = snapshot(worktree, SNAPSHOT_REF, "")
    assert head(worktree, f"{saved.commit}^") == head(worktree)
    assert saved.files == 1


def test_snapshot_on_an_unborn_branch_has_no_parent(worktree: Path) -> None:
    git(worktree, "switch", "-q", "--orphan", "fresh-start")
    (worktree / "only.txt").write_text("x\n")
    saved = snapshot(worktree, SNAPSHOT_REF, "")
    assert (saved.head, saved.files) == (None, 1)
    assert git(worktree, "log", "--format=%P", saved.commit).strip() == ""


def test_snapshot_refuses_a_ref_outside_refs_mimir(repo: Path, worktree: Path) -> None:
    before = head(repo, "main")
    with pytest.raises(InvalidParams) as caught:
        snapshot(worktree, "refs/heads/main", "")
    assert caught.value.field == "snapshot_ref"
    assert head(repo, "main") == before


# ---- remove ----------------------------------------------------------------------------


def test_remove_saves_the_work_then_removes_the_worktree_and_keeps_the_branch(
    repo: Path, worktree: Path
) -> None:
    make_messy(worktree)
    saved = remove_worktree(repo, worktree, branch=BRANCH, snapshot_ref=SNAPSHOT_REF)
    assert saved is not None
    assert saved.files == 10
    assert not worktree.exists()
    assert listed_paths(repo) == [Path(os.path.realpath(repo))]
    assert branch_exists(repo, BRANCH)
    assert head(repo, SNAPSHOT_REF) == saved.commit


def test_remove_refuses_and_removes_nothing_when_the_snapshot_cannot_be_made(
    repo: Path, worktree: Path
) -> None:
    """A stale lock on the snapshot ref, as a crashed git leaves it: update-ref
    creates `<ref>.lock` with O_EXCL, which fails for root too, so the snapshot
    cannot be recorded. The worktree, its files and its branch must all stay."""
    make_messy(worktree)
    lock = repo / ".git" / "refs" / "mimir" / "snapshots" / "s1.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    before = files_of(worktree)
    with pytest.raises(InvalidState, match="nothing was removed") as caught:
        remove_worktree(
            repo, worktree, branch=BRANCH, snapshot_ref=SNAPSHOT_REF, delete_branch=True
        )
    assert "s1.lock" in caught.value.message
    assert files_of(worktree) == before
    assert branch_exists(repo, BRANCH)
    assert Path(os.path.realpath(worktree)) in listed_paths(repo)
    assert check_worktree(repo, worktree, BRANCH).state == "ok"


def test_remove_refuses_a_worktree_holding_a_nested_repository(repo: Path, worktree: Path) -> None:
    """`git worktree remove` deletes a nested repository with all its commits, and a
    snapshot can only record a pointer to them: that work cannot be saved."""
    nested = worktree / "vendor" / "lib"
    nested.mkdir(parents=True)
    git(nested, "init", "-q")
    (nested / "a.txt").write_text("nested work\n")
    git(nested, "add", "a.txt")
    git(nested, "commit", "-q", "-m", "nested")
    with pytest.raises(InvalidState, match="nested git repositor") as caught:
        remove_worktree(repo, worktree, branch=BRANCH, snapshot_ref=SNAPSHOT_REF)
    assert caught.value.detail == {"nested_repositories": ["vendor/lib"]}
    assert (nested / "a.txt").read_text() == "nested work\n"


def test_force_removes_without_a_snapshot(repo: Path, worktree: Path) -> None:
    make_messy(worktree)
    lock = repo / ".git" / "refs" / "mimir" / "snapshots" / "s1.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    saved = remove_worktree(
        repo, worktree, branch=BRANCH, snapshot_ref=SNAPSHOT_REF, force=True, delete_branch=True
    )
    assert saved is None
    assert not worktree.exists()
    assert not branch_exists(repo, BRANCH)
    assert git(repo, "for-each-ref", "refs/mimir") == ""


def test_remove_without_force_needs_a_snapshot_ref(repo: Path, worktree: Path) -> None:
    with pytest.raises(InvalidParams) as caught:
        remove_worktree(repo, worktree, branch=BRANCH, snapshot_ref=None)
    assert caught.value.field == "snapshot_ref"
    assert worktree.exists()


def test_deleting_the_branch_keeps_its_commits_under_the_snapshot_ref(
    repo: Path, worktree: Path
) -> None:
    (worktree / "feature.py").write_text("done = True\n")
    git(worktree, "add", "feature.py")
    git(worktree, "commit", "-q", "-m", "agent's commit")
    committed = head(worktree)
    (worktree / "wip.py").write_text("not yet\n")
    saved = remove_worktree(
        repo, worktree, branch=BRANCH, snapshot_ref=SNAPSHOT_REF, delete_branch=True
    )
    assert saved is not None
    assert not branch_exists(repo, BRANCH)
    assert head(repo, f"{SNAPSHOT_REF}^") == committed


def test_deleting_a_branch_the_snapshot_does_not_hold_is_refused_before_removal(
    repo: Path, worktree: Path
) -> None:
    (worktree / "feature.py").write_text("done = True\n")
    git(worktree, "add", "feature.py")
    git(worktree, "commit", "-q", "-m", "agent's commit")
    git(worktree, "switch", "-q", "--detach", "main")
    with pytest.raises(InvalidState) as caught:
        remove_worktree(
            repo, worktree, branch=BRANCH, snapshot_ref=SNAPSHOT_REF, delete_branch=True
        )
    assert caught.value.field == "delete_branch"
    assert worktree.exists()
    assert branch_exists(repo, BRANCH)


def test_removing_an_already_missing_worktree_drops_only_its_git_entry(
    repo: Path, worktree: Path
) -> None:
    tip = head(worktree)
    shutil.rmtree(worktree)
    saved = remove_worktree(repo, worktree, branch=BRANCH, snapshot_ref=SNAPSHOT_REF)
    assert listed_paths(repo) == [Path(os.path.realpath(repo))]
    assert branch_exists(repo, BRANCH)
    # The branch tip is saved all the same, so that restore has something to bring back.
    assert saved is not None
    assert (saved.commit, saved.files, head(repo, SNAPSHOT_REF)) == (tip, 0, tip)


def test_removing_a_missing_worktree_and_its_branch_keeps_the_branch_tip(
    repo: Path, worktree: Path
) -> None:
    tip = head(worktree)
    shutil.rmtree(worktree)
    saved = remove_worktree(
        repo, worktree, branch=BRANCH, snapshot_ref=SNAPSHOT_REF, delete_branch=True
    )
    assert saved is not None
    assert (saved.commit, head(repo, SNAPSHOT_REF)) == (tip, tip)
    assert not branch_exists(repo, BRANCH)


def test_remove_refuses_a_directory_that_is_not_its_worktree(repo: Path, worktree: Path) -> None:
    shutil.rmtree(worktree)
    worktree.mkdir()
    (worktree / "precious.txt").write_text("someone's\n")
    with pytest.raises(InvalidState, match="not a worktree"):
        remove_worktree(repo, worktree, branch=BRANCH, snapshot_ref=None, force=True)
    assert (worktree / "precious.txt").read_text() == "someone's\n"


# ---- restore ---------------------------------------------------------------------------


def test_add_remove_restore_round_trip(repo: Path, worktree: Path) -> None:
    (worktree / "notes.txt").write_text("remember this\n")
    saved = remove_worktree(repo, worktree, branch=BRANCH, snapshot_ref=SNAPSHOT_REF)
    assert saved is not None
    restore_worktree(repo, worktree, branch=BRANCH, snapshot_commit=saved.commit)
    assert (worktree / "notes.txt").read_text() == "remember this\n"
    assert check_worktree(repo, worktree, BRANCH).state == "ok"
    assert git(worktree, "status", "--porcelain") == "?? notes.txt\n"


@pytest.mark.parametrize("delete_branch", [False, True], ids=["branch_kept", "branch_deleted"])
def test_restore_brings_every_file_back_byte_for_byte_with_the_index_at_head(
    repo: Path, worktree: Path, delete_branch: bool
) -> None:
    make_messy(worktree)
    expected = {
        rel: entry
        for rel, entry in files_of(worktree).items()
        if rel not in ("debug.log", "build/out.o")
    }
    untracked = git(worktree, "ls-files", "--others", "--exclude-standard")
    branch_tip = head(worktree)
    saved = remove_worktree(
        repo,
        worktree,
        branch=BRANCH,
        snapshot_ref=SNAPSHOT_REF,
        delete_branch=delete_branch,
    )
    assert saved is not None
    assert branch_exists(repo, BRANCH) is not delete_branch
    restore_worktree(repo, worktree, branch=BRANCH, snapshot_commit=saved.commit)
    assert files_of(worktree) == expected
    assert head(worktree) == branch_tip
    assert git(worktree, "branch", "--show-current").strip() == BRANCH
    assert git(worktree, "diff", "--cached", "--name-only") == ""
    assert index_entries(worktree) == head_entries(worktree)
    assert git(worktree, "ls-files", "--others", "--exclude-standard") == untracked


def test_restoring_a_clean_snapshot_checks_out_its_commit(repo: Path, worktree: Path) -> None:
    tip = head(worktree)
    saved = remove_worktree(
        repo, worktree, branch=BRANCH, snapshot_ref=SNAPSHOT_REF, delete_branch=True
    )
    assert saved is not None
    assert saved.files == 0
    restore_worktree(repo, worktree, branch=BRANCH, snapshot_commit=saved.commit)
    assert head(worktree) == tip
    assert git(worktree, "status", "--porcelain") == ""


def test_restore_onto_an_existing_path_is_refused(repo: Path, worktree: Path) -> None:
    saved = snapshot(worktree, SNAPSHOT_REF, "")
    with pytest.raises(AlreadyExists) as caught:
        restore_worktree(repo, worktree, branch=BRANCH, snapshot_commit=saved.commit)
    assert caught.value.field == "path"


def test_restore_of_an_unknown_snapshot_is_not_found(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        restore_worktree(repo, tmp_path / "s9", branch="mimir/s9", snapshot_commit="deadbeef" * 5)
    assert not (tmp_path / "s9").exists()
    assert not branch_exists(repo, "mimir/s9")


# ---- check_worktree --------------------------------------------------------------------


def test_check_worktree_ok_reads_files_and_runs_no_git(
    repo: Path, worktree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_git(*args: object, **kwargs: object) -> tuple[int, str, str]:
        raise AssertionError("check_worktree ran git in the common case")

    monkeypatch.setattr(worktrees, "_run", no_git)
    assert check_worktree(repo, worktree, BRANCH) == worktrees.WorkspaceCheck("ok")


def test_check_worktree_sees_a_deleted_worktree_as_missing(repo: Path, worktree: Path) -> None:
    shutil.rmtree(worktree)
    assert check_worktree(repo, worktree, BRANCH).state == "missing"


def test_check_worktree_finds_a_worktree_moved_by_git(
    repo: Path, worktree: Path, tmp_path: Path
) -> None:
    moved = tmp_path / "elsewhere"
    git(repo, "worktree", "move", str(worktree), str(moved))
    check = check_worktree(repo, worktree, BRANCH)
    assert check.state == "moved"
    assert check.actual_path is not None
    assert os.path.realpath(check.actual_path) == os.path.realpath(moved)


def test_check_worktree_sees_a_switched_branch(repo: Path, worktree: Path) -> None:
    git(worktree, "switch", "-q", "-c", "other")
    assert check_worktree(repo, worktree, BRANCH) == worktrees.WorkspaceCheck(
        "wrong_branch", actual_branch="other"
    )


def test_check_worktree_sees_a_detached_head(repo: Path, worktree: Path) -> None:
    git(worktree, "switch", "-q", "--detach")
    assert check_worktree(repo, worktree, BRANCH) == worktrees.WorkspaceCheck(
        "wrong_branch", actual_branch="HEAD"
    )


def test_check_worktree_accepts_a_rebase_in_progress_on_its_branch(
    repo: Path, worktree: Path
) -> None:
    (worktree / "README.md").write_text("branch side\n")
    git(worktree, "commit", "-q", "-am", "on the branch")
    (repo / "README.md").write_text("main side\n")
    git(repo, "commit", "-q", "-am", "on main")
    with pytest.raises(AssertionError, match="rebase main failed"):
        git(worktree, "rebase", "main")  # stops on the conflict, HEAD detached
    assert check_worktree(repo, worktree, BRANCH).state == "ok"


def test_check_worktree_sees_a_directory_recreated_by_hand(repo: Path, worktree: Path) -> None:
    shutil.rmtree(worktree)
    worktree.mkdir()
    assert check_worktree(repo, worktree, BRANCH).state == "not_a_worktree"


def test_check_worktree_sees_another_repository_in_its_place(repo: Path, worktree: Path) -> None:
    shutil.rmtree(worktree)
    git(repo, "worktree", "prune")
    git(repo.parent, "clone", "-q", "--branch", "main", str(repo), str(worktree))
    git(worktree, "switch", "-q", "-c", BRANCH)
    assert check_worktree(repo, worktree, BRANCH).state == "not_a_worktree"


def test_check_worktree_sees_a_copy_of_the_worktree_as_not_its_worktree(
    repo: Path, worktree: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(worktree, copy, symlinks=True)
    assert check_worktree(repo, copy, BRANCH).state == "not_a_worktree"


# ---- status and diff -------------------------------------------------------------------


def test_worktree_status_counts_commits_changes_and_untracked_files(
    repo: Path, worktree: Path
) -> None:
    base = resolve_commit(repo, "HEAD")
    (worktree / "feature.py").write_text("a\nb\n")
    git(worktree, "add", "feature.py")
    git(worktree, "commit", "-q", "-m", "agent's commit")
    (worktree / "docs" / "guide.md").write_text("one\nTWO\nthree\n")  # +1 -1
    (worktree / "untracked.txt").write_text("1\n2\n3\n")  # +3
    git(worktree, "rm", "-q", "src/util.py")  # -1, staged
    (worktree / "ignored.log").write_text("not counted\n")
    index = index_file(worktree)
    index_before = index.read_bytes()
    status = worktree_status(worktree, base)
    assert status == worktrees.WorktreeStatus(
        head=head(worktree),
        dirty=True,
        ahead=1,
        behind=0,
        files_changed=4,
        insertions=2 + 1 + 3,
        deletions=1 + 1,
    )
    assert index.read_bytes() == index_before


def test_worktree_status_of_a_fresh_worktree_is_clean(repo: Path, worktree: Path) -> None:
    status = worktree_status(worktree, resolve_commit(repo, "HEAD"))
    assert (status.dirty, status.ahead, status.behind, status.files_changed) == (False, 0, 0, 0)


def test_worktree_status_counts_commits_behind_the_base(repo: Path, worktree: Path) -> None:
    (repo / "more.txt").write_text("x\n")
    git(repo, "add", "more.txt")
    git(repo, "commit", "-q", "-m", "main moved on")
    status = worktree_status(worktree, resolve_commit(repo, "main"))
    assert (status.ahead, status.behind) == (0, 1)


def test_diff_lists_each_file_with_its_status_and_counts(repo: Path, worktree: Path) -> None:
    base = resolve_commit(repo, "HEAD")
    git(worktree, "mv", "docs/guide.md", "docs/manual.md")
    (worktree / "README.md").write_text("# demo\nmore\n")
    (worktree / "src" / "app.py").unlink()
    (worktree / "blob.bin").write_bytes(b"\0\1\2")
    (worktree / "link").unlink()
    (worktree / "link").write_text("now a file\n")
    changes, patch = diff(worktree, base)
    assert patch is None
    assert sorted(changes, key=lambda c: c.path) == [
        worktrees.FileChange("README.md", "modified", 1, 0, False),
        worktrees.FileChange("blob.bin", "added", 0, 0, True),
        worktrees.FileChange("docs/manual.md", "renamed", 0, 0, False, old_path="docs/guide.md"),
        worktrees.FileChange("link", "type_changed", 1, 1, False),
        worktrees.FileChange("src/app.py", "deleted", 0, 2, False),
    ]
    assert (
        git(worktree, "diff", "--cached", "--name-status")
        == "R100\tdocs/guide.md\tdocs/manual.md\n"
    )


def test_diff_patch_includes_untracked_files(repo: Path, worktree: Path) -> None:
    (worktree / "hello.txt").write_text("hello\n")
    changes, patch = diff(worktree, resolve_commit(repo, "HEAD"), patch=True)
    assert [c.path for c in changes] == ["hello.txt"]
    assert patch is not None
    assert "+++ b/hello.txt\n@@ -0,0 +1 @@\n+hello\n" in patch
    assert git(worktree, "status", "--porcelain") == "?? hello.txt\n"


# ---- list and copy ---------------------------------------------------------------------


def test_list_git_worktrees_includes_the_main_checkout_and_marks_prunable(
    repo: Path, worktree: Path
) -> None:
    listed = list_git_worktrees(repo)
    assert [(w.branch, w.prunable) for w in listed] == [("main", False), (BRANCH, False)]
    assert listed[1].head == head(worktree)
    shutil.rmtree(worktree)
    assert list_git_worktrees(repo)[1].prunable
    worktrees.prune_worktree_admin(repo)
    assert len(list_git_worktrees(repo)) == 1


def test_copy_files_copies_ignored_files_into_the_worktree(repo: Path, worktree: Path) -> None:
    write(repo, {".env": "TOKEN=1\n", "config/app.local": "debug\n", "config/b.local": "b\n"})
    (repo / "config" / "app.local").chmod(0o600)
    (worktree / "config").mkdir()
    (worktree / "config" / "b.local").write_text("already here\n")
    copied = copy_files(repo, worktree, [".env", "config/*.local", "missing/*.txt"])
    assert copied == [".env", "config/app.local"]
    assert (worktree / ".env").read_text() == "TOKEN=1\n"
    assert stat.S_IMODE((worktree / "config" / "app.local").stat().st_mode) == 0o600
    assert (worktree / "config" / "b.local").read_text() == "already here\n"
    assert git(worktree, "status", "--porcelain") == ""


def test_copy_files_copies_a_matched_directory_but_never_git_internals(
    repo: Path, worktree: Path
) -> None:
    write(repo, {"build/cache/a.bin": "a", "build/b.bin": "b"})
    assert copy_files(repo, worktree, ["build", ".git/*", "**/HEAD"]) == [
        "build/b.bin",
        "build/cache/a.bin",
    ]


@pytest.mark.parametrize("pattern", ["/etc/passwd", "../outside.txt", "config/../../x", ""])
def test_copy_files_refuses_patterns_that_leave_the_project(
    repo: Path, worktree: Path, pattern: str
) -> None:
    (repo / ".env").write_text("TOKEN=1\n")
    with pytest.raises(InvalidParams) as caught:
        copy_files(repo, worktree, [".env", pattern])
    assert caught.value.field == "copy_files"
    assert not (worktree / ".env").exists()


def test_copy_files_refuses_a_symlink_that_resolves_outside(
    repo: Path, worktree: Path, tmp_path: Path
) -> None:
    (tmp_path / "secret").write_text("no\n")
    (repo / "escape.local").symlink_to(tmp_path / "secret")
    (repo / ".env").write_text("ok\n")
    with pytest.raises(InvalidParams, match="outside") as caught:
        copy_files(repo, worktree, [".env", "*.local"])
    assert caught.value.field == "copy_files"
    assert not (worktree / ".env").exists()


def test_copy_files_does_not_write_through_a_symlinked_directory_in_the_worktree(
    repo: Path, worktree: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (worktree / "config").symlink_to(outside)
    write(repo, {"config/app.local": "x\n"})
    with pytest.raises(InvalidParams, match="symlink"):
        copy_files(repo, worktree, ["config/*.local"])
    assert list(outside.iterdir()) == []
