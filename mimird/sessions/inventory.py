"""Every worktree Mimir made, checked against the disk, and the orphans: worktree
directories under the worktrees directory that no session owns; pruning what no
session needs (each snapshotted first)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import trio

from mimird.config import Settings
from mimird.projects import list_projects
from mimird.sessions import records
from mimird.sessions.lifecycle import RECORD_GRACE_S, Sessions
from mimird.sessions.records import SessionRow
from mimird.sessions.states import NOTHING_TO_REMOVE
from mimird.store import Store
from mimird.wire import events
from mimird.wire.types import Project
from mimird.workspaces import git as worktrees
from mimird.workspaces.provision import ORPHAN_REF_PREFIX, snapshot_ref

log = structlog.get_logger("mimird.sessions.inventory")


def stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


@dataclass(frozen=True, slots=True)
class Pruned:
    """What a prune removed (or would remove, dry run)."""

    #: Deleted sessions whose worktree was still on disk.
    sessions: list[SessionRow]
    #: Orphan worktrees, each with the project it belonged to.
    orphans: list[tuple[Path, Project]]
    snapshots: list[worktrees.Snapshot]


class Inventory:
    """The worktrees of all sessions, and the orphans (no tasks of its own)."""

    def __init__(self, store: Store, settings: Settings, sessions: Sessions) -> None:
        self._store = store
        self._settings = settings
        self._sessions = sessions
        self._workspaces = sessions.workspaces

    async def rows(self, project_id: str | None) -> list[SessionRow]:
        """Every session whose workspace is (or was) a worktree.

        Cancellation: nothing changes."""
        return await self._store.read(records.with_workspaces, project_id)

    async def orphans(self, known: set[str] | None = None) -> list[Path]:
        """Worktree directories two levels under the worktrees dir that no session
        owns (``known``: the paths sessions own; read from the database if None).

        Cancellation: nothing changes."""
        if known is None:
            known = await self._known_paths()
        root = self._settings.worktrees_dir

        def scan() -> list[Path]:
            if not root.is_dir():
                return []
            return sorted(
                path
                for project_dir in root.iterdir()
                if project_dir.is_dir() and not project_dir.is_symlink()
                for path in project_dir.iterdir()
                if (path / ".git").is_file() and str(path) not in known
            )

        return await self._workspaces.read_git(scan)

    async def _known_paths(self) -> set[str]:
        """Workspace paths of every session of every project that still has one."""
        rows = await self.rows(None)
        return {row.workspace_path for row in rows if row.workspace_state != "removed"}

    async def _projects_in_scope(self, project_id: str | None) -> list[Project]:
        found = await self._store.read(lambda conn: list_projects(conn, include_archived=True))
        if project_id is not None:
            found = [p for p in found if p.id == project_id]
        return found

    async def owned_orphans(self, project_id: str | None) -> list[tuple[Path, Project]]:
        """Orphan worktrees, each with the registered project whose repository it
        belongs to; with ``project_id``, only that project's. Directories that no
        project claims are left out: Mimir never touches them.

        Cancellation: nothing changes."""
        orphans = await self.orphans()
        owned: list[tuple[Path, Project]] = []
        if not orphans:
            return owned
        for candidate in await self._projects_in_scope(project_id):
            if not candidate.is_git or not await trio.Path(candidate.path).is_dir():
                continue
            listed = await self._workspaces.read_git(
                worktrees.list_git_worktrees, Path(candidate.path)
            )
            paths = {w.path.resolve() for w in listed}
            owned += [(orphan, candidate) for orphan in orphans if orphan.resolve() in paths]
        return sorted(owned, key=lambda pair: pair[0])

    async def checked(self, project_id: str | None) -> list[SessionRow]:
        """Every worktree session, its workspace checked now (drift recorded).

        Cancellation: each drift found is recorded as it is found."""
        checked = []
        for row in await self.rows(project_id):
            if row.workspace_state != "removed" and row.status != "deleted":
                row, _ = await self._sessions.check_workspace(row)
            checked.append(row)
        return checked

    async def prune(self, project_id: str | None, *, dry_run: bool) -> Pruned:
        """Remove the worktrees no session needs: deleted sessions' still on disk (a
        delete cut short) and orphans, each snapshotted first; then git's records
        of worktrees whose directories are gone.

        Cancellation: each removal runs to its end in its thread and its record is
        shielded (bounded by RECORD_GRACE_S): a cancel lands between two worktrees."""
        pruned = Pruned(sessions=[], orphans=[], snapshots=[])
        # 1. Worktrees of deleted sessions that are still on disk (a delete that was cut short).
        for row in await self.rows(project_id):
            if row.status != "deleted" or row.workspace_state in NOTHING_TO_REMOVE:
                continue
            pruned.sessions.append(row)
            if dry_run:
                continue
            async with self._workspaces.project_lock(row.project_id):
                snap = await self._workspaces.git(
                    worktrees.remove_worktree,
                    Path(row.project_path),
                    Path(row.workspace_path),
                    branch=row.branch,
                    snapshot_ref=snapshot_ref(row.id),
                    message=f"mimir: work of session {row.id}, pruned",
                    base_commit=row.base_commit,
                )
                values: dict[str, Any] = {"workspace_state": "removed"}
                if snap is not None:
                    values.update(snapshot_ref=snap.ref, snapshot_commit=snap.commit)
                    pruned.snapshots.append(snap)
                # Shielded: the worktree is gone, so the row must say so (a later prune
                # of a row that still named it would save the branch tip over the snapshot).
                with trio.move_on_after(RECORD_GRACE_S, shield=True):
                    await self._store.write(
                        records.update,
                        row.id,
                        values,
                        event=events.WorkspaceRemoved(pruned=True),
                    )
        # 2. Orphans: worktrees of registered projects that no session of any project owns.
        for orphan, owner in await self.owned_orphans(project_id):
            pruned.orphans.append((orphan, owner))
            if dry_run:
                continue
            async with self._workspaces.project_lock(owner.id):
                snap = await self._workspaces.git(
                    worktrees.remove_worktree,
                    Path(owner.path),
                    orphan,
                    branch=None,
                    # Dated: a later orphan of the same name must not move this ref.
                    snapshot_ref=f"{ORPHAN_REF_PREFIX}{orphan.name}-{stamp()}",
                    message=f"mimir: work of orphan worktree {orphan}, pruned",
                )
            if snap is not None:
                pruned.snapshots.append(snap)
        # 3. git's own records of worktrees whose directories are gone.
        if not dry_run:
            for project in await self._projects_in_scope(project_id):
                if project.is_git and await trio.Path(project.path).is_dir():
                    await self._workspaces.git(worktrees.prune_worktree_admin, Path(project.path))
        log.info(
            "worktrees_pruned",
            removed=len(pruned.sessions) + len(pruned.orphans),
            dry_run=dry_run,
        )
        return pruned
