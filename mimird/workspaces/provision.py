"""A session's workspace on disk: making it (worktree, private copy, in place),
removing it (snapshot first), restoring and repairing it, and detecting drift.

:mod:`.git` does the git work, synchronously; this owner runs it in worker
threads with two limiters: one for work that changes worktrees (serialised per
project by :meth:`Workspaces.project_lock`, as git's own locks on refs and
worktree admin files are not made for concurrent writers) and one for reads of
git state (status, drift, diff), so that ``session.get`` never queues behind a
``session.create`` that is checking out a large tree.

Nothing here writes the database: the sessions owner records what happened.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import trio

from mimird import names, policy, workspace_keys
from mimird.config import Settings
from mimird.errors import AlreadyExists, InvalidParams, InvalidState, MimirError
from mimird.sessions.records import SessionRow
from mimird.sessions.states import FOREIGN_WORKSPACE, USABLE_WORKSPACE
from mimird.wire import events
from mimird.workspaces import git as worktrees

T = TypeVar("T")

#: Git work that changes worktrees, at once across all projects (each is a few
#: processes and disk I/O).
GIT_THREADS: Final = 4
#: Reads of git state (status, drift checks, diffs) at once: their own threads, so
#: they never wait behind worktree creation.
GIT_READ_THREADS: Final = 4
#: How much of a file a private copy reads at a time.
COPY_CHUNK_BYTES: Final = 1 << 20
SNAPSHOT_REF_PREFIX: Final = "refs/mimir/snapshots/"
ORPHAN_REF_PREFIX: Final = "refs/mimir/orphans/"

_DRIFT_HINTS: Final = {
    "missing": "its directory is gone; 'session repair' re-creates it from the branch",
    "moved": "it was moved; 'session repair' adopts the new place",
    "not_a_worktree": "the directory is no longer this repository's worktree; "
    "move it away, then 'session repair' re-creates the worktree",
    "removed": "its worktree was removed; 'session restore' brings it back",
    "foreign": "this mimird did not make the worktree at its path (the session was "
    "imported); if it is the session's, 'session repair' checks it and adopts it",
}
#: The same for a private copy, which Mimir does not check on disk: these states
#: come from an import (the copy was made on another machine).
_COPY_HINTS: Final = {
    "missing": "its private copy is not on this machine (the session was imported); "
    "there is nothing to work in",
    "foreign": "this mimird did not make the directory at its path (the session was "
    "imported); if it is the session's copy, 'session repair' adopts it",
    "removed": "its private copy is in the trash; 'session restore' brings it back",
}


def _fixed_start(template: str) -> Path:
    """The leading directories of an absolute ``worktree_location`` that no
    placeholder fills: the root its paths must stay under."""
    fixed: list[str] = []
    for part in template.split("/"):
        if "{" in part or "}" in part or part in (".", ".."):
            break
        fixed.append(part)
    return Path("/".join(fixed) or "/")


def _mimir_dir_inside_or_around(
    root: Path, mimir_dirs: dict[str, Path]
) -> tuple[str, Path, bool] | None:
    """The first of Mimir's directories that ``root`` holds (True) or lies in
    (False), or None. Sync: symlinks are resolved, so run it in a thread."""
    resolved = root.resolve()
    for what, path in mimir_dirs.items():
        mine = path.resolve()
        if mine.is_relative_to(resolved):
            return what, mine, True
        if resolved.is_relative_to(mine):
            return what, mine, False
    return None


def _bounded_copy(root: Path, path: Path, max_bytes: int) -> None:
    """``shutil.copytree`` of ``root`` to ``path`` (symlinks copied as links), refused
    with invalid_state when the files add up to more than ``max_bytes``: first by a
    scan that writes nothing, then while copying (a file may grow in between)."""
    if path.resolve().is_relative_to(root.resolve()):
        raise InvalidParams(
            f"the private copy's path {path} lies inside the project {root} it copies; "
            "set worktree_location to a place outside the project",
            field="config.worktree_location",
        )

    def too_large(size: int) -> InvalidState:
        return InvalidState(
            f"{root} holds more than copy_max_bytes ({max_bytes} bytes) for a private copy "
            f"(at least {size}); raise copy_max_bytes in the project's or session's config, "
            "make the project a git repository (worktrees copy nothing), or use 'in_place'",
            field="copy_max_bytes",
            detail={"limit": max_bytes, "size_at_least": size},
        )

    total = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            with contextlib.suppress(OSError):  # gone, or unreadable: the copy reports it
                total += os.lstat(os.path.join(dirpath, name)).st_size
            if total > max_bytes:
                raise too_large(total)
    copied = 0

    def copy_counted(src: str, dst: str) -> str:
        # Opened without following a symlink or blocking on a FIFO swapped in since
        # the scan; read no further than the budget, however the file grows.
        nonlocal copied
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as source:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", src)
            with open(dst, "xb") as target:
                while chunk := source.read(min(COPY_CHUNK_BYTES, max_bytes - copied + 1)):
                    copied += len(chunk)
                    if copied > max_bytes:
                        raise too_large(copied)
                    target.write(chunk)
        shutil.copystat(src, dst)
        return dst

    shutil.copytree(root, path, symlinks=True, copy_function=copy_counted)


def snapshot_ref(session_id: str) -> str:
    """Where a session's work is saved when its worktree is removed."""
    return f"{SNAPSHOT_REF_PREFIX}{session_id}"


def refuse_drifted(row: SessionRow, action: str) -> None:
    """Raise invalid_state when the session's worktree (or private copy) is not
    usable for ``action``."""
    if row.workspace_state in USABLE_WORKSPACE or row.workspace_kind == "in_place":
        return
    if row.workspace_kind == "worktree":
        hint = _DRIFT_HINTS.get(row.workspace_state, "")
        if row.workspace_state == "wrong_branch":
            hint = (
                f"another branch is checked out in it; switch back to {row.branch} "
                f"('git switch {row.branch}' in {row.workspace_path})"
            )
    else:
        hint = _COPY_HINTS.get(row.workspace_state, "")
    raise InvalidState(
        f"cannot {action} session {row.id}: its workspace is {row.workspace_state}: {hint}",
        field="session",
        id=row.id,
        detail={"workspace_state": row.workspace_state},
    )


def has_worktree(row: SessionRow) -> bool:
    """Whether the session's workspace is a git worktree (a session from before
    workspaces existed, schema 0002, has no path)."""
    return row.workspace_kind == "worktree" and bool(row.workspace_path)


@dataclass(frozen=True, slots=True)
class Repair:
    """What a repair changed: the row's new values and the fact to journal."""

    values: dict[str, Any]
    event: events.WorkspaceRepaired


class Workspaces:
    """The owner of sessions' workspaces on disk (no tasks of its own: every call
    runs its git work in a worker thread and returns)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._write_limiter = trio.CapacityLimiter(GIT_THREADS)
        self._read_limiter = trio.CapacityLimiter(GIT_READ_THREADS)
        self._project_locks: dict[str, trio.Lock] = {}

    # ---- plumbing ---------------------------------------------------------------

    async def git(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` (a function of :mod:`mimird.workspaces.git`, or other blocking
        disk work) in a thread of the limiter for changes.

        Cancellation: a cancel before the thread starts raises at once and nothing
        ran; once started the thread is not abandoned: the call returns its result
        and the cancel is delivered at the caller's next checkpoint."""
        return await trio.to_thread.run_sync(
            lambda: fn(*args, **kwargs), limiter=self._write_limiter
        )

    async def read_git(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Like :meth:`git`, for reads of git state, in their own threads.

        Cancellation: as :meth:`git`."""
        return await trio.to_thread.run_sync(
            lambda: fn(*args, **kwargs), limiter=self._read_limiter
        )

    @property
    def read_limiter(self) -> trio.CapacityLimiter:
        """The threads for reads of git state (the agent manager's turns use them too)."""
        return self._read_limiter

    def project_lock(self, project_id: str) -> trio.Lock:
        """The lock held while a project's worktrees change."""
        return self._project_locks.setdefault(project_id, trio.Lock())

    def path_for(self, effective: policy.Effective, placeholders: dict[str, str]) -> Path:
        """Where a new session's workspace goes: worktree_location, under the
        worktrees directory unless absolute (then under the template's fixed start);
        invalid_params if the names filled in would lead it out."""
        template: str = effective.values["worktree_location"]
        location = Path(workspace_keys.render_template(template, **placeholders))
        root = _fixed_start(template) if location.is_absolute() else self._settings.worktrees_dir
        return names.under_root(
            root, root / location, what="workspace path", field="config.worktree_location"
        )

    def trash(self, session_id: str) -> Path:
        """Where a deleted session's private copy is kept for restore."""
        root = self._settings.state_dir / "trash"
        return names.under_root(root, root / session_id, what="trash path", field="session")

    def mimir_dirs(self) -> dict[str, Path]:
        """The directories that hold Mimir's own files, by what they are (the
        worktrees directory first: it is usually inside the data directory)."""
        settings = self._settings
        return {
            "worktrees directory": settings.worktrees_dir,
            "data directory": settings.database_path.parent,
            "state directory": settings.state_dir,
            "runtime directory": settings.socket_path.parent,
        }

    async def refuse_mimir_data(self, root: Path, *, field: str) -> None:
        """Raise invalid_params if ``root`` holds one of Mimir's directories or lies
        inside one: copying it, or making worktrees of it, would feed Mimir's files
        back into themselves (a home directory copied into its own worktrees
        directory, until the path is too long or the disk is full).

        Cancellation: nothing changes."""
        found = await self.read_git(_mimir_dir_inside_or_around, root, self.mimir_dirs())
        if found is not None:
            what, path, holds = found
            relation = "contains" if holds else "is inside"
            raise InvalidParams(
                f"{root} {relation} Mimir's {what} {path}; a project there would take in "
                "Mimir's own files: use a directory that neither holds nor lies in it",
                field=field,
                detail={"mimir_dir": str(path)},
            )

    async def refuse_adopting(self, path: Path, project_root: Path, session_id: str) -> None:
        """Raise invalid_state unless the directory at ``path`` may become a session's
        private copy (which its delete moves into the trash): it holds none of Mimir's
        directories, lies in none but the worktrees directory, and neither is, holds
        nor lies in the project's directory.

        Cancellation: nothing changes."""

        def why_not() -> str | None:
            found = _mimir_dir_inside_or_around(path, self.mimir_dirs())
            if found is not None and (found[2] or found[0] != "worktrees directory"):
                what, mine, holds = found
                return f"it {'contains' if holds else 'is inside'} Mimir's {what} {mine}"
            resolved, project = path.resolve(), project_root.resolve()
            if resolved.is_relative_to(project) or project.is_relative_to(resolved):
                return f"it is, holds or lies in the project's directory {project}"
            return None

        reason = await self.read_git(why_not)
        if reason is not None:
            raise InvalidState(
                f"cannot adopt {path} as the private copy of session {session_id}: {reason}",
                field="session",
                id=session_id,
                detail={"workspace_state": "foreign"},
            )

    # ---- reads ------------------------------------------------------------------

    async def check(
        self, row: SessionRow, *, adopting: bool = False
    ) -> worktrees.WorkspaceCheck | None:
        """The worktree's state on disk now; None when there is no worktree to check,
        or when it is ``foreign`` (an import's: only :meth:`Sessions.repair`,
        ``adopting``, checks it, and a check that finds it sound adopts it).

        Cancellation: as :meth:`read_git`; nothing changes."""
        if (
            row.workspace_kind != "worktree"
            or row.workspace_state == "removed"
            or (row.workspace_state == "foreign" and not adopting)
            or not row.branch
            or not row.workspace_path
        ):
            return None
        return await self.read_git(
            worktrees.check_worktree, Path(row.project_path), Path(row.workspace_path), row.branch
        )

    async def upstream(self, row: SessionRow) -> str | None:
        """The base branch's tip now (ahead/behind is measured against it), if the
        session was based on a branch that still exists.

        Cancellation: nothing changes."""
        if not row.base_ref or row.base_ref == row.base_commit:
            return None
        try:
            return await self.read_git(
                worktrees.resolve_commit, Path(row.project_path), row.base_ref
            )
        except MimirError:
            return None

    async def status(self, row: SessionRow) -> worktrees.WorktreeStatus | None:
        """HEAD, dirtiness, ahead/behind and diff stats of a usable git workspace.

        Cancellation: nothing changes."""
        if row.workspace_state != "ok" or not row.base_commit or row.workspace_kind == "private":
            return None
        return await self.read_git(
            worktrees.worktree_status,
            Path(row.workspace_path),
            row.base_commit,
            upstream=await self.upstream(row),
        )

    async def diff(
        self, row: SessionRow, *, patch: bool
    ) -> tuple[list[worktrees.FileChange], str | None]:
        """What the session changed against its base commit.

        Cancellation: nothing changes."""
        refuse_drifted(row, "diff")
        if row.base_commit is None or row.workspace_kind == "private":
            raise InvalidState(
                f"session {row.id} has no git base to diff against "
                f"(workspace {row.workspace_kind})",
                field="session",
                id=row.id,
            )
        return await self.read_git(
            worktrees.diff, Path(row.workspace_path), row.base_commit, patch=patch
        )

    # ---- changes ----------------------------------------------------------------

    async def check_new_worktree(
        self, root: Path, path: Path, branch: str, *, new: bool = False
    ) -> None:
        """Raise unless a worktree can be made at ``path`` on a new ``branch``: neither
        exists yet. Checked before a create writes its intent, so that whatever is
        there later is the create's own (and undoing it touches nothing else).
        ``new``: the caller named the branch after an id it just made (a run's
        members), so git is not asked; if it exists after all, the worktree add is
        refused by git (AlreadyExists), and the branch left alone.

        Cancellation: nothing changes."""

        def check() -> None:
            if os.path.lexists(path):
                raise AlreadyExists(
                    f"{path} already exists; choose another path or remove it first", field="path"
                )
            worktrees.check_branch_name(branch)
            if not new and worktrees.branch_exists(root, branch):
                raise AlreadyExists(
                    f"branch {branch!r} already exists in {root}; choose another branch name",
                    field="branch",
                )

        await self.read_git(check)

    async def make_copy(self, root: Path, path: Path, *, max_bytes: int) -> None:
        """Copy a project that is not a git repository to ``path`` (which must not
        exist, nor lie inside ``root``): at most ``max_bytes`` of files, else
        invalid_state naming ``copy_max_bytes``, the size counted before anything is
        written and again while copying.

        Cancellation: the copy runs to its end in its thread; the caller's intent
        says the path is its own, so a copy cut short (or refused half-way) is
        removed when the intent is settled (at once, or at the next start)."""
        try:
            await self.git(_bounded_copy, root, path, max_bytes)
        except FileExistsError:
            # Someone made it since the caller looked: it is not the copy's.
            raise AlreadyExists(f"{path} already exists", field="path") from None
        except shutil.Error as exc:
            # copytree gathers (src, dst, reason) for each file it could not copy (a
            # FIFO, a socket, an unreadable file) and raises them together at the end.
            failures = [f for f in (exc.args[0] if exc.args else ()) if isinstance(f, tuple)]
            src, why = (str(failures[0][0]), str(failures[0][2])) if failures else (str(root), "")
            raise InvalidState(
                f"could not copy {len(failures) or 'some'} file(s) of {root}, such as {src}: "
                f"{why}; a private copy takes regular files, directories and symlinks only",
                field="project",
                detail={"path": src, "failures": len(failures)},
            ) from None

    async def remove(
        self, row: SessionRow, *, force: bool, delete_branch: bool
    ) -> worktrees.Snapshot | None:
        """Snapshot the session's work to its snapshot ref, then remove its worktree
        (and the branch with ``delete_branch``). Refused for a workspace that
        drifted to something else unless ``force``.

        Cancellation: once the git work started it runs to its end (see :meth:`git`)."""
        if row.workspace_state in FOREIGN_WORKSPACE and not force:
            refuse_drifted(row, "delete")
        return await self.git(
            worktrees.remove_worktree,
            Path(row.project_path),
            Path(row.workspace_path),
            branch=row.branch,
            snapshot_ref=snapshot_ref(row.id),
            delete_branch=delete_branch,
            force=force,
            message=f"mimir: work of session {row.id} ({row.title or row.task[:60]})",
            base_commit=row.base_commit,
        )

    async def move_to_trash(self, row: SessionRow) -> None:
        """Move a private copy out of the way, kept for restore.

        Cancellation: the move runs to its end in its thread."""
        trash = self.trash(row.id)
        await trio.to_thread.run_sync(lambda: trash.parent.mkdir(parents=True, exist_ok=True))
        await self.git(shutil.move, row.workspace_path, trash)

    async def check_restorable(self, row: SessionRow) -> None:
        """Raise unless :meth:`restore` can bring the workspace back: nothing is at
        its path, and a worktree has a snapshot to restore from.

        Cancellation: nothing changes."""
        path = Path(row.workspace_path)
        if await trio.Path(path).exists():
            raise AlreadyExists(
                f"cannot restore session {row.id}: {path} exists; move it away first",
                field="path",
            )
        if row.workspace_kind == "worktree" and (row.snapshot_commit is None or row.branch is None):
            raise InvalidState(
                f"session {row.id} has no snapshot to restore its work from (it was "
                "deleted with force)",
                field="session",
                id=row.id,
            )
        if row.workspace_kind == "private" and not await trio.Path(self.trash(row.id)).is_dir():
            raise InvalidState(
                f"cannot restore session {row.id}: its private copy is not in the trash "
                f"({self.trash(row.id)}): it was deleted on another machine (the session was "
                "imported), or the trash was emptied",
                field="session",
                id=row.id,
            )

    async def restore(self, row: SessionRow) -> None:
        """Bring a removed workspace back at its path: a worktree from its snapshot,
        a private copy from the trash.

        Cancellation: once the git work started it runs to its end (see :meth:`git`)."""
        await self.check_restorable(row)
        path = Path(row.workspace_path)
        if row.workspace_kind == "worktree":
            assert row.snapshot_commit is not None
            assert row.branch is not None
            await self.git(
                worktrees.restore_worktree,
                Path(row.project_path),
                path,
                branch=row.branch,
                snapshot_commit=row.snapshot_commit,
            )
        elif row.workspace_kind == "private":
            trash = self.trash(row.id)

            def move_back() -> None:
                # Its parent first: shutil.move would otherwise copy it file by file.
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(trash, path)

            await self.git(move_back)

    async def repair(self, row: SessionRow, check: worktrees.WorkspaceCheck) -> Repair:
        """Adopt a moved worktree, or re-create a missing one from its branch.

        Cancellation: once the git work started it runs to its end."""
        assert row.branch is not None
        if check.state == "moved" and check.actual_path is not None:
            return Repair(
                {"workspace_path": str(check.actual_path), "workspace_state": "ok"},
                events.WorkspaceRepaired(adopted_path=str(check.actual_path)),
            )
        if check.state == "missing":
            root = Path(row.project_path)
            branch = row.branch

            def recreate() -> None:
                worktrees.prune_worktree_admin(root)
                worktrees.restore_worktree(
                    root,
                    Path(row.workspace_path),
                    branch=branch,
                    snapshot_commit=worktrees.resolve_commit(root, branch),
                )

            await self.git(recreate)
            return Repair(
                {"workspace_state": "ok"},
                events.WorkspaceRepaired(recreated_from_branch=row.branch),
            )
        refuse_drifted(row, "repair")
        raise AssertionError("unreachable")
