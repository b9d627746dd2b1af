"""``worktree.*``: every worktree Mimir knows, and pruning the ones no longer needed;
plus the start-up reconciliation of the database with git and the disk."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Final

import msgspec
import structlog
import trio

from mimird.agents import terminals
from mimird.api.sessions import SessionService, snapshot_ref
from mimird.config import Settings
from mimird.projects import list_projects, resolve_id
from mimird.rpc.registry import CallContext, Registry
from mimird.sessions import reaper
from mimird.sessions import records as sessions
from mimird.sessions.records import SessionRow
from mimird.store import Store
from mimird.wire.errors import ErrorCode
from mimird.wire.types import (
    Project,
    Snapshot,
    WorktreeInfo,
    WorktreeList,
    WorktreeListParams,
    WorktreePruned,
    WorktreePruneParams,
)
from mimird.workspaces import git as worktrees

log = structlog.get_logger("mimird.workspaces.git")


def stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


ORPHAN_REF_PREFIX: Final = "refs/mimir/orphans/"
#: Sessions whose worktree is still needed, whatever its state.
_LIVE_STATUSES: Final = frozenset(sessions.TRANSITIONS) - {"deleted"}


def _info(row: SessionRow) -> WorktreeInfo:
    return WorktreeInfo(
        session_id=row.id,
        session_status=row.status,
        project=row.project_name,
        path=row.workspace_path,
        branch=row.branch,
        base_commit=row.base_commit,
        state=row.workspace_state,  # type: ignore[arg-type]
        snapshot_ref=row.snapshot_ref,
    )


class WorktreeService:
    def __init__(self, store: Store, settings: Settings, sessions_service: SessionService) -> None:
        self._store = store
        self._settings = settings
        self._sessions = sessions_service

    def register(self, registry: Registry) -> None:
        registry.add(
            "worktree.list",
            self.list,
            params=WorktreeListParams,
            result=WorktreeList,
            summary="Every worktree Mimir made, with its state (checked now), and orphan "
            "directories under the worktrees directory that no session owns.",
            concurrent=True,
            errors=(ErrorCode.NOT_FOUND,),
        )
        registry.add(
            "worktree.prune",
            self.prune,
            params=WorktreePruneParams,
            result=WorktreePruned,
            summary="Remove worktrees no session needs (deleted sessions', orphans), each "
            "snapshotted first; clear git's records of worktrees that are gone.",
            mutating=True,
            concurrent=True,
            errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE),
        )

    async def _rows(self, project: str | msgspec.UnsetType) -> list[SessionRow]:
        project_id = None
        if project is not msgspec.UNSET:
            project_id = await self._store.read(resolve_id, project)
        return await self._store.read(sessions.with_workspaces, project_id)

    async def _orphans(self, known: set[str]) -> list[Path]:
        """Worktree directories two levels under the worktrees dir that no session owns."""
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

        return await self._sessions.git(scan)

    async def _known_paths(self) -> set[str]:
        """Workspace paths of every session of every project that still has one."""
        rows = await self._store.read(sessions.with_workspaces, None)
        return {row.workspace_path for row in rows if row.workspace_state != "removed"}

    async def _projects_in_scope(self, project: str | msgspec.UnsetType) -> list[Project]:
        found = await self._store.read(lambda conn: list_projects(conn, include_archived=True))
        if project is not msgspec.UNSET:
            wanted = await self._store.read(resolve_id, project)
            found = [p for p in found if p.id == wanted]
        return found

    async def _owned_orphans(self, project: str | msgspec.UnsetType) -> list[tuple[Path, Project]]:
        """Orphan worktrees, each with the registered project whose repository it belongs
        to; with ``project``, only that project's. Directories that no project claims
        are left out: Mimir never touches them."""
        orphans = await self._orphans(await self._known_paths())
        owned: list[tuple[Path, Project]] = []
        if not orphans:
            return owned
        for candidate in await self._projects_in_scope(project):
            if not candidate.is_git or not await trio.Path(candidate.path).is_dir():
                continue
            listed = await self._sessions.git(worktrees.list_git_worktrees, Path(candidate.path))
            paths = {w.path.resolve() for w in listed}
            owned += [(orphan, candidate) for orphan in orphans if orphan.resolve() in paths]
        return sorted(owned, key=lambda pair: pair[0])

    async def list(self, ctx: CallContext, params: WorktreeListParams) -> WorktreeList:
        rows = await self._rows(params.project)
        checked = []
        for row in rows:
            if row.workspace_state != "removed" and row.status != "deleted":
                row, _ = await self._sessions.check_workspace(row)
            checked.append(_info(row))
        if params.project is msgspec.UNSET:
            orphans = await self._orphans(await self._known_paths())
        else:
            orphans = [path for path, _ in await self._owned_orphans(params.project)]
        return WorktreeList(worktrees=checked, orphans=[str(p) for p in orphans])

    async def prune(self, ctx: CallContext, params: WorktreePruneParams) -> WorktreePruned:
        rows = await self._rows(params.project)
        removed: list[WorktreeInfo] = []
        snapshots: list[Snapshot] = []
        # 1. Worktrees of deleted sessions that are still on disk (a delete that was cut short).
        for row in rows:
            if row.status != "deleted" or row.workspace_state == "removed":
                continue
            removed.append(_info(row))
            if params.dry_run:
                continue
            async with self._sessions.project_lock(row.project_id):
                snap = await self._sessions.git(
                    worktrees.remove_worktree,
                    Path(row.project_path),
                    Path(row.workspace_path),
                    branch=row.branch,
                    snapshot_ref=snapshot_ref(row.id),
                    message=f"mimir: work of session {row.id}, pruned",
                )
                values: dict[str, Any] = {"workspace_state": "removed"}
                if snap is not None:
                    values.update(snapshot_ref=snap.ref, snapshot_commit=snap.commit)
                    snapshots.append(Snapshot(ref=snap.ref, commit=snap.commit, files=snap.files))
                await self._store.write(
                    sessions.update, row.id, values, event=("workspace_removed", {"pruned": True})
                )
        # 2. Orphans: worktrees of registered projects that no session of any project owns.
        for orphan, owner in await self._owned_orphans(params.project):
            removed.append(
                WorktreeInfo(
                    session_id="",
                    session_status="deleted",
                    project=owner.name,
                    path=str(orphan),
                    branch=None,
                    base_commit=None,
                    state="ok",
                    snapshot_ref=None,
                )
            )
            if params.dry_run:
                continue
            async with self._sessions.project_lock(owner.id):
                snap = await self._sessions.git(
                    worktrees.remove_worktree,
                    Path(owner.path),
                    orphan,
                    branch=None,
                    # Dated: a later orphan of the same name must not move this ref.
                    snapshot_ref=f"{ORPHAN_REF_PREFIX}{orphan.name}-{stamp()}",
                    message=f"mimir: work of orphan worktree {orphan}, pruned",
                )
            if snap is not None:
                snapshots.append(Snapshot(ref=snap.ref, commit=snap.commit, files=snap.files))
        # 3. git's own records of worktrees whose directories are gone.
        if not params.dry_run:
            for project in await self._projects_in_scope(params.project):
                if project.is_git and await trio.Path(project.path).is_dir():
                    await self._sessions.git(worktrees.prune_worktree_admin, Path(project.path))
        log.info("worktrees_pruned", removed=len(removed), dry_run=params.dry_run)
        return WorktreePruned(removed=removed, snapshots=snapshots, dry_run=params.dry_run)

    async def reconcile(self) -> dict[str, int]:
        """At start-up: sessions cut short by a crash, and every worktree checked
        against the disk and git. Returns how many worktrees are in each state."""

        # Setup commands and agents the previous daemon started and did not stop.
        for row in await self._store.read(
            sessions.in_status, ("preparing", *sorted(sessions.AGENT_UP))
        ):
            if row.process_group is not None:
                killed = await trio.to_thread.run_sync(
                    reaper.reap, row.process_group, Path(row.workspace_path), row.id
                )
                if killed:
                    log.warning("orphan_processes_reaped", session_id=row.id, pids=killed)
        # Commands agents ran through Mimir (terminals), whatever their session's status.
        left = await self._store.read(terminals.recorded)
        for terminal in left:
            killed = await trio.to_thread.run_sync(
                reaper.reap, terminal.process_group, terminal.workspace, terminal.session_id
            )
            if killed:
                log.warning(
                    "orphan_terminal_reaped",
                    session_id=terminal.session_id,
                    terminal=terminal.id,
                    pids=killed,
                )
        if left:
            await self._store.write(terminals.forget_after_crash, left)

        def interrupt(conn: Any) -> list[str]:
            stuck = sessions.in_status(conn, ("preparing",))
            for row in stuck:
                sessions.transition(
                    conn,
                    row.id,
                    "failed",
                    action="recover",
                    reason="daemon_stopped_during_setup",
                    values={
                        "failure": "mimird stopped while the setup command was running",
                        "process_group": None,
                    },
                )
            running = sessions.in_status(conn, tuple(sorted(sessions.AGENT_UP)))
            for row in running:
                facts: list[tuple[str, dict[str, Any]]] = []
                if row.status in ("running", "awaiting_permission"):
                    facts.append(("turn_ended", {"stop_reason": "interrupted"}))
                sessions.transition(
                    conn,
                    row.id,
                    "interrupted",
                    action="recover",
                    reason="daemon_restarted",
                    values={"process_group": None},
                    events=facts,
                )
            return [row.id for row in stuck + running]

        recovered = await self._store.write(interrupt)
        if recovered:
            log.warning("sessions_recovered", sessions=recovered)
        states: dict[str, int] = {}
        for row in await self._store.read(sessions.with_workspaces, None):
            if row.status == "deleted" or row.workspace_state == "removed":
                continue
            row, _ = await self._sessions.check_workspace(row)
            states[row.workspace_state] = states.get(row.workspace_state, 0) + 1
        orphans = await self._orphans(
            {r.workspace_path for r in await self._store.read(sessions.with_workspaces, None)}
        )
        log.info("worktrees_reconciled", states=states, orphans=[str(p) for p in orphans])
        return states
