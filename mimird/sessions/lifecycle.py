"""The sessions owner: creating a session with its workspace, and moving it through
its lifecycle (archive, delete, restore, repair, update), each change recorded
and journaled.

The workspace work is :class:`~mimird.workspaces.provision.Workspaces`'; the
records are :mod:`.records`; the setup command is :class:`.setup.SetupCommands`.
A create, delete or restore writes an intent (:mod:`.intents`) before it changes
the disk, and records its outcome in the transaction that clears the intent, in
a step shielded from cancellation (bounded by RECORD_GRACE_S). A cancel before
the change on disk leaves nothing done; a cancel or error after it is settled at
once by :mod:`.settle`; a crash anywhere is settled at the next start.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from typing import Any, Final

import msgspec
import structlog
import trio

from mimird import journal, names, policy, workspace_keys
from mimird.agents.manager import AgentManager
from mimird.config import Settings
from mimird.errors import AlreadyExists, InvalidParams, InvalidState, MimirError, StorageError
from mimird.projects import get_project, raw_config
from mimird.sessions import intents, records
from mimird.sessions.intents import Intent, Operation
from mimird.sessions.records import SessionRow
from mimird.sessions.settle import settle_shielded
from mimird.sessions.setup import SetupCommands
from mimird.sessions.states import (
    FOREIGN_WORKSPACE,
    NOTHING_TO_REMOVE,
    RESTORABLE,
    USABLE_WORKSPACE,
    check_transition,
)
from mimird.store import Store
from mimird.wire import events
from mimird.wire.types import Project, SessionCreateParams
from mimird.workspaces import git as worktrees
from mimird.workspaces.provision import Workspaces, has_worktree, refuse_drifted, snapshot_ref

log = structlog.get_logger("mimird.sessions.lifecycle")

SHORT_ID_LENGTH: Final = 8
#: How long the step that records an operation's outcome may hold off a cancel
#: (one write through the store's single writer).
RECORD_GRACE_S: Final = 10.0


class Sessions:
    """The owner of sessions' lifecycles (no tasks of its own)."""

    def __init__(self, store: Store, settings: Settings, workspaces: Workspaces) -> None:
        self._store = store
        self._settings = settings
        self.workspaces = workspaces
        self.setups = SetupCommands(store, settings.supervision.setup_timeout_s)
        #: Set once the agent manager runs: archive and delete stop the agent first.
        self.agents: AgentManager | None = None

    # ---- reads ------------------------------------------------------------------

    async def find(self, ref: str) -> SessionRow:
        """A session by id or unique prefix (not found / ambiguous are errors).

        Cancellation: nothing changes."""
        return await self._store.read(records.find, ref)

    def layers(
        self, project_config: dict[str, Any], session_config: dict[str, Any]
    ) -> policy.Effective:
        """A session's configuration merged from its layers."""
        return policy.effective(
            [
                ("builtin", policy.builtin_layer()),
                ("defaults", self._settings.defaults),
                ("project", policy.parse_layer(project_config, "project")),
                ("session", policy.parse_layer(session_config, "session")),
            ]
        )

    async def effective(self, row: SessionRow) -> policy.Effective:
        """The session's configuration merged from its layers.

        Cancellation: nothing changes."""
        project_config = await self._store.read(raw_config, row.project_id)
        return self.layers(project_config, row.config)

    async def check_workspace(
        self, row: SessionRow
    ) -> tuple[SessionRow, worktrees.WorkspaceCheck | None]:
        """Detect drift of a worktree session; record a changed state (journaled).

        Cancellation: a cancel during the check changes nothing; during the record
        the write commits or not, and the next check records the change again."""
        return await self._record_check(row, await self.workspaces.check(row))

    async def _record_check(
        self, row: SessionRow, check: worktrees.WorkspaceCheck | None
    ) -> tuple[SessionRow, worktrees.WorkspaceCheck | None]:
        """Record the state ``check`` found, if it changed (journaled)."""
        if check is None or check.state == row.workspace_state:
            return row, check
        changed = events.WorkspaceStateChanged(
            from_=row.workspace_state,
            to=check.state,
            actual_path=None if check.actual_path is None else str(check.actual_path),
            actual_branch=check.actual_branch,
        )
        log.warning("workspace_drift_detected", session_id=row.id, **msgspec.to_builtins(changed))
        row = await self._store.write(
            records.update, row.id, {"workspace_state": check.state}, event=changed
        )
        return row, check

    # ---- the intent protocol ----------------------------------------------------

    async def _begin(self, session_id: str, operation: Operation, data: dict[str, Any]) -> Intent:
        await self._store.write(intents.begin, session_id, operation, data)
        return Intent(session_id=session_id, operation=operation, data=data, created_at="")

    async def _record(self, fn: Any, *args: Any) -> SessionRow:
        """Record an operation's outcome (and clear its intent) shielded from
        cancellation, bounded by RECORD_GRACE_S."""
        with trio.move_on_after(RECORD_GRACE_S, shield=True):
            row: SessionRow = await self._store.write(fn, *args)
            return row
        # The intent stays: the caller settles it by the disk, or the next start does.
        raise StorageError(
            f"the database did not record the outcome within {RECORD_GRACE_S:g} s; "
            "it is settled from what is on disk"
        )

    async def _forget(self, intent: Intent) -> None:
        """Clear an intent whose operation changed nothing (shielded, bounded)."""
        with trio.move_on_after(RECORD_GRACE_S, shield=True):
            await self._store.write(intents.clear, intent.session_id)

    async def _settle(self, intent: Intent) -> None:
        await settle_shielded(self._store, self.workspaces, intent)

    # ---- create -----------------------------------------------------------------

    async def create(
        self,
        params: SessionCreateParams,
        *,
        run: tuple[str, int] | None = None,
        session_id: str | None = None,
        base_commit: str | None = None,
    ) -> SessionRow:
        """Create a session with its workspace; run its setup command, if any.
        ``run``: the run (id, slot) the session is a member of; ``session_id``: its
        id, taken from the store's generator beforehand (a run names its members in
        its first event, before they are made); ``base_commit``: the commit that
        ``params.base_ref`` names, resolved by the caller a moment ago, and
        ``params.branch`` new (a run resolves its base once for all its members
        and names their branches after its own new id): git is asked neither
        again (a branch made since is still refused, by git itself).

        Cancellation: before the workspace is made, nothing is left; while it is
        being made (git work is not abandoned) or recorded, the half-made
        workspace is removed again (or, if the record committed, the session
        exists): either way row and disk agree. A crash in between is rolled back
        at the next start (see :mod:`.settle`). During the setup command, see
        :meth:`.setup.SetupCommands.run`."""
        if params.branch is not msgspec.UNSET:
            names.check_branch(params.branch)
        project: Project = await self._store.read(get_project, params.project)
        if project.archived:
            raise InvalidState(
                f"project {project.name!r} is archived; unarchive it to start sessions",
                field="project",
                id=project.id,
            )
        effective = self.layers(await self._store.read(raw_config, project.id), params.config)
        session_id = session_id or self._store.ids.new()
        first_line = params.task.strip().splitlines()[0] if params.task.strip() else ""
        placeholders = {
            "slug": names.slugify(params.title or first_line),
            "short_id": session_id[-SHORT_ID_LENGTH:],
            "id": session_id,
            "project": names.path_slug(project.name),
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
        if run is not None:
            values.update(run_id=run[0], slot=run[1])
        async with self.workspaces.project_lock(project.id):
            if kind == "worktree":
                row = await self._create_worktree(
                    project, root, params, effective, placeholders, values, base_commit
                )
            elif kind == "in_place":
                state = (
                    await self.workspaces.git(worktrees.repo_state, root)
                    if project.is_git
                    else None
                )
                values.update(
                    workspace_path=str(root),
                    branch=state.branch if state else None,
                    base_commit=state.head_commit if state else None,
                    base_ref=state.branch if state else None,
                )
                created = events.WorkspaceCreated(kind=kind, path=str(root))
                row = await self._store.write(_insert_created, values, created)
            else:
                row = await self._create_private(root, effective, placeholders, values)
        log.info("session_created", session_id=row.id, project=project.name, workspace=kind)
        if effective.values["setup_command"]:
            row = await self.setups.run(row, effective)
        return row

    async def _create_worktree(
        self,
        project: Project,
        root: Path,
        params: SessionCreateParams,
        effective: policy.Effective,
        placeholders: dict[str, str],
        values: dict[str, Any],
        resolved: str | None,
    ) -> SessionRow:
        if params.base_ref is not msgspec.UNSET and resolved is not None:
            base_ref: str = params.base_ref
            base_commit = resolved
        elif params.base_ref is not msgspec.UNSET:
            # The project's state (git status, the dearest git call) is not needed then.
            base_ref = params.base_ref
            base_commit = await self.workspaces.git(worktrees.resolve_commit, root, base_ref)
        else:
            state = await self.workspaces.git(worktrees.repo_state, root)
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
        branch = names.check_branch(
            params.branch
            if params.branch is not msgspec.UNSET
            else workspace_keys.render_template(effective.values["branch_template"], **placeholders)
        )
        path = self.workspaces.path_for(effective, placeholders)
        await self.workspaces.check_new_worktree(root, path, branch, new=resolved is not None)
        values.update(
            workspace_path=str(path), branch=branch, base_ref=base_ref, base_commit=base_commit
        )
        intent = await self._begin(
            values["id"],
            "create",
            {
                "kind": "worktree",
                "root": str(root),
                "path": str(path),
                "branch": branch,
                "base_commit": base_commit,
                "values": values,
            },
        )
        try:
            # git makes the leading directories, and add_worktree removes those it made
            # if it fails: nothing of a failed add stays behind.
            # Checked above (check_new_worktree, resolve_commit or repo_state): not again.
            await self.workspaces.git(
                worktrees.add_worktree, root, path, branch, base_commit, checked=True
            )
        except AlreadyExists:
            # Someone made the path or the branch since the check: theirs, untouched.
            await self._forget(intent)
            raise
        except BaseException:
            await self._settle(intent)
            raise
        try:
            copied = await self.workspaces.git(
                worktrees.copy_files, root, path, list(effective.values["copy_files"])
            )
            created = events.WorkspaceCreated(
                kind="worktree",
                path=str(path),
                branch=branch,
                base_commit=base_commit,
                copied=copied,
            )
            return await self._record(_insert_created, values, created)
        except BaseException:
            # Nothing of a failed create may stay behind: not the worktree, not the branch.
            await self._settle(intent)
            raise

    async def _create_private(
        self,
        root: Path,
        effective: policy.Effective,
        placeholders: dict[str, str],
        values: dict[str, Any],
    ) -> SessionRow:
        path = self.workspaces.path_for(effective, placeholders)
        values.update(workspace_path=str(path))
        await self.workspaces.refuse_mimir_data(root, field="project")
        if await trio.Path(path).exists():
            raise AlreadyExists(f"{path} already exists", field="path")
        intent = await self._begin(
            values["id"],
            "create",
            {"kind": "private", "root": str(root), "path": str(path), "values": values},
        )
        try:
            await self.workspaces.make_copy(
                root, path, max_bytes=effective.values["copy_max_bytes"]
            )
        except AlreadyExists:
            # Nothing was copied, and what is at the path is someone else's.
            await self._forget(intent)
            raise
        except BaseException:
            await self._settle(intent)
            raise
        try:
            created = events.WorkspaceCreated(kind="private", path=str(path), copy_of=str(root))
            return await self._record(_insert_created, values, created)
        except BaseException:
            await self._settle(intent)
            raise

    # ---- changes ----------------------------------------------------------------

    async def _stop_agent(self, session_id: str, reason: str) -> None:
        if self.agents is not None:
            await self.agents.stop(session_id, reason=reason)

    async def update(self, row: SessionRow, changes: dict[str, Any]) -> SessionRow:
        """Change title, task or config overrides (journaled).

        Cancellation: the write commits or not; a retry is harmless."""
        if not changes:
            return row
        event = events.SessionUpdated(fields=sorted(changes))
        updated: SessionRow = await self._store.write(records.update, row.id, changes, event=event)
        return updated

    async def archive(self, ref: str) -> SessionRow:
        """Stop the session's agent and archive it (its workspace is kept).

        Cancellation: during the agent's stop, see AgentManager.stop; the write
        commits or not (a retry is harmless)."""
        row = await self.find(ref)
        await self._stop_agent(row.id, "archived")
        archived: SessionRow = await self._store.write(
            records.transition, row.id, "archived", action="archive", reason="archived"
        )
        return archived

    async def delete(
        self, ref: str, *, force: bool = False, delete_branch: bool = False
    ) -> tuple[SessionRow, worktrees.Snapshot | None]:
        """Stop the agent, snapshot the work, remove the workspace, record the session
        as deleted (Invariant 4: the removal is refused if the snapshot fails).

        Cancellation: before the removal starts, nothing is removed and the session
        is as it was; once it started it runs to its end and its record is
        shielded, so the row says deleted exactly when the worktree is gone. A
        crash in between is finished or undone at the next start, by the disk."""
        found = await self.find(ref)
        await self._stop_agent(found.id, "deleted")
        snapshot: worktrees.Snapshot | None = None
        values: dict[str, Any] = {}
        intent: Intent | None = None
        async with self.workspaces.project_lock(found.project_id):
            # Read and check again under the lock: a second delete of the same session
            # that waited here must find it deleted, not redo the removal.
            row, _ = await self.check_workspace(await self.find(found.id))
            check_transition(row.id, row.status, "deleted", "delete")
            # A workspace is removed only when it is the session's: an imported
            # session's path may hold anything (``foreign``), which stays where it is.
            removing_worktree = has_worktree(row) and row.workspace_state not in NOTHING_TO_REMOVE
            removing_copy = (
                row.workspace_kind == "private"
                and row.workspace_state in USABLE_WORKSPACE
                and await trio.Path(row.workspace_path).exists()
            )
            if removing_worktree or removing_copy:
                if removing_worktree and not force and row.workspace_state in FOREIGN_WORKSPACE:
                    refuse_drifted(row, "delete")
                snapshot_before = None
                if removing_worktree and not force:
                    # What the snapshot ref held before: if a crash cuts this delete
                    # short, a moved ref says the work was saved (see settle).
                    with contextlib.suppress(MimirError):
                        snapshot_before = await self.workspaces.git(
                            worktrees.resolve_commit, Path(row.project_path), snapshot_ref(row.id)
                        )
                intent = await self._begin(
                    row.id,
                    "delete",
                    {
                        "kind": row.workspace_kind,
                        "root": row.project_path,
                        "path": row.workspace_path,
                        "branch": row.branch,
                        "snapshot_ref": snapshot_ref(row.id),
                        "delete_branch": delete_branch,
                        "force": force,
                        "snapshot_before": snapshot_before,
                    },
                )
            try:
                if removing_worktree:
                    snapshot = await self.workspaces.remove(
                        row, force=force, delete_branch=delete_branch
                    )
                    values["workspace_state"] = "removed"
                    if snapshot is not None:
                        values.update(snapshot_ref=snapshot.ref, snapshot_commit=snapshot.commit)
                elif removing_copy:
                    # A private copy is not in git: keep it, out of the way, for restore.
                    await self.workspaces.move_to_trash(row)
                    values["workspace_state"] = "removed"
                facts: list[journal.Fact] = []
                if snapshot is not None:
                    facts.append(
                        events.SnapshotTaken(
                            ref=snapshot.ref, commit=snapshot.commit, files=snapshot.files
                        )
                    )
                if values.get("workspace_state") == "removed":
                    facts.append(
                        events.WorkspaceRemoved(
                            path=row.workspace_path, branch_deleted=delete_branch
                        )
                    )
                row = await self._record(
                    _record_transition, row.id, "deleted", "delete", values, facts
                )
            except BaseException:
                if intent is not None:
                    await self._settle(intent)
                raise
        log.info(
            "session_deleted", session_id=row.id, snapshot=snapshot.commit if snapshot else None
        )
        return row, snapshot

    async def restore(self, ref: str) -> SessionRow:
        """Bring back a deleted (or archived) session, its work restored from the
        snapshot byte for byte.

        Cancellation: before the restore starts, nothing changes; once it started
        it runs to its end and its record is shielded. A crash in between is
        undone at the next start (the snapshot still holds everything; restore
        can be asked for again)."""
        found = await self.find(ref)
        values: dict[str, Any] = {}
        async with self.workspaces.project_lock(found.project_id):
            row = await self.find(found.id)
            if row.status not in RESTORABLE:
                raise InvalidState(
                    f"cannot restore session {row.id}: it is {row.status} (only deleted or "
                    "archived sessions can be restored)",
                    field="session",
                    id=row.id,
                    detail={"status": row.status, "wanted": "created"},
                )
            intent: Intent | None = None
            if row.workspace_state == "removed":
                # Checked before the intent: what is at the path now is not the restore's.
                await self.workspaces.check_restorable(row)
                data: dict[str, Any] = {
                    "kind": row.workspace_kind,
                    "root": row.project_path,
                    "path": row.workspace_path,
                    "branch": row.branch,
                }
                if row.workspace_kind == "worktree" and row.branch and row.snapshot_commit:
                    root = Path(row.project_path)
                    data["branch_existed"] = await self.workspaces.git(
                        worktrees.branch_exists, root, row.branch
                    )
                    data["branch_start"] = await self.workspaces.git(
                        worktrees.restore_branch_start, root, row.snapshot_commit
                    )
                intent = await self._begin(row.id, "restore", data)
            try:
                if intent is not None:
                    await self.workspaces.restore(row)
                    values["workspace_state"] = "ok"
                facts = []
                if values:
                    facts.append(
                        events.WorkspaceRestored(
                            path=row.workspace_path, snapshot_commit=row.snapshot_commit
                        )
                    )
                row = await self._record(
                    _record_transition, row.id, "created", "restore", values, facts
                )
            except BaseException:
                if intent is not None:
                    await self._settle(intent)
                raise
        log.info("session_restored", session_id=row.id)
        return row

    async def repair(self, ref: str) -> tuple[SessionRow, worktrees.WorkspaceCheck | None]:
        """Repair a drifted workspace: adopt a moved worktree, re-create a missing one;
        adopt the directory at an imported (``foreign``) private copy's path as the
        copy, or its worktree once it checks out as the project's, on the session's
        branch.

        Cancellation: a worktree re-created but not yet recorded is found "ok" by
        the next check (the row's path and branch are unchanged), so row and disk
        agree again at the next read."""
        found = await self.find(ref)
        async with self.workspaces.project_lock(found.project_id):
            row = await self.find(found.id)
            if row.workspace_kind == "private":
                return await self._adopt_copy(row), None
            check = await self.workspaces.check(row, adopting=True)
            if row.workspace_state == "foreign" and check is not None and check.state == "ok":
                return await self._adopt(row), None
            row, check = await self._record_check(row, check)
            if check is None or check.state == "ok":
                return row, check
            repair = await self.workspaces.repair(row, check)
            repaired: SessionRow = await self._store.write(
                records.update, row.id, repair.values, event=repair.event
            )
        return repaired, None

    async def _adopt_copy(self, row: SessionRow) -> SessionRow:
        """A ``foreign`` private copy (an import's) becomes the session's own, when a
        directory is at its path; any other state is left as it is."""
        if row.workspace_state != "foreign":
            return row
        if not await trio.Path(row.workspace_path).is_dir():
            raise InvalidState(
                f"cannot repair session {row.id}: no directory is at its path "
                f"{row.workspace_path} to adopt as its private copy",
                field="session",
                id=row.id,
                detail={"workspace_state": row.workspace_state},
            )
        await self.workspaces.refuse_adopting(
            Path(row.workspace_path), Path(row.project_path), row.id
        )
        return await self._adopt(row)

    async def _adopt(self, row: SessionRow) -> SessionRow:
        """The ``foreign`` workspace at the session's path becomes its own (journaled)."""
        adopted: SessionRow = await self._store.write(
            records.update,
            row.id,
            {"workspace_state": "ok"},
            event=events.WorkspaceRepaired(adopted_path=row.workspace_path),
        )
        log.info("workspace_adopted", session_id=row.id, path=row.workspace_path)
        return adopted


def _insert_created(
    conn: Any, values: dict[str, Any], workspace: events.WorkspaceCreated
) -> SessionRow:
    """Insert the session row and journal its first events, and clear the create's
    intent, in one transaction."""
    row = records.insert(conn, values)
    journal.append(conn, row.id, events.SessionCreated(status=row.status))
    journal.append(conn, row.id, workspace)
    intents.clear(conn, row.id)
    return records.find(conn, row.id)


def _record_transition(
    conn: Any,
    session_id: str,
    target: Any,
    action: str,
    values: dict[str, Any],
    facts: list[journal.Fact],
) -> SessionRow:
    """Move the session (journaled after ``facts``) and clear its intent, in one transaction."""
    intents.clear(conn, session_id)
    return records.transition(
        conn,
        session_id,
        target,
        action=action,
        reason="deleted" if target == "deleted" else "restored",
        values=values,
        events=facts,
    )
