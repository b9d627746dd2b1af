"""Finishing or undoing a workspace operation whose intent is still written down
(see :mod:`.intents`): after a crash at start-up, or at once when a cancel or an
error cut the operation short between its change on disk and its record.

The disk decides: what git or the move already did is recorded (finished); what
it had not done is forgotten, and what it had half-made is removed (undone).
Nothing is removed that the operation did not make: a path it made did not
exist before (the operations refuse existing paths), and a branch goes only if
the operation made it and it still points where it was made.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
import structlog
import trio

from mimird import journal
from mimird.errors import InvalidState, MimirError, NotFound
from mimird.sessions import intents, records
from mimird.sessions.intents import Intent
from mimird.sessions.states import RESTORABLE, check_transition
from mimird.store import Store
from mimird.wire import events
from mimird.workspaces import git as worktrees
from mimird.workspaces.provision import Workspaces

log = structlog.get_logger("mimird.sessions.settle")

#: How long a settle (git work and one write) may hold off a cancel. A thread that
#: runs git is not abandoned: the bound applies between steps; what it cuts short
#: is left in the intent for the next start.
SETTLE_GRACE_S: Final = 10.0

Outcome = Literal["finished", "undone"]


async def settle(
    store: Store, workspaces: Workspaces, intent: Intent, *, after_crash: bool
) -> Outcome:
    """Finish or undo ``intent``'s operation, record that, and clear the intent.

    ``after_crash``: the daemon that began it is gone; a create rolled back then
    leaves a ``failed`` session that says so (its client never got an answer),
    while a create cut short in this daemon leaves nothing (its caller gets the
    error).

    Cancellation: none; the caller shields it (its steps are short git work and
    one write)."""
    handler = {"create": _create, "delete": _delete, "restore": _restore}[intent.operation]
    outcome = await handler(store, workspaces, intent, after_crash)
    log.info(
        "workspace_operation_settled",
        session_id=intent.session_id,
        operation=intent.operation,
        outcome=outcome,
        after_crash=after_crash,
    )
    return outcome


async def settle_shielded(
    store: Store, workspaces: Workspaces, intent: Intent, *, after_crash: bool = False
) -> None:
    """:func:`settle`, shielded from cancellation and bounded by SETTLE_GRACE_S; an
    error is logged (the intent stays for the next start).

    Cancellation: shielded; bounded."""
    with trio.move_on_after(SETTLE_GRACE_S, shield=True):
        try:
            await settle(store, workspaces, intent, after_crash=after_crash)
        except (MimirError, OSError) as exc:
            log.warning(
                "workspace_operation_unsettled",
                session_id=intent.session_id,
                operation=intent.operation,
                error=str(exc),
            )


async def _row(store: Store, session_id: str) -> records.SessionRow | None:
    try:
        return await store.read(records.get, session_id)
    except NotFound:
        return None


async def _exists(path: str | Path) -> bool:
    return await trio.to_thread.run_sync(os.path.lexists, path)


# ---- create -----------------------------------------------------------------------------


async def _create(
    store: Store, workspaces: Workspaces, intent: Intent, after_crash: bool
) -> Outcome:
    data = intent.data
    if await _row(store, intent.session_id) is not None:
        # The row was written with the intent's removal: nothing to do.
        await store.write(intents.clear, intent.session_id)
        return "finished"
    path = Path(data["path"])
    if data["kind"] == "worktree":
        removed, branch_deleted = await workspaces.git(
            worktrees.discard_unfinished_worktree,
            Path(data["root"]),
            path,
            new_branch=data["branch"],
            branch_start=data["base_commit"],
        )
        rolled = events.WorkspaceRolledBack(
            operation="create",
            path=str(path),
            branch=data["branch"],
            directory_removed=removed,
            branch_deleted=branch_deleted,
        )
    else:
        # A private copy's path did not exist before the create (it refuses one that does).
        existed = await _exists(path)
        await trio.to_thread.run_sync(lambda: shutil.rmtree(path, ignore_errors=True))
        rolled = events.WorkspaceRolledBack(
            operation="create",
            path=str(path),
            directory_removed=existed and not await _exists(path),
        )
    if not after_crash:
        await store.write(intents.clear, intent.session_id)
        return "undone"

    def record(conn: Any) -> None:
        values = {
            **data["values"],
            "status": "failed",
            "workspace_state": "removed",
            "failure": "mimird stopped while this session's workspace was being made; "
            "what it had made was removed (nothing of the project's was touched)",
        }
        records.insert(conn, values)
        journal.append(conn, intent.session_id, events.SessionCreated(status="failed"))
        journal.append(conn, intent.session_id, rolled)
        intents.clear(conn, intent.session_id)

    await store.write(record)
    return "undone"


# ---- delete -----------------------------------------------------------------------------


def _record_deleted(
    conn: Any,
    session_id: str,
    values: dict[str, Any],
    facts: list[journal.Fact],
) -> records.SessionRow:
    current = records.get(conn, session_id)
    intents.clear(conn, session_id)
    if current.status == "deleted":
        return records.update(conn, session_id, values)
    try:
        check_transition(session_id, current.status, "deleted", "delete")
    except InvalidState:
        # The disk says deleted whatever the row said: the row follows the disk
        # (journaled as a status change like any other).
        for fact in facts:
            journal.append(conn, session_id, fact)
        change = events.StatusChanged(from_=current.status, to="deleted", reason="recovered")
        return records.update(conn, session_id, {**values, "status": "deleted"}, event=change)
    return records.transition(
        conn,
        session_id,
        "deleted",
        action="delete",
        reason="deleted",
        values=values,
        events=facts,
    )


async def _delete(
    store: Store, workspaces: Workspaces, intent: Intent, after_crash: bool
) -> Outcome:
    data = intent.data
    row = await _row(store, intent.session_id)
    if row is None or (row.status == "deleted" and row.workspace_state == "removed"):
        await store.write(intents.clear, intent.session_id)
        return "finished"
    path = Path(data["path"])
    values: dict[str, Any] = {"workspace_state": "removed"}
    facts: list[journal.Fact] = []
    if data["kind"] == "worktree":
        root = Path(data["root"])
        commit = None
        if not data["force"]:
            try:
                commit = await workspaces.git(worktrees.resolve_commit, root, data["snapshot_ref"])
            except MimirError:
                commit = None
        if await _exists(path):
            # The snapshot comes first, the removal after it. A snapshot ref that moved
            # since the intent was written means this delete saved the work and a
            # crash may have cut git's removal short (a worktree half emptied): the
            # delete is finished. Otherwise nothing was removed and the row is right.
            saved = commit is not None and commit != data.get("snapshot_before")
            if not (after_crash and saved):
                await store.write(intents.clear, intent.session_id)
                return "undone"
            # The branch is kept: whether it held commits the snapshot does not was
            # the part of the delete that may not have run.
            await workspaces.git(
                worktrees.remove_worktree,
                root,
                path,
                branch=data["branch"],
                snapshot_ref=None,
                force=True,
            )
        if commit is not None:
            values.update(snapshot_ref=data["snapshot_ref"], snapshot_commit=commit)
            facts.append(events.SnapshotTaken(ref=data["snapshot_ref"], commit=commit, files=None))
        branch_deleted = bool(data["delete_branch"]) and not (
            data["branch"] and await workspaces.git(worktrees.branch_exists, root, data["branch"])
        )
    else:
        trash = workspaces.trash(intent.session_id)
        if await _exists(path):
            if await _exists(trash):
                # A move across file systems cut short: the copy in the trash is partial.
                await trio.to_thread.run_sync(lambda: shutil.rmtree(trash, ignore_errors=True))
            await store.write(intents.clear, intent.session_id)
            return "undone"
        branch_deleted = False
    facts.append(
        events.WorkspaceRemoved(path=str(path), branch_deleted=branch_deleted, recovered=True)
    )
    await store.write(_record_deleted, intent.session_id, values, facts)
    return "finished"


# ---- restore ----------------------------------------------------------------------------


async def _restore(
    store: Store, workspaces: Workspaces, intent: Intent, after_crash: bool
) -> Outcome:
    data = intent.data
    row = await _row(store, intent.session_id)
    if row is None or row.status not in RESTORABLE:
        await store.write(intents.clear, intent.session_id)
        return "finished"
    path = Path(data["path"])
    rolled = events.WorkspaceRolledBack(operation="restore", path=str(path))
    if data["kind"] == "worktree":
        # Whether or not the snapshot was applied in full, the worktree is the
        # snapshot's (or half of it): the snapshot ref still holds everything, so
        # the restore is undone and can simply be asked for again.
        removed, branch_deleted = await workspaces.git(
            worktrees.discard_unfinished_worktree,
            Path(data["root"]),
            path,
            new_branch=None if data.get("branch_existed", True) else data["branch"],
            branch_start=data.get("branch_start"),
        )
        rolled = msgspec.structs.replace(
            rolled, directory_removed=removed, branch_deleted=branch_deleted
        )
    else:
        trash = workspaces.trash(intent.session_id)
        if await _exists(path) and not await _exists(trash):

            def finish(conn: Any) -> None:
                intents.clear(conn, intent.session_id)
                records.transition(
                    conn,
                    intent.session_id,
                    "created",
                    action="restore",
                    reason="restored",
                    values={"workspace_state": "ok"},
                    events=[
                        events.WorkspaceRestored(
                            path=str(path), snapshot_commit=None, recovered=True
                        )
                    ],
                )

            await store.write(finish)
            return "finished"
        if await _exists(path):
            # A move across file systems cut short: the copy at the path is partial.
            await trio.to_thread.run_sync(lambda: shutil.rmtree(path, ignore_errors=True))
            rolled = msgspec.structs.replace(rolled, directory_removed=True)

    def undo(conn: Any) -> None:
        intents.clear(conn, intent.session_id)
        if after_crash:
            journal.append(conn, intent.session_id, rolled)

    await store.write(undo)
    return "undone"
