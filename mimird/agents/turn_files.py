"""The files a turn changed in its session's workspace, whoever changed them.

Agents that write files themselves (not through ``fs/write_text_file``) leave no
``file_written`` event; the workspace itself tells. When a turn starts, the tree of
every file of the workspace that is not ignored is written to the repository's object
store (a private index: the worktree's index, branch and files are not touched); when
it ends, the tree is taken again and the two are compared. What changed in between is
journaled with ``turn_ended``, at most :data:`MAX_TURN_FILES` files (and how many
more), whoever changed it: an edit the user makes during the turn counts as the turn's;
one made between turns does not (the next turn starts from it).

Only git workspaces are compared: a worktree, or a project worked on in place that is
a git repository itself. A private copy (a project that is not a git repository) or
an in-place directory without its own ``.git`` is skipped with that reason: asking
git there would find a repository above it and read all of that instead.

The private indexes live under the daemon's state directory (:data:`SCRATCH_DIR`), each
in a directory named after the daemon's pid: a daemon that was killed cannot remove its
own, and the next one removes them (:func:`clear_leftovers`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec
import structlog
import trio

from mimird.errors import MimirError
from mimird.processes import pid_alive
from mimird.readable import readable_text
from mimird.wire.events import ChangedFile
from mimird.workspaces import git

log = structlog.get_logger("mimird.agents.turn_files")

T = TypeVar("T")

#: Under the state directory: the sessions' private indexes.
SCRATCH_DIR: Final = "turn-index"
#: The most files one turn_ended lists; the rest are counted in ``files_more``.
MAX_TURN_FILES: Final = 1000
#: A path longer than this (an agent may make any name) is cut, with "…" at its end.
MAX_PATH_CHARS: Final = 1024
#: How long taking the tree at a turn's start or end may take; past it the turn goes
#: on (or ends) without its files, with the reason. A file git cannot read at once (one
#: another process holds a write lease on) would otherwise hold the turn up to the
#: kernel's lease break time (45 s); git goes on in its thread, unseen.
TREE_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class Start:
    """The workspace when a turn started: its tree, or why there is none."""

    tree: str | None
    skipped: str | None


@dataclass(frozen=True, slots=True)
class Changes:
    """What ``turn_ended`` says of the files: ``files`` is None when ``skipped``."""

    files: list[ChangedFile] | None
    more: int
    skipped: str | None


class _Skipped(str):
    """Why the files could not be had."""

    __slots__ = ()


def _shown(path: str) -> str:
    """A path from git (undecodable bytes surrogate-escaped) as JSON can hold it: bytes
    that are not UTF-8 as ``\\xNN``, and at most :data:`MAX_PATH_CHARS` characters."""
    text = readable_text(path)
    return text if len(text) <= MAX_PATH_CHARS else text[: MAX_PATH_CHARS - 1] + "…"


def _changes_since(workspace: Path, index: Path, old_tree: str) -> list[git.FileChange]:
    return git.tree_changes(workspace, old_tree, git.worktree_tree(workspace, index))


class TurnFiles:
    """Takes a session's workspace tree at each turn's start and compares at its end."""

    def __init__(
        self, workspace: Path, kind: str, limiter: trio.CapacityLimiter, scratch_root: Path
    ) -> None:
        self._workspace = workspace
        self._limiter = limiter
        self._scratch_root = scratch_root
        #: Holds the private index kept from turn to turn (made at the first turn).
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._not_git = (
            "a private copy of a project that is not a git repository"
            if kind == "private"
            else None
        )

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T | _Skipped:
        """``fn(*args)`` in a git thread; or why not (a string): too slow, or failed."""
        with trio.move_on_after(TREE_TIMEOUT_S):
            try:
                # Abandoned on timeout: git finishes on its own; the turn does not wait.
                return await trio.to_thread.run_sync(
                    fn, *args, limiter=self._limiter, abandon_on_cancel=True
                )
            except MimirError as exc:
                reason = str(exc)
            except Exception as exc:  # e.g. no room for the private index
                log.exception("turn_files_failed", workspace=str(self._workspace))
                reason = f"internal error in mimird: {exc!r}"
            log.info("turn_files_skipped", workspace=str(self._workspace), reason=reason)
            return _Skipped(reason)
        return _Skipped(f"reading the workspace took longer than {TREE_TIMEOUT_S:g} s")

    @property
    def _index(self) -> Path:
        assert self._scratch is not None
        return Path(self._scratch.name) / "index"

    def close(self) -> None:
        """Remove the private index (a git still at work on it fails, unseen)."""
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    async def start(self) -> Start:
        """The workspace's tree now, or why it cannot be had (never raises).

        Cancellation: nothing happened (a git process may finish unseen)."""
        if self._not_git is not None:
            return Start(None, self._not_git)
        if not await trio.to_thread.run_sync((self._workspace / ".git").exists):
            return Start(None, "the workspace is not a git repository of its own")
        if self._scratch is None:
            await trio.Path(self._scratch_root).mkdir(mode=0o700, parents=True, exist_ok=True)
            self._scratch = tempfile.TemporaryDirectory(
                prefix=f"{os.getpid()}-", dir=self._scratch_root, ignore_cleanup_errors=True
            )
        tree = await self._in_thread(git.worktree_tree, self._workspace, self._index)
        if isinstance(tree, _Skipped):
            return Start(None, str(tree))
        return Start(tree, None)

    async def changes(self, start: Start | None) -> Changes:
        """What changed since ``start`` (never raises).

        Cancellation: nothing happened (a git process may finish unseen)."""
        if start is None:
            return Changes(None, 0, "the turn ended before it started")
        if start.tree is None:
            return Changes(None, 0, start.skipped)
        found = await self._in_thread(_changes_since, self._workspace, self._index, start.tree)
        if isinstance(found, _Skipped):
            return Changes(None, 0, str(found))
        files = [
            ChangedFile(
                path=_shown(c.path),
                change=c.status,
                insertions=c.insertions,
                deletions=c.deletions,
                binary=c.binary,
                old_path=None if c.old_path is None else _shown(c.old_path),
            )
            for c in found[:MAX_TURN_FILES]
        ]
        return Changes(files, max(len(found) - MAX_TURN_FILES, 0), None)


def clear_leftovers(scratch_root: Path) -> list[Path]:
    """Remove the private indexes of daemons that are gone (killed: they could not);
    those of a daemon still running (another one on this state directory) stay.
    Sync: run it in a thread. Returns what it removed."""
    removed: list[Path] = []
    try:
        entries = list(scratch_root.iterdir())
    except FileNotFoundError:
        return removed
    for entry in entries:
        owner = entry.name.partition("-")[0]
        if owner.isdigit() and int(owner) > 0 and pid_alive(int(owner)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def masked(
    files: list[ChangedFile] | None, scrub: Callable[[str], str]
) -> list[ChangedFile] | None:
    """``files`` with ``scrub`` (the session's secrets masked) applied to every path."""
    if not files:
        return files
    return [
        msgspec.structs.replace(
            f, path=scrub(f.path), old_path=None if f.old_path is None else scrub(f.old_path)
        )
        for f in files
    ]


def search_text(files: list[ChangedFile] | None) -> str | None:
    """What of a turn's files is indexed for search: their paths (and former paths)."""
    if not files:
        return None
    return "\n".join(f.path if f.old_path is None else f"{f.old_path}\n{f.path}" for f in files)
