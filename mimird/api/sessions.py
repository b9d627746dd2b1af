"""``session.*`` (but prompt, cancel and the agent's methods: :mod:`.turns`):
decode → the sessions owner (:mod:`mimird.sessions.lifecycle`) → encode."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
import trio

from mimird import journal, policy
from mimird.agents.manager import AgentManager
from mimird.api import first_prompt
from mimird.api.methods import MethodTable
from mimird.config import Settings
from mimird.errors import InvalidParams, MimirError
from mimird.projects import raw_config, resolve_id
from mimird.rpc.registry import CallContext, Registry
from mimird.sessions import records, usage
from mimird.sessions.disk_full import disk_full_is_storage_error
from mimird.sessions.lifecycle import Sessions
from mimird.sessions.records import SessionRow
from mimird.store import Store
from mimird.wire.errors import ErrorCode
from mimird.wire.types import (
    ConfigEntry,
    Event,
    EventList,
    FileDiff,
    GitStatus,
    Session,
    SessionConfig,
    SessionCreateParams,
    SessionDeleteParams,
    SessionDiff,
    SessionDiffParams,
    SessionEventsParams,
    SessionList,
    SessionListParams,
    SessionRefParams,
    SessionRemoved,
    SessionUpdateParams,
    Snapshot,
)
from mimird.workspaces import git as worktrees
from mimird.workspaces.provision import Workspaces, refuse_drifted, snapshot_ref

T = TypeVar("T")

__all__ = ["SessionService", "snapshot_ref"]

_method = MethodTable()


def _wire(row: SessionRow, check: worktrees.WorkspaceCheck | None) -> Session:
    extra: dict[str, str | None] = {}
    if check is not None and check.actual_path is not None:
        extra["actual_path"] = str(check.actual_path)
    if check is not None and check.actual_branch is not None:
        extra["actual_branch"] = check.actual_branch
    return row.to_wire(**extra)


class SessionService:
    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self.workspaces = Workspaces(settings)
        self.owner = Sessions(store, settings, self.workspaces)

    # ---- what other API modules use ---------------------------------------------

    @property
    def agents(self) -> AgentManager | None:
        """Set once the agent manager runs: archive and delete stop the agent first."""
        return self.owner.agents

    @agents.setter
    def agents(self, value: AgentManager | None) -> None:
        self.owner.agents = value

    async def git(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a git operation (a function of :mod:`mimird.workspaces.git`) in a thread.

        Cancellation: see :meth:`Workspaces.git`."""
        return await self.workspaces.git(fn, *args, **kwargs)

    def project_lock(self, project_id: str) -> trio.Lock:
        """The lock held while a project's worktrees change."""
        return self.workspaces.project_lock(project_id)

    def cancel_setup(self, session_id: str) -> bool:
        """End the session's setup command if one runs (the session is then failed)."""
        return self.owner.setups.cancel(session_id)

    async def find(self, ref: str) -> SessionRow:
        """A session by id or unique prefix (not found / ambiguous are errors).

        Cancellation: nothing changes."""
        return await self.owner.find(ref)

    async def secrets_of_call(self, params: Any) -> set[str]:
        """The secrets a mutating call's params may hold, for the audit log: those of
        the session or project the params name (every layer: the session's config is
        what the journal masks with), and those the call's own ``config`` sets. A
        name that finds nothing adds nothing.

        Cancellation: nothing changes."""
        project_config: dict[str, Any] = {}
        session_config: dict[str, Any] = {}
        session_ref = getattr(params, "session", None)
        project_ref = getattr(params, "project", None)
        with contextlib.suppress(MimirError):
            if isinstance(session_ref, str):
                row = await self.find(session_ref)
                session_config = row.config
                project_config = await self._store.read(raw_config, row.project_id)
            elif isinstance(project_ref, str):
                project_id = await self._store.read(resolve_id, project_ref)
                project_config = await self._store.read(raw_config, project_id)
        found: set[str] = set()
        with contextlib.suppress(MimirError):
            found = self.owner.layers(project_config, session_config).secret_values()
        config = getattr(params, "config", None)
        env = config.get("env") if isinstance(config, dict) else None
        if isinstance(env, dict):
            # Unchecked (the call may have been refused for it): any secret-looking value.
            found |= {
                item["value"]
                for item in env.values()
                if isinstance(item, dict)
                and item.get("secret")
                and isinstance(item.get("value"), str)
            }
        return found - {""}

    async def effective(self, row: SessionRow) -> policy.Effective:
        """The session's configuration merged from its layers.

        Cancellation: nothing changes."""
        return await self.owner.effective(row)

    def refuse_drifted(self, row: SessionRow, action: str) -> None:
        """Raise invalid_state when the session's workspace is not usable."""
        refuse_drifted(row, action)

    async def check_workspace(
        self, row: SessionRow
    ) -> tuple[SessionRow, worktrees.WorkspaceCheck | None]:
        """Detect drift of a worktree session; record a changed state (journaled).

        Cancellation: see :meth:`Sessions.check_workspace`."""
        return await self.owner.check_workspace(row)

    def register(self, registry: Registry) -> None:
        _method.register(self, registry)

    # ---- methods ----------------------------------------------------------------

    @_method(
        "session.create",
        params=SessionCreateParams,
        result=Session,
        summary="Create a session in its own workspace (a git worktree on a new branch).",
        description=(
            "workspace: 'worktree' (default for git projects) makes a worktree on a new branch "
            "from the project's HEAD or base_ref; 'in_place' works in the project directory "
            "itself; a project that is not a git repository gets a private copy. The setup "
            "command, if configured, runs before the call answers; its output is journaled "
            "and a failure leaves the session 'failed' with the output in 'failure'. "
            "prompt (text, or {template, vars}) is checked first and sent once the session "
            "is made, in the background: the call does not wait for the turn."
        ),
        mutating=True,
        concurrent=True,
        errors=(ErrorCode.NOT_FOUND, ErrorCode.ALREADY_EXISTS, ErrorCode.INVALID_STATE),
    )
    async def create(self, ctx: CallContext, params: SessionCreateParams) -> Session:
        if params.prompt is not msgspec.UNSET:
            await first_prompt.check(self._store, params, self.owner.layers)
        with disk_full_is_storage_error():
            row = await self.owner.create(params)
        if params.prompt is not msgspec.UNSET and self.agents is not None:
            first_prompt.send_soon(self.agents, self, self._store, row, params.prompt)
        return row.to_wire()

    @_method(
        "session.list",
        params=SessionListParams,
        result=SessionList,
        summary="Sessions, newest first, filtered, a page at a time (cursor).",
        errors=(ErrorCode.NOT_FOUND,),
    )
    async def list(self, ctx: CallContext, params: SessionListParams) -> SessionList:
        project_id = None
        if params.project is not msgspec.UNSET:
            project_id = await self._store.read(resolve_id, params.project)
        unset = msgspec.UNSET
        f = records.ListFilter(
            project_id=project_id,
            statuses=tuple(params.status) if params.status is not unset else None,
            agent=params.agent if params.agent is not unset else None,
            text=params.text if params.text is not unset else None,
            created_after=_bound(params.created_after, "created_after"),
            created_before=_bound(params.created_before, "created_before"),
            updated_after=_bound(params.updated_after, "updated_after"),
            updated_before=_bound(params.updated_before, "updated_before"),
            include_archived=params.include_archived,
            include_deleted=params.include_deleted,
            sort=params.sort,
            cursor=params.cursor.lower() if params.cursor is not unset else None,
            limit=params.limit,
            offset=params.offset,
        )
        if params.total:
            page, next_cursor, total = await self._store.read(records.counted_wire_page, f)
        else:
            page, next_cursor = await self._store.read(records.list_wire_page, f)
            total = None
        return SessionList(sessions=page, next_cursor=next_cursor, total=total)

    @_method(
        "session.get",
        params=SessionRefParams,
        result=Session,
        summary="One session with its workspace state and git status (HEAD, dirty, "
        "ahead/behind, diff stats).",
        errors=(ErrorCode.NOT_FOUND,),
    )
    async def get(self, ctx: CallContext, params: SessionRefParams) -> Session:
        row, check = await self.owner.check_workspace(await self.owner.find(params.session))
        session = msgspec.structs.replace(_wire(row, check), wall_s=_wall_s(row))
        status = await self.workspaces.status(row)
        if status is not None:
            session = msgspec.structs.replace(
                session,
                git=GitStatus(
                    head=status.head,
                    dirty=status.dirty,
                    ahead=status.ahead,
                    behind=status.behind,
                    files_changed=status.files_changed,
                    insertions=status.insertions,
                    deletions=status.deletions,
                ),
            )
        used = await self._store.read(usage.of_session, row.id)
        return msgspec.structs.replace(session, usage=used)

    @_method(
        "session.update",
        params=SessionUpdateParams,
        result=Session,
        summary="Change a session's title, task or config overrides.",
        mutating=True,
        errors=(ErrorCode.NOT_FOUND,),
    )
    async def update(self, ctx: CallContext, params: SessionUpdateParams) -> Session:
        row = await self.owner.find(params.session)
        changes: dict[str, Any] = {}
        for field in ("title", "task"):
            if (value := getattr(params, field)) is not msgspec.UNSET:
                changes[field] = value
        if params.config is not msgspec.UNSET:
            policy.parse_layer(params.config, "session")
            changes["config"] = policy.keep_masked_secrets(params.config, row.config)
        return (await self.owner.update(row, changes)).to_wire()

    @_method(
        "session.diff",
        params=SessionDiffParams,
        result=SessionDiff,
        summary="What the session changed against its base: per file, and the patch on request.",
        description="Includes uncommitted and untracked (not ignored) files.",
        concurrent=True,
        errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE),
    )
    async def diff(self, ctx: CallContext, params: SessionDiffParams) -> SessionDiff:
        row, _ = await self.owner.check_workspace(await self.owner.find(params.session))
        changes, patch = await self.workspaces.diff(row, patch=params.patch)
        files = [
            FileDiff(
                path=c.path,
                status=c.status,
                insertions=c.insertions,
                deletions=c.deletions,
                binary=c.binary,
            )
            for c in changes
        ]
        assert row.base_commit is not None
        return SessionDiff(
            session=row.id,
            base_commit=row.base_commit,
            files=files,
            files_changed=len(files),
            insertions=sum(f.insertions for f in files),
            deletions=sum(f.deletions for f in files),
            patch=patch,
        )

    @_method(
        "session.config",
        params=SessionRefParams,
        result=SessionConfig,
        summary="Every effective config value of a session, and which layer set it.",
        errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_PARAMS),
    )
    async def config(self, ctx: CallContext, params: SessionRefParams) -> SessionConfig:
        row = await self.owner.find(params.session)
        effective = await self.owner.effective(row)
        return SessionConfig(
            session=row.id,
            effective=effective.masked(),
            entries=[ConfigEntry(key=k, value=v, source=s) for k, v, s in effective.entries()],
        )

    @_method(
        "session.archive",
        params=SessionRefParams,
        result=Session,
        summary="Archive a session: hidden from lists, workspace kept.",
        mutating=True,
        errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE),
    )
    async def archive(self, ctx: CallContext, params: SessionRefParams) -> Session:
        return (await self.owner.archive(params.session)).to_wire()

    @_method(
        "session.delete",
        params=SessionDeleteParams,
        result=SessionRemoved,
        summary="Delete a session: its work is snapshotted to refs/mimir/snapshots/<id>, "
        "then its worktree removed. The branch is kept unless asked.",
        description=(
            "If the snapshot cannot be made the worktree is not removed and the call fails; "
            "force skips the snapshot (and loses uncommitted work). The session stays "
            "listed as deleted (include_deleted) so that session.restore can bring it back."
        ),
        mutating=True,
        concurrent=True,
        errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE),
    )
    async def delete(self, ctx: CallContext, params: SessionDeleteParams) -> SessionRemoved:
        row, snapshot = await self.owner.delete(
            params.session, force=params.force, delete_branch=params.delete_branch
        )
        wire_snapshot = (
            Snapshot(ref=snapshot.ref, commit=snapshot.commit, files=snapshot.files)
            if snapshot is not None
            else None
        )
        return SessionRemoved(session=row.to_wire(), snapshot=wire_snapshot)

    @_method(
        "session.restore",
        params=SessionRefParams,
        result=Session,
        summary="Bring back a deleted (or archived) session, its work restored from the "
        "snapshot byte for byte.",
        mutating=True,
        concurrent=True,
        errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE, ErrorCode.ALREADY_EXISTS),
    )
    async def restore(self, ctx: CallContext, params: SessionRefParams) -> Session:
        with disk_full_is_storage_error():
            return (await self.owner.restore(params.session)).to_wire()

    @_method(
        "session.repair",
        params=SessionRefParams,
        result=Session,
        summary="Repair a drifted workspace: adopt a moved worktree, re-create a missing one "
        "from its branch.",
        mutating=True,
        concurrent=True,
        errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE),
    )
    async def repair(self, ctx: CallContext, params: SessionRefParams) -> Session:
        with disk_full_is_storage_error():
            row, check = await self.owner.repair(params.session)
        return _wire(row, check)

    @_method(
        "session.events",
        params=SessionEventsParams,
        result=EventList,
        summary="A page of the session's journal, in order, after a seq.",
        errors=(ErrorCode.NOT_FOUND,),
    )
    async def events(self, ctx: CallContext, params: SessionEventsParams) -> EventList:
        row = await self.owner.find(params.session)
        found = await self._store.read(
            lambda conn: journal.page(
                conn,
                row.id,
                after_seq=params.after_seq,
                limit=params.limit,
                before_seq=None if params.before_seq is msgspec.UNSET else params.before_seq,
                kind=None if params.kind is msgspec.UNSET else params.kind,
                newest_first=params.newest_first,
            )
        )
        return EventList(
            events=[
                Event(
                    id=e.id,
                    session_id=e.session_id,
                    seq=e.seq,
                    kind=e.kind,
                    data=msgspec.Raw(e.data.encode()),
                    created_at=e.created_at,
                )
                for e in found
            ]
        )


def _parse_time(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _wall_s(row: SessionRow) -> float | None:
    """Seconds from the session's creation to its completion; None until it completed
    (the answer stays the same from one call to the next)."""
    if row.completed_at is None:
        return None
    elapsed = _parse_time(row.completed_at) - _parse_time(row.created_at)
    return round(max(elapsed.total_seconds(), 0.0), 3)


def _bound(value: str | msgspec.UnsetType, field: str) -> str | None:
    """A time filter in the stored timestamps' exact format, so that comparing the
    strings compares the times (``2026-11-22`` is that day at 00:00 UTC)."""
    if value is msgspec.UNSET:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidParams(
            f"{field}: {value!r} is not a valid date or time", field=field
        ) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
