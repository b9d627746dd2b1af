"""Every git command of Mimir's that writes objects fsyncs them as it writes them.

git writes an object only once: a command that finds it already there neither
writes nor fsyncs it again. So a snapshot or a commit is durable only if every
earlier writer of the same objects was: a diff (``session.get``, ``run.get``), a
turn's tree or a comparison that hashed the work a moment before would otherwise
leave its blobs in the page cache under a snapshot that only looks durable, and a
crash after the worktree's removal would lose the work.

Seen through git's own trace (``GIT_TRACE2_EVENT``: per process, its argv and the
``fsync/hardware-flush`` count; git >= 2.36), on real repositories whose worktrees
hold content git has never seen.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import pytest

from mimird.workspaces import compare
from mimird.workspaces import git as worktrees
from mimird.workspaces.integrate import commit_worktree, integrate
from tests.support.helpers import git, make_repo, write

BRANCH: Final = "mimir/test/1-fake"
#: git commands that write objects or move refs.
WRITERS: Final = frozenset(
    {"add", "write-tree", "commit-tree", "merge-tree", "update-ref", "merge", "pack-objects"}
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "hello\n", "src/app.py": "x = 1\n"})


@pytest.fixture
def worktree(repo: Path, tmp_path: Path) -> Path:
    path = tmp_path / "worktrees" / "member"
    worktrees.add_worktree(repo, path, BRANCH, worktrees.resolve_commit(repo, "HEAD"))
    # Content no git command has hashed yet: whoever hashes it writes its blob.
    write(path, {"new.txt": f"{uuid.uuid4()}\n", "src/app.py": f"x = '{uuid.uuid4()}'\n"})
    return path


def _verb(argv: list[str]) -> str:
    """The git command of an argv: what follows git's own options."""
    i = 1
    while i < len(argv):
        if argv[i] in ("-C", "-c"):
            i += 2
        elif argv[i].startswith("-"):
            i += 1
        else:
            return argv[i]
    return ""


def traced(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fn: Callable[[], Any]
) -> list[tuple[str, int]]:
    """Run ``fn`` with git tracing itself: (command, fsyncs that reached the disk) for
    every git process it ran."""
    trace = tmp_path / f"trace-{uuid.uuid4().hex}.json"
    monkeypatch.setenv("GIT_TRACE2_EVENT", str(trace))
    fn()
    monkeypatch.delenv("GIT_TRACE2_EVENT")
    argv: dict[str, list[str]] = {}
    flushes: dict[str, int] = {}
    for line in trace.read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "start":
            argv[event["sid"]] = event["argv"]
        elif event.get("category") == "fsync" and event.get("key") == "fsync/hardware-flush":
            flushes[event["sid"]] = flushes.get(event["sid"], 0) + int(event["value"])
    return [(_verb(args), flushes.get(sid, 0)) for sid, args in argv.items()]


def _check_durable(processes: list[tuple[str, int]], expected: set[str]) -> None:
    writers = [(verb, n) for verb, n in processes if verb in WRITERS]
    assert {verb for verb, _ in writers} == expected, processes
    not_flushed = [verb for verb, n in writers if n == 0]
    assert not not_flushed, f"wrote without fsync: {not_flushed} (all: {processes})"


@pytest.fixture(autouse=True)
def _git_traces_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probe = make_repo(tmp_path / "probe", {"a": "a\n"})
    write(probe, {"b": f"{uuid.uuid4()}\n"})
    found = traced(
        monkeypatch,
        tmp_path,
        lambda: subprocess.run(
            ["git", "-c", "core.fsync=committed", "add", "--all"], cwd=probe, check=True
        ),
    )
    if not any(n for _, n in found):
        pytest.skip("this git does not trace its fsyncs (git >= 2.36 does)")


def test_a_turns_tree_writes_its_objects_durably(
    worktree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = tmp_path / "turn-index"
    found = traced(monkeypatch, tmp_path, lambda: worktrees.worktree_tree(worktree, index))
    _check_durable(found, {"add", "write-tree"})


def test_a_diff_of_the_worktree_writes_its_blobs_durably(
    worktree: Path, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = worktrees.resolve_commit(repo, "HEAD")
    found = traced(monkeypatch, tmp_path, lambda: worktrees.diff(worktree, base, patch=True))
    _check_durable(found, {"add"})


def test_the_tree_of_a_worktree_for_a_comparison_is_written_durably(
    worktree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = traced(monkeypatch, tmp_path, lambda: compare.work_tree(worktree))
    _check_durable(found, {"add", "write-tree"})


def test_a_snapshot_and_a_commit_of_the_work_are_written_durably(
    worktree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = traced(
        monkeypatch,
        tmp_path,
        lambda: worktrees.snapshot(worktree, "refs/mimir/snapshots/test", "snapshot"),
    )
    _check_durable(found, {"add", "write-tree", "commit-tree", "update-ref"})
    write(worktree, {"more.txt": f"{uuid.uuid4()}\n"})
    found = traced(monkeypatch, tmp_path, lambda: commit_worktree(worktree, "the work"))
    _check_durable(found, {"add", "write-tree", "commit-tree", "update-ref"})


def _removed(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    repo: Path,
    worktree: Path,
    snapshot: str,
    **options: Any,
) -> list[tuple[str, int]]:
    """:func:`traced` of the worktree's removal, its work saved under ``snapshot``."""
    return traced(
        monkeypatch,
        tmp_path,
        lambda: worktrees.remove_worktree(
            repo,
            worktree,
            branch=BRANCH,
            snapshot_ref=f"refs/mimir/snapshots/{snapshot}",
            **options,
        ),
    )


def test_a_branch_tip_saved_before_its_branch_goes_is_written_durably(
    worktree: Path, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worktree's directory is gone: its branch's tip is all there is to save.
    shutil.rmtree(worktree)
    found = _removed(monkeypatch, tmp_path, repo, worktree, "gone", delete_branch=True)
    _check_durable(found, {"update-ref"})
    assert git(repo, "rev-parse", "refs/mimir/snapshots/gone").strip()


def _unpacked(repo: Path, tip: str, base: str) -> str:
    """The objects from ``base`` to ``tip`` that are in no pack (loose only)."""
    return git(repo, "rev-list", "--objects", "--unpacked", tip, f"^{base}").strip()


@pytest.mark.parametrize(
    "known_base",
    [True, False, None],
    ids=["base", "base-the-repository-lost", "base-that-is-no-sha"],
)
def test_work_an_agent_committed_itself_is_packed_durably_before_its_worktree_goes(
    worktree: Path,
    repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    known_base: bool | None,
) -> None:
    # The agent's own git (the user's config: no fsync of loose objects) commits the
    # work; the snapshot finds those objects present and would sync none of them.
    base = worktrees.resolve_commit(repo, "HEAD")
    git(worktree, "add", "-A")
    git(worktree, "commit", "-q", "-m", "the agent's own commit")
    tip = worktrees.resolve_commit(worktree, "HEAD")
    assert _unpacked(repo, tip, base)  # loose, as git left them
    given = {True: base, False: "f" * 40, None: "--all"}[known_base]
    found = _removed(monkeypatch, tmp_path, repo, worktree, "agent", base_commit=given)
    # The snapshot's add and write-tree find every object present and sync nothing
    # (the gap): the pack of everything since the base is synced.
    flushed = dict(found)
    assert (flushed["add"], flushed["write-tree"]) == (0, 0), found
    assert flushed["pack-objects"] > 0, found
    assert not worktree.exists()
    assert _unpacked(repo, tip, base) == ""
    assert git(repo, "rev-parse", "refs/mimir/snapshots/agent").strip() == tip


def _commit_new_file(repo: Path, branch: str, *, create: bool = False) -> None:
    """On ``branch`` (made from HEAD if ``create``), left checked out: a commit adding
    ``<branch>.txt`` with content git has not seen."""
    git(repo, "switch", "-q", *(["-c"] if create else []), branch)
    write(repo, {f"{branch}.txt": f"{uuid.uuid4()}\n"})
    git(repo, "add", f"{branch}.txt")
    git(repo, "commit", "-q", "-m", branch)


def test_a_merge_writes_its_merged_tree_durably(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    git(repo, "branch", "target")
    _commit_new_file(repo, "feature", create=True)
    _commit_new_file(repo, "target")
    git(repo, "switch", "-q", "main")
    found = traced(monkeypatch, tmp_path, lambda: integrate(repo, "feature", "target"))
    # A true merge: merge-tree writes the merged tree, the merge commit and the
    # branch's move follow.
    _check_durable(found, {"merge-tree", "commit-tree", "update-ref"})


def test_a_checked_out_branch_moved_by_a_merge_is_written_durably(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # main is checked out in the repository: the merge commit is made, then the
    # checkout fast-forwarded to it (git updates the files and the branch).
    _commit_new_file(repo, "feature", create=True)
    _commit_new_file(repo, "main")
    found = traced(monkeypatch, tmp_path, lambda: integrate(repo, "feature", "main"))
    _check_durable(found, {"merge-tree", "commit-tree", "merge"})
