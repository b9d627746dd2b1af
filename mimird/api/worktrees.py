"""``worktree.*``: decode → the worktree inventory (:mod:`mimird.sessions.inventory`)
→ encode; and the start-up recovery (:mod:`mimird.sessions.recovery`)."""

from __future__ import annotations

import msgspec
import structlog

from mimird.api.methods import MethodTable
from mimird.api.sessions import SessionService
from mimird.config import Settings
from mimird.projects import resolve_id
from mimird.rpc.registry import CallContext, Registry
from mimird.sessions import recovery
from mimird.sessions.inventory import Inventory
from mimird.sessions.records import SessionRow
from mimird.store import Store
from mimird.wire.errors import ErrorCode
from mimird.wire.types import (
    Snapshot,
    WorktreeInfo,
    WorktreeList,
    WorktreeListParams,
    WorktreePruned,
    WorktreePruneParams,
)

log = structlog.get_logger("mimird.sessions.recovery")

_method = MethodTable()


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
        self._sessions = sessions_service
        self.inventory = Inventory(store, settings, sessions_service.owner)

    def register(self, registry: Registry) -> None:
        _method.register(self, registry)

    async def _project_id(self, project: str | msgspec.UnsetType) -> str | None:
        if project is msgspec.UNSET:
            return None
        project_id: str = await self._store.read(resolve_id, project)
        return project_id

    @_method(
        "worktree.list",
        params=WorktreeListParams,
        result=WorktreeList,
        summary="Every worktree Mimir made, with its state (checked now), and orphan "
        "directories under the worktrees directory that no session owns.",
        concurrent=True,
        errors=(ErrorCode.NOT_FOUND,),
    )
    async def list(self, ctx: CallContext, params: WorktreeListParams) -> WorktreeList:
        project_id = await self._project_id(params.project)
        checked = [_info(row) for row in await self.inventory.checked(project_id)]
        if project_id is None:
            orphans = await self.inventory.orphans()
        else:
            orphans = [path for path, _ in await self.inventory.owned_orphans(project_id)]
        return WorktreeList(worktrees=checked, orphans=[str(p) for p in orphans])

    @_method(
        "worktree.prune",
        params=WorktreePruneParams,
        result=WorktreePruned,
        summary="Remove worktrees no session needs (deleted sessions', orphans), each "
        "snapshotted first; clear git's records of worktrees that are gone.",
        mutating=True,
        concurrent=True,
        errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE),
    )
    async def prune(self, ctx: CallContext, params: WorktreePruneParams) -> WorktreePruned:
        pruned = await self.inventory.prune(
            await self._project_id(params.project), dry_run=params.dry_run
        )
        removed = [_info(row) for row in pruned.sessions] + [
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
            for orphan, owner in pruned.orphans
        ]
        snapshots = [Snapshot(ref=s.ref, commit=s.commit, files=s.files) for s in pruned.snapshots]
        return WorktreePruned(removed=removed, snapshots=snapshots, dry_run=params.dry_run)

    async def reconcile(self) -> dict[str, int]:
        """At start-up: see :func:`mimird.sessions.recovery.recover`. Returns how
        many worktrees are in each state.

        Cancellation: see :func:`~mimird.sessions.recovery.recover`."""
        states = await recovery.recover(self._store, self._sessions.owner)
        orphans = await self.inventory.orphans(
            {r.workspace_path for r in await self.inventory.rows(None)}
        )
        log.info("worktrees_reconciled", states=states, orphans=[str(p) for p in orphans])
        return states
