"""``session.*``: sessions and their workspaces.

Git work runs in worker threads, serialised per project (git's own locks on
refs and worktree admin files are not made for concurrent writers); database
work goes through the store. A create that fails leaves nothing behind: the
worktree and branch made for it are removed before the error is answered.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeAlias, TypeVar

import msgspec
import structlog
import trio

from mimird import journal, policy
from mimird.agents.manager import AgentManager
from mimird.config import Settings
from mimird.errors import AlreadyExists, InvalidParams, InvalidState, MimirError
from mimird.processes import SESSION_ENV, child_environment
from mimird.projects import get_project, raw_config, resolve_id
from mimird.rpc.registry import CallContext, Registry
from mimird.sessions import records as sessions
from mimird.sessions.records import SessionRow
from mimird.sessions.setup import run_setup
from mimird.store import Store
from mimird.wire.errors import ErrorCode
from mimird.wire.types import (
    ConfigEntry,
    Event,
    EventList,
    FileDiff,
    GitStatus,
    Project,
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
    SessionStatus,
    SessionUpdateParams,
    Snapshot,
)
from mimird.workspaces import git as worktrees

log = structlog.get_logger("mimird.sessions.records")

T = TypeVar("T")
#: An event journaled with a status change: (kind, data).
_Fact: TypeAlias = tuple[str, dict[str, Any]]

#: Git work at once across all projects (each is a few processes and disk I/O).
GIT_THREADS: Final = 4
SNAPSHOT_REF_PREFIX: Final = "refs/mimir/snapshots/"
SHORT_ID_LENGTH: Final = 8
#: Workspace states in which the files at the session's path are its own.
_USABLE_STATES: Final = frozenset({"ok"})


def snapshot_ref(session_id: str) -> str:
    return f"{SNAPSHOT_REF_PREFIX}{session_id}"


class SessionService:
    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._git_limiter = trio.CapacityLimiter(GIT_THREADS)
        self._project_locks: dict[str, trio.Lock] = {}
        #: Set once the agent manager runs: archive and delete stop the agent first.
        self.agents: AgentManager | None = None
        #: The setup commands running now, by session: session.cancel ends them.
        self._setups: dict[str, trio.CancelScope] = {}
        self._setups_cancelled: set[str] = set()

    # ---- plumbing -------------------------------------------------------------

    # The workspace operations that WorktreeService shares: git in a bounded set of
    # threads, one lock per project (git's own locks are not made for concurrent
    # worktree changes), and drift detection.

    async def git(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a git operation (a function of :mod:`mimird.workspaces.git`) in a thread."""
        return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=self._git_limiter)

    def project_lock(self, project_id: str) -> trio.Lock:
        """The lock held while a project's worktrees change."""
        return self._project_locks.setdefault(project_id, trio.Lock())

    async def _find(self, ref: str) -> SessionRow:
        return await self._store.read(sessions.find, ref)

    def cancel_setup(self, session_id: str) -> bool:
        """End the session's setup command if one runs (the session is then failed)."""
        scope = self._setups.get(session_id)
        if scope is None:
            return False
        self._setups_cancelled.add(session_id)
        scope.cancel()
        return True

    async def find(self, ref: str) -> SessionRow:
        """A session by id or unique prefix (not found / ambiguous are errors)."""
        return await self._find(ref)

    async def effective(self, row: SessionRow) -> policy.Effective:
        """The session's configuration merged from its layers."""
        return await self._effective(row)

    def refuse_drifted(self, row: SessionRow, action: str) -> None:
        """Raise invalid_state when the session's workspace is not usable."""
        self._refuse_drifted(row, action)

    async def _stop_agent(self, session_id: str, reason: str) -> None:
        if self.agents is not None:
            await self.agents.stop(session_id, reason=reason)

    def _layers(
        self, project_config: dict[str, Any], session_config: dict[str, Any]
    ) -> policy.Effective:
        return policy.effective(
            [
                ("builtin", policy.builtin_layer()),
                ("defaults", self._settings.defaults),
                ("project", policy.parse_layer(project_config, "project")),
                ("session", policy.parse_layer(session_config, "session")),
            ]
        )

    async def _effective(self, row: SessionRow) -> policy.Effective:
        project_config = await self._store.read(raw_config, row.project_id)
        return self._layers(project_config, row.config)

    async def check_workspace(
        self, row: SessionRow
    ) -> tuple[SessionRow, worktrees.WorkspaceCheck | None]:
        """Detect drift of a worktree session; record a changed state (journaled)."""
        if (
            row.workspace_kind != "worktree"
            or row.workspace_state == "removed"
            or not row.branch
            or not row.workspace_path
        ):
            return row, None
        check = await self.git(
            worktrees.check_worktree, Path(row.project_path), Path(row.workspace_path), row.branch
        )
        if check.state != row.workspace_state:
            data: dict[str, Any] = {"from": row.workspace_state, "to": check.state}
            if check.actual_path is not None:
                data["actual_path"] = str(check.actual_path)
            if check.actual_branch is not None:
                data["actual_branch"] = check.actual_branch
            log.warning("workspace_drift_detected", session_id=row.id, **data)
            row = await self._store.write(
                sessions.update,
                row.id,
                {"workspace_state": check.state},
                event=("workspace_state_changed", data),
            )
        return row, check

    async def _upstream(self, row: SessionRow) -> str | None:
        """The base branch's tip now (ahead/behind is measured against it), if the
        session was based on a branch that still exists."""
        if not row.base_ref or row.base_ref == row.base_commit:
            return None
        try:
            return await self.git(worktrees.resolve_commit, Path(row.project_path), row.base_ref)
        except MimirError:
            return None

    @staticmethod
    def _wire(row: SessionRow, check: worktrees.WorkspaceCheck | None) -> Session:
        extra: dict[str, str | None] = {}
        if check is not None and check.actual_path is not None:
            extra["actual_path"] = str(check.actual_path)
        if check is not None and check.actual_branch is not None:
            extra["actual_branch"] = check.actual_branch
        return row.to_wire(**extra)

    @staticmethod
    def _refuse_drifted(row: SessionRow, action: str) -> None:
        if row.workspace_kind == "worktree" and row.workspace_state not in _USABLE_STATES:
            hint = {
                "missing": "its directory is gone; 'session repair' re-creates it from the branch",
                "moved": "it was moved; 'session repair' adopts the new place",
                "wrong_branch": f"another branch is checked out in it; switch back to "
                f"{row.branch} ('git switch {row.branch}' in {row.workspace_path})",
                "not_a_worktree": "the directory is no longer this repository's worktree; "
                "move it away, then 'session repair' re-creates the worktree",
                "removed": "its worktree was removed; 'session restore' brings it back",
            }.get(row.workspace_state, "")
            raise InvalidState(
                f"cannot {action} session {row.id}: its workspace is {row.workspace_state}: {hint}",
                field="session",
                id=row.id,
                detail={"workspace_state": row.workspace_state},
            )

    # ---- registration ---------------------------------------------------------

    def register(self, registry: Registry) -> None:
        registry.add(
            "session.create",
            self.create,
            params=SessionCreateParams,
            result=Session,
            summary="Create a session in its own workspace (a git worktree on a new branch).",
            description=(
                "workspace: 'worktree' (default for git projects) makes a worktree on a new branch "
                "from the project's HEAD or base_ref; 'in_place' works in the project directory "
                "itself; a project that is not a git repository gets a private copy. The setup "
                "command, if configured, runs before the call answers; its output is journaled "
                "and a failure leaves the session 'failed' with the output in 'failure'."
            ),
            mutating=True,
            concurrent=True,
            errors=(ErrorCode.NOT_FOUND, ErrorCode.ALREADY_EXISTS, ErrorCode.INVALID_STATE),
        )
        registry.add(
            "session.list",
            self.list,
            params=SessionListParams,
            result=SessionList,
            summary="Sessions, newest first, filtered, a page at a time (cursor).",
            errors=(ErrorCode.NOT_FOUND,),
        )
        registry.add(
            "session.get",
            self.get,
            params=SessionRefParams,
            result=Session,
            summary="One session with its workspace state and git status (HEAD, dirty, "
            "ahead/behind, diff stats).",
            errors=(ErrorCode.NOT_FOUND,),
        )
        registry.add(
            "session.update",
            self.update,
            params=SessionUpdateParams,
            result=Session,
            summary="Change a session's title, task or config overrides.",
            mutating=True,
            errors=(ErrorCode.NOT_FOUND,),
        )
        registry.add(
            "session.diff",
            self.diff,
            params=SessionDiffParams,
            result=SessionDiff,
            summary="What the session changed against its base: per file, and the patch "
            "on request.",
            description="Includes uncommitted and untracked (not ignored) files.",
            concurrent=True,
            errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE),
        )
        registry.add(
            "session.config",
            self.config,
            params=SessionRefParams,
            result=SessionConfig,
            summary="Every effective config value of a session, and which layer set it.",
            errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_PARAMS),
        )
        registry.add(
            "session.archive",
            self.archive,
            params=SessionRefParams,
            result=Session,
            summary="Archive a session: hidden from lists, workspace kept.",
            mutating=True,
            errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE),
        )
        registry.add(
            "session.delete",
            self.delete,
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
        registry.add(
            "session.restore",
            self.restore,
            params=SessionRefParams,
            result=Session,
            summary="Bring back a deleted (or archived) session, its work restored from the "
            "snapshot byte for byte.",
            mutating=True,
            concurrent=True,
            errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE, ErrorCode.ALREADY_EXISTS),
        )
        registry.add(
            "session.repair",
            self.repair,
            params=SessionRefParams,
            result=Session,
            summary="Repair a drifted workspace: adopt a moved worktree, re-create a missing one "
            "from its branch.",
            mutating=True,
            concurrent=True,
            errors=(ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE),
        )
        registry.add(
            "session.events",
            self.events,
            params=SessionEventsParams,
            result=EventList,
            summary="A page of the session's journal, in order, after a seq.",
            errors=(ErrorCode.NOT_FOUND,),
        )

    # ---- methods ----------------------------------------------------------------

    async def create(self, ctx: CallContext, params: SessionCreateParams) -> Session:
        project: Project = await self._store.read(get_project, params.project)
        if project.archived:
            raise InvalidState(
                f"project {project.name!r} is archived; unarchive it to start sessions",
                field="project",
                id=project.id,
            )
        effective = self._layers(await self._store.read(raw_config, project.id), params.config)
        session_id = self._store.ids.new()
        short_id = session_id[-SHORT_ID_LENGTH:]
        first_line = params.task.strip().splitlines()[0] if params.task.strip() else ""
        slug = policy.slugify(params.title or first_line)
        placeholders = {
            "slug": slug,
            "short_id": short_id,
            "id": session_id,
            "project": project.name,
            "date": dt.datetime.now(dt.UTC).strftime("%Y%m%d"),
        }
        kind = (
            params.workspace
            if params.workspace is not msgspec.UNSET
            else ("worktree" if project.is_git else "private")
        )
        if kind == "worktree" and not project.is_git:
            raise InvalidParams(
                f"project {project.name!r} is not a git repository, so it cannot have worktrees: "
                "leave workspace out (a private copy) or use 'in_place'",
                field="workspace",
            )
        root = Path(project.path)
        if not await trio.Path(root).is_dir():
            raise InvalidState(
                f"project {project.name!r}: its directory {root} is missing; restore it or "
                "remove the project",
                field="project",
                id=project.id,
            )
        values: dict[str, Any] = {
            "id": session_id,
            "project_id": project.id,
            "title": params.title,
            "task": params.task,
            "agent": params.agent
            if params.agent is not msgspec.UNSET
            else effective.values["agent"],
            "config": params.config,
            "workspace_kind": kind,
            "status": "preparing" if effective.values["setup_command"] else "created",
        }
        async with self.project_lock(project.id):
            if kind == "worktree":
                row = await self._create_worktree(
                    project, root, params, effective, placeholders, values
                )
            elif kind == "in_place":
                state = await self.git(worktrees.repo_state, root) if project.is_git else None
                values.update(
                    workspace_path=str(root),
                    branch=state.branch if state else None,
                    base_commit=state.head_commit if state else None,
                    base_ref=state.branch if state else None,
                )
                row = await self._store.write(_insert_created, values, {"path": str(root)})
            else:
                row = await self._create_private(root, effective, placeholders, values)
        log.info("session_created", session_id=row.id, project=project.name, workspace=kind)
        if effective.values["setup_command"]:
            row = await self._run_setup(row, effective)
        return row.to_wire()

    async def _create_worktree(
        self,
        project: Project,
        root: Path,
        params: SessionCreateParams,
        effective: policy.Effective,
        placeholders: dict[str, str],
        values: dict[str, Any],
    ) -> SessionRow:
        state = await self.git(worktrees.repo_state, root)
        if params.base_ref is not msgspec.UNSET:
            base_ref: str = params.base_ref
            base_commit = await self.git(worktrees.resolve_commit, root, base_ref)
        else:
            if state.head_commit is None:
                raise InvalidState(
                    f"project {project.name!r} has no commits yet; commit something first",
                    field="project",
                    id=project.id,
                )
            if state.dirty:
                raise InvalidState(
                    f"project {project.name!r} has uncommitted changes that a new worktree would "
                    "not include: commit or stash them, or pass base_ref to base the session on "
                    "a commit explicitly",
                    field="project",
                    id=project.id,
                )
            base_commit = state.head_commit
            base_ref = state.branch or state.head_commit
        branch = (
            params.branch
            if params.branch is not msgspec.UNSET
            else policy.render_template(effective.values["branch_template"], **placeholders)
        )
        await self.git(worktrees.check_branch_name, root, branch)
        # git makes the leading directories, and add_worktree removes those it made
        # if it fails: nothing of a failed create stays behind.
        path = self._workspace_path(effective, placeholders)
        await self.git(worktrees.add_worktree, root, path, branch, base_commit)
        try:
            copied = await self.git(
                worktrees.copy_files, root, path, list(effective.values["copy_files"])
            )
            values.update(
                workspace_path=str(path),
                branch=branch,
                base_ref=base_ref,
                base_commit=base_commit,
            )
            return await self._store.write(
                _insert_created,
                values,
                {"path": str(path), "branch": branch, "base_commit": base_commit, "copied": copied},
            )
        except BaseException:
            # Nothing of a failed create may stay behind: not the worktree, not the branch.
            with trio.CancelScope(shield=True):
                await self.git(
                    worktrees.remove_worktree,
                    root,
                    path,
                    branch=branch,
                    snapshot_ref=None,
                    delete_branch=True,
                    force=True,
                )
            raise

    async def _create_private(
        self,
        root: Path,
        effective: policy.Effective,
        placeholders: dict[str, str],
        values: dict[str, Any],
    ) -> SessionRow:
        path = self._workspace_path(effective, placeholders)
        if path.exists():
            raise AlreadyExists(f"{path} already exists", field="path")
        try:
            await trio.to_thread.run_sync(
                lambda: shutil.copytree(root, path, symlinks=True), limiter=self._git_limiter
            )
            values.update(workspace_path=str(path))
            return await self._store.write(
                _insert_created, values, {"path": str(path), "copy_of": str(root)}
            )
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(lambda: shutil.rmtree(path, ignore_errors=True))
            raise

    async def _run_setup(self, row: SessionRow, effective: policy.Effective) -> SessionRow:
        command: str = effective.values["setup_command"]

        async def journal_output(text: str) -> None:
            await self._store.write(journal.append, row.id, "setup_output", {"text": text})

        async def record_group(pgid: int) -> None:
            await self._store.write(
                sessions.update,
                row.id,
                {"process_group": pgid},
                event=("setup_started", {"command": command}),
            )

        async def end(
            status: SessionStatus, reason: str, failure: str | None, *events: _Fact
        ) -> SessionRow:
            return await self._store.write(
                sessions.transition,
                row.id,
                status,
                action="set up",
                reason=reason,
                values={"failure": failure, "process_group": None},
                events=events,
            )

        timeout = self._settings.supervision.setup_timeout_s
        scope = self._setups[row.id] = trio.CancelScope(relative_deadline=timeout)
        try:
            with scope:
                result = await run_setup(
                    command,
                    Path(row.workspace_path),
                    child_environment({**effective.env(), SESSION_ENV: row.id}),
                    effective.secret_values(),
                    journal_output,
                    record_group,
                )
        except OSError as exc:
            failure = f"setup command could not start: {exc.strerror or exc}"
            return await end("failed", "setup_failed", failure)
        finally:
            del self._setups[row.id]
            cancelled = row.id in self._setups_cancelled
            self._setups_cancelled.discard(row.id)
        if scope.cancelled_caught:
            # run_setup has stopped the command's whole group on its way out.
            failure = (
                "setup command cancelled (session.cancel)"
                if cancelled
                else f"setup command timed out after {timeout:g} s ([supervision] setup_timeout_s)"
            )
            log.warning("session_setup_ended", session_id=row.id, failure=failure)
            ended = "cancelled" if cancelled else "timed_out"
            stopped: _Fact = ("setup_finished", {"exit_code": None, "ended": ended})
            return await end("failed", "setup_failed", failure, stopped)
        finished: _Fact = ("setup_finished", {"exit_code": result.exit_code})
        if result.ok:
            return await end("created", "setup_succeeded", None, finished)
        log.warning("session_setup_failed", session_id=row.id, exit_code=result.exit_code)
        failure = f"setup command exited with {result.exit_code}:\n{result.tail}"
        return await end("failed", "setup_failed", failure, finished)

    async def list(self, ctx: CallContext, params: SessionListParams) -> SessionList:
        project_id = None
        if params.project is not msgspec.UNSET:
            project_id = await self._store.read(resolve_id, params.project)
        unset = msgspec.UNSET
        f = sessions.ListFilter(
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
            cursor=params.cursor.lower() if params.cursor is not unset else None,
            limit=params.limit,
        )
        page, next_cursor = await self._store.read(sessions.list_wire_page, f)
        return SessionList(sessions=page, next_cursor=next_cursor)

    async def get(self, ctx: CallContext, params: SessionRefParams) -> Session:
        row, check = await self.check_workspace(await self._find(params.session))
        session = self._wire(row, check)
        if row.workspace_state == "ok" and row.base_commit and row.workspace_kind != "private":
            status = await self.git(
                worktrees.worktree_status,
                Path(row.workspace_path),
                row.base_commit,
                upstream=await self._upstream(row),
            )
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
        return session

    async def update(self, ctx: CallContext, params: SessionUpdateParams) -> Session:
        row = await self._find(params.session)
        changes: dict[str, Any] = {}
        for field in ("title", "task"):
            if (value := getattr(params, field)) is not msgspec.UNSET:
                changes[field] = value
        if params.config is not msgspec.UNSET:
            policy.parse_layer(params.config, "session")
            changes["config"] = policy.keep_masked_secrets(params.config, row.config)
        if not changes:
            return row.to_wire()
        event = ("session_updated", {"fields": sorted(changes)})
        row = await self._store.write(sessions.update, row.id, changes, event=event)
        return row.to_wire()

    async def diff(self, ctx: CallContext, params: SessionDiffParams) -> SessionDiff:
        row, _ = await self.check_workspace(await self._find(params.session))
        self._refuse_drifted(row, "diff")
        if row.base_commit is None or row.workspace_kind == "private":
            raise InvalidState(
                f"session {row.id} has no git base to diff against "
                f"(workspace {row.workspace_kind})",
                field="session",
                id=row.id,
            )
        changes, patch = await self.git(
            worktrees.diff, Path(row.workspace_path), row.base_commit, patch=params.patch
        )
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
        return SessionDiff(
            session=row.id,
            base_commit=row.base_commit,
            files=files,
            files_changed=len(files),
            insertions=sum(f.insertions for f in files),
            deletions=sum(f.deletions for f in files),
            patch=patch,
        )

    async def config(self, ctx: CallContext, params: SessionRefParams) -> SessionConfig:
        row = await self._find(params.session)
        effective = await self._effective(row)
        return SessionConfig(
            session=row.id,
            effective=effective.masked(),
            entries=[ConfigEntry(key=k, value=v, source=s) for k, v, s in effective.entries()],
        )

    async def archive(self, ctx: CallContext, params: SessionRefParams) -> Session:
        row = await self._find(params.session)
        await self._stop_agent(row.id, "archived")
        row = await self._store.write(
            sessions.transition, row.id, "archived", action="archive", reason="archived"
        )
        return row.to_wire()

    async def delete(self, ctx: CallContext, params: SessionDeleteParams) -> SessionRemoved:
        found = await self._find(params.session)
        await self._stop_agent(found.id, "deleted")
        snapshot: worktrees.Snapshot | None = None
        values: dict[str, Any] = {}
        async with self.project_lock(found.project_id):
            # Read and check again under the lock: a second delete of the same session
            # that waited here must find it deleted, not redo the removal.
            row, _ = await self.check_workspace(await self._find(found.id))
            sessions.check_transition(row.id, row.status, "deleted", "delete")
            # A session from before workspaces existed (schema 0002) has no path.
            has_worktree = row.workspace_kind == "worktree" and bool(row.workspace_path)
            if has_worktree and row.workspace_state != "removed":
                if (
                    row.workspace_state in ("moved", "wrong_branch", "not_a_worktree")
                    and not params.force
                ):
                    self._refuse_drifted(row, "delete")
                snapshot = await self.git(
                    worktrees.remove_worktree,
                    Path(row.project_path),
                    Path(row.workspace_path),
                    branch=row.branch,
                    snapshot_ref=snapshot_ref(row.id),
                    delete_branch=params.delete_branch,
                    force=params.force,
                    message=f"mimir: work of session {row.id} ({row.title or row.task[:60]})",
                )
                values["workspace_state"] = "removed"
                if snapshot is not None:
                    values.update(snapshot_ref=snapshot.ref, snapshot_commit=snapshot.commit)
            elif row.workspace_kind == "private" and await trio.Path(row.workspace_path).exists():
                # A private copy is not in git: keep it, out of the way, for restore.
                trash = self._trash(row.id)
                trash.parent.mkdir(parents=True, exist_ok=True)
                await trio.to_thread.run_sync(shutil.move, row.workspace_path, trash)
                values["workspace_state"] = "removed"

            facts: list[tuple[str, dict[str, Any]]] = []
            if snapshot is not None:
                facts.append(
                    (
                        "snapshot_taken",
                        {"ref": snapshot.ref, "commit": snapshot.commit, "files": snapshot.files},
                    )
                )
            if values.get("workspace_state") == "removed":
                facts.append(
                    (
                        "workspace_removed",
                        {"path": row.workspace_path, "branch_deleted": params.delete_branch},
                    )
                )
            row = await self._store.write(
                sessions.transition,
                row.id,
                "deleted",
                action="delete",
                reason="deleted",
                values=values,
                events=facts,
            )
        log.info(
            "session_deleted", session_id=row.id, snapshot=snapshot.commit if snapshot else None
        )
        wire_snapshot = (
            Snapshot(ref=snapshot.ref, commit=snapshot.commit, files=snapshot.files)
            if snapshot is not None
            else None
        )
        return SessionRemoved(session=row.to_wire(), snapshot=wire_snapshot)

    def _workspace_path(self, effective: policy.Effective, placeholders: dict[str, str]) -> Path:
        """Where a new session's workspace goes: worktree_location, under the worktrees
        directory unless absolute."""
        location = Path(
            policy.render_template(effective.values["worktree_location"], **placeholders)
        )
        return location if location.is_absolute() else self._settings.worktrees_dir / location

    def _trash(self, session_id: str) -> Path:
        return self._settings.state_dir / "trash" / session_id

    async def restore(self, ctx: CallContext, params: SessionRefParams) -> Session:
        found = await self._find(params.session)
        values: dict[str, Any] = {}
        async with self.project_lock(found.project_id):
            row = await self._find(found.id)
            if row.status not in ("archived", "deleted"):
                raise InvalidState(
                    f"cannot restore session {row.id}: it is {row.status} (only deleted or "
                    "archived sessions can be restored)",
                    field="session",
                    id=row.id,
                    detail={"status": row.status, "wanted": "created"},
                )
            if row.workspace_state == "removed":
                path = Path(row.workspace_path)
                if await trio.Path(path).exists():
                    raise AlreadyExists(
                        f"cannot restore session {row.id}: {path} exists; move it away first",
                        field="path",
                    )
                if row.workspace_kind == "worktree":
                    if row.snapshot_commit is None or row.branch is None:
                        raise InvalidState(
                            f"session {row.id} has no snapshot to restore its work from (it was "
                            "deleted with force)",
                            field="session",
                            id=row.id,
                        )
                    await self.git(
                        worktrees.restore_worktree,
                        Path(row.project_path),
                        path,
                        branch=row.branch,
                        snapshot_commit=row.snapshot_commit,
                    )
                elif row.workspace_kind == "private":
                    await trio.to_thread.run_sync(shutil.move, self._trash(row.id), path)
                values["workspace_state"] = "ok"

            facts = []
            if values:
                facts.append(
                    (
                        "workspace_restored",
                        {"path": row.workspace_path, "snapshot_commit": row.snapshot_commit},
                    )
                )
            row = await self._store.write(
                sessions.transition,
                row.id,
                "created",
                action="restore",
                reason="restored",
                values=values,
                events=facts,
            )
        log.info("session_restored", session_id=row.id)
        return row.to_wire()

    async def repair(self, ctx: CallContext, params: SessionRefParams) -> Session:
        found = await self._find(params.session)
        async with self.project_lock(found.project_id):
            row, check = await self.check_workspace(await self._find(found.id))
            if check is None or check.state == "ok":
                return self._wire(row, check)
            assert row.branch is not None
            if check.state == "moved" and check.actual_path is not None:
                values: dict[str, Any] = {
                    "workspace_path": str(check.actual_path),
                    "workspace_state": "ok",
                }
                event = ("workspace_repaired", {"adopted_path": str(check.actual_path)})
            elif check.state == "missing":
                root = Path(row.project_path)
                await self.git(worktrees.prune_worktree_admin, root)
                await self.git(
                    worktrees.restore_worktree,
                    root,
                    Path(row.workspace_path),
                    branch=row.branch,
                    snapshot_commit=await self.git(worktrees.resolve_commit, root, row.branch),
                )
                values = {"workspace_state": "ok"}
                event = ("workspace_repaired", {"recreated_from_branch": row.branch})
            else:
                self._refuse_drifted(row, "repair")
                raise AssertionError("unreachable")
            row = await self._store.write(sessions.update, row.id, values, event=event)
        return row.to_wire()

    async def events(self, ctx: CallContext, params: SessionEventsParams) -> EventList:
        row = await self._find(params.session)
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


def _insert_created(conn: Any, values: dict[str, Any], workspace: dict[str, Any]) -> SessionRow:
    """Insert the session row and journal its first events, in one transaction."""
    row = sessions.insert(conn, values)
    journal.append(conn, row.id, "session_created", {"status": row.status})
    journal.append(conn, row.id, "workspace_created", {"kind": row.workspace_kind, **workspace})
    return sessions.find(conn, row.id)


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
