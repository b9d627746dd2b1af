"""A member's work, on git: committed onto its branch when its turn ends (so that
comparing and merging work on refs), and measured against the run's base.

Synchronous (run in the workspaces' git threads).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mimird.workspaces import git as worktrees
from mimird.workspaces.integrate import commit_worktree_against, put_back


@dataclass(frozen=True, slots=True)
class WorkStats:
    files_changed: int
    lines_added: int
    lines_deleted: int


def commit_work(worktree: Path, message: str, base_commit: str) -> tuple[str | None, WorkStats]:
    """Commit everything in the member's worktree onto its branch: the new commit,
    or None when there was nothing to commit (see
    :func:`~mimird.workspaces.integrate.commit_worktree`: Mimir's identity, no hook,
    the branch moved by compare-and-swap); and the work's stats against the base,
    read from the committed tree by the git call that also looks for nested
    repositories (six git calls in all, four when there is nothing to commit)."""
    commit, changes = commit_worktree_against(worktree, message, base_commit)
    return commit, _measured(changes)


def undo_check(worktree: Path, ref: str, message: str) -> bool:
    """Put a member's worktree that was clean before its check back to its HEAD:
    what the check changed or created (the ``__pycache__`` of a project that does
    not ignore it, a rewritten lock file, a report) is not the member's work, and
    would be compared and merged as if it were. Saved under ``ref`` first (see
    :func:`~mimird.workspaces.integrate.put_back`)."""
    return put_back(worktree, ref, message)


def stats(worktree: Path, base_commit: str) -> WorkStats:
    """Files changed and lines added/deleted in the worktree against the base."""
    changes, _ = worktrees.diff(worktree, base_commit)
    return _measured(changes)


def _measured(changes: list[worktrees.FileChange]) -> WorkStats:
    return WorkStats(
        files_changed=len(changes),
        lines_added=sum(c.insertions for c in changes),
        lines_deleted=sum(c.deletions for c in changes),
    )


def patch(worktree: Path, base_commit: str, max_bytes: int) -> tuple[str, bool]:
    """The member's unified diff against the base, at most ``max_bytes`` (UTF-8);
    True when it was cut."""
    _, text = worktrees.diff(worktree, base_commit, patch=True)
    encoded = (text or "").encode()
    if len(encoded) <= max_bytes:
        return text or "", False
    return encoded[:max_bytes].decode(errors="ignore"), True
