"""``run.*``: decode → the runs owner (:mod:`mimird.runs`) → encode.

A run's progress flows as events of its own journal: ``run.events`` pages
through it, ``run.subscribe`` follows it (stored events after the cursor, then
live ones, as ``run_event`` notifications, exactly once; ``unsubscribe`` ends
it).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Final

import msgspec
import structlog
import trio

from mimird.api.events import room_for_one, serve
from mimird.api.methods import MethodTable
from mimird.errors import InvalidState, MimirError
from mimird.journal import Journal, page_run
from mimird.projects import resolve_id
from mimird.rpc.registry import CallContext, Registry
from mimird.runs import Runs, records, work
from mimird.runs.create import create_run
from mimird.runs.states import FINISHED
from mimird.sessions.disk_full import disk_full_is_storage_error
from mimird.store import Store
from mimird.wire.errors import ErrorCode
from mimird.wire.runs import (
    Run,
    RunCreateParams,
    RunDeleteParams,
    RunEventList,
    RunEventsParams,
    RunList,
    RunListParams,
    RunPickParams,
    RunRefParams,
    RunRemoved,
    RunSubscribed,
    RunSubscribeParams,
)

log = structlog.get_logger("mimird.rpc")

_method = MethodTable()

#: How long deleting a run may take to delete its members once the caller is gone.
DELETE_GRACE_S: Final = 120.0


class RunService:
    def __init__(self, store: Store, runs: Runs, journal: Journal) -> None:
        self._store = store
        self._runs = runs
        self._journal = journal

    def register(self, registry: Registry) -> None:
        _method.register(self, registry)

    async def _find(self, ref: str) -> records.RunRow:
        return await self._store.read(records.find, ref)

    async def _wire(self, run_id: str) -> Run:
        return await self._store.read(lambda conn: records.to_wire(conn, records.get(conn, run_id)))

    @_method(
        "run.create",
        params=RunCreateParams,
        result=Run,
        summary="Give one task to several agents at once: one member session per slot, "
        "each in its own worktree, started at once; progress flows as run events.",
        description=(
            "Every param is checked before anything is made. The call answers once the "
            "members' sessions exist; their turns, the checks and the decision follow in the "
            "background (run.events, run.subscribe)."
        ),
        mutating=True,
        concurrent=True,
        errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE, ErrorCode.ALREADY_EXISTS),
    )
    async def create(self, ctx: CallContext, params: RunCreateParams) -> Run:
        with disk_full_is_storage_error():
            row = await create_run(self._runs, params)
        self._runs.start(row.id, self._runs.drive)
        return await self._wire(row.id)

    @_method(
        "run.get",
        params=RunRefParams,
        result=Run,
        summary="One run: its members (status, time, usage, diff stats, check result), "
        "decision and totals.",
        errors=(ErrorCode.NOT_FOUND,),
    )
    async def get(self, ctx: CallContext, params: RunRefParams) -> Run:
        run = await self._wire((await self._find(params.run)).id)
        return await self._live_stats(run)

    async def _live_stats(self, run: Run) -> Run:
        """The diff stats of members whose turn has not ended yet, read from their
        worktrees now (those whose turn ended were recorded then)."""
        if run.base_commit is None:
            return run
        members = []
        for member in run.members:
            if member.files_changed is None and member.status not in ("deleted", "archived"):
                row = await self._runs.sessions.owner.find(member.session_id)
                if row.workspace_kind == "worktree" and row.workspace_state == "ok":
                    with contextlib.suppress(MimirError):
                        stats = await self._runs.sessions.workspaces.read_git(
                            work.stats, Path(row.workspace_path), run.base_commit
                        )
                        member = msgspec.structs.replace(
                            member,
                            files_changed=stats.files_changed,
                            lines_added=stats.lines_added,
                            lines_deleted=stats.lines_deleted,
                        )
            members.append(member)
        totals = msgspec.structs.replace(
            run.totals,
            total_files_changed=sum(m.files_changed or 0 for m in members),
            total_lines_added=sum(m.lines_added or 0 for m in members),
            total_lines_deleted=sum(m.lines_deleted or 0 for m in members),
        )
        return msgspec.structs.replace(run, members=members, totals=totals)

    @_method(
        "run.list",
        params=RunListParams,
        result=RunList,
        summary="Runs, newest first, of a project or in some statuses, a page at a time.",
        errors=(ErrorCode.NOT_FOUND,),
    )
    async def list(self, ctx: CallContext, params: RunListParams) -> RunList:
        project_id = None
        if params.project is not msgspec.UNSET:
            project_id = await self._store.read(resolve_id, params.project)
        statuses = None if params.status is msgspec.UNSET else list(params.status)
        cursor = None if params.cursor is msgspec.UNSET else params.cursor
        page, next_cursor = await self._store.read(
            lambda conn: records.list_page(
                conn, project_id=project_id, statuses=statuses, limit=params.limit, cursor=cursor
            )
        )
        return RunList(runs=page, next_cursor=next_cursor)

    @_method(
        "run.cancel",
        params=RunRefParams,
        result=Run,
        summary="Cancel a run: every member's turn and check is cancelled, their agents "
        "stopped; the run is cancelled.",
        mutating=True,
        concurrent=True,
        errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE),
    )
    async def cancel(self, ctx: CallContext, params: RunRefParams) -> Run:
        row = await self._runs.cancel(await self._find(params.run))
        return await self._wire(row.id)

    @_method(
        "run.pick",
        params=RunPickParams,
        result=Run,
        summary="Decide a run waiting in 'deciding': the member in slot wins; the losers "
        "are put away and the winner brought home in the background.",
        mutating=True,
        concurrent=True,
        errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE),
    )
    async def pick(self, ctx: CallContext, params: RunPickParams) -> Run:
        reason = None if params.reason is msgspec.UNSET else params.reason
        row = await self._runs.pick(await self._find(params.run), params.slot, reason)
        return await self._wire(row.id)

    @_method(
        "run.resume",
        params=RunRefParams,
        result=Run,
        summary="Go on with an interrupted run: the members that had not finished are "
        "prompted again.",
        mutating=True,
        concurrent=True,
        errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE),
    )
    async def resume(self, ctx: CallContext, params: RunRefParams) -> Run:
        row = await self._runs.resume(await self._find(params.run))
        return await self._wire(row.id)

    @_method(
        "run.delete",
        params=RunDeleteParams,
        result=RunRemoved,
        summary="Delete a run: its members are deleted as session.delete does (work "
        "snapshotted), then the run and its journal.",
        description="A run that is still working is refused unless force, which cancels "
        "it first. Every member's work is snapshotted; a member whose snapshot cannot be made "
        "stops the delete (the run stays).",
        mutating=True,
        concurrent=True,
        errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE),
    )
    async def delete(self, ctx: CallContext, params: RunDeleteParams) -> RunRemoved:
        row = await self._find(params.run)
        if row.status not in FINISHED and row.status not in ("deciding", "decided", "interrupted"):
            if not params.force:
                raise InvalidState(
                    f"run {row.id} is {row.status}; cancel it first ('mimirctl run cancel "
                    f"{row.id}') or pass force",
                    field="run",
                    id=row.id,
                    detail={"status": row.status},
                )
            row = await self._runs.cancel(row)
        # Its members, and its other sessions (a judge, an integration session).
        session_ids = await self._store.read(records.session_ids, row.id)
        deleted: list[str] = []
        with trio.move_on_after(DELETE_GRACE_S, shield=True):
            for session_id in session_ids:
                session = await self._runs.sessions.owner.find(session_id)
                if session.status != "deleted":
                    # Never without a snapshot: force only cancels a working run.
                    await self._runs.sessions.owner.delete(session_id)
                deleted.append(session_id)
            await self._store.write(records.delete, row.id)
        log.info("run_deleted", run_id=row.id, sessions=len(deleted))
        return RunRemoved(run=row.id, sessions=deleted)

    @_method(
        "run.events",
        params=RunEventsParams,
        result=RunEventList,
        summary="A page of the run's own journal, in order, after a seq.",
        errors=(ErrorCode.NOT_FOUND,),
    )
    async def events(self, ctx: CallContext, params: RunEventsParams) -> RunEventList:
        row = await self._find(params.run)
        found = await self._store.read(page_run, row.id, after=params.after, limit=params.limit)
        return RunEventList(events=[event.to_wire() for event in found])

    @_method(
        "run.subscribe",
        params=RunSubscribeParams,
        result=RunSubscribed,
        summary="Receive a run's events as 'run_event' notifications: the stored ones "
        "after the cursor, then live ones.",
        description="Each event arrives once, in order, also for a client that reads "
        "slowly. unsubscribe ends it, as any subscription.",
        errors=(ErrorCode.NOT_FOUND,),
    )
    async def subscribe(self, ctx: CallContext, params: RunSubscribeParams) -> RunSubscribed:
        room_for_one(ctx, "run")
        row = await self._find(params.run)
        after = None if params.after is msgspec.UNSET else params.after
        sub = await self._journal.subscribe_run(row.id, after=after)
        serve(ctx, self._journal, sub, b"run_event")
        return RunSubscribed(subscription=sub.id, run_id=row.id, cursor=sub.cursor)
