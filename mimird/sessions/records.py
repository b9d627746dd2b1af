"""Sessions: the records (database functions); the state machine is :mod:`.states`.

Database functions are plain sync functions taking a connection (run by the
store in a worker thread). Every status change goes through
:func:`transition`, which refuses illegal ones and journals the legal ones in
the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import sqlalchemy as sa

from mimird import journal
from mimird.errors import NotFound
from mimird.policy import mask_config
from mimird.sessions.states import check_transition
from mimird.store import lookup
from mimird.store.schema import projects, sessions
from mimird.timeutil import utc_now
from mimird.wire.events import Prompt, SessionCompleted, StatusChanged, TurnEnded
from mimird.wire.types import Session, SessionStatus, Workspace


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A session as stored, with raw (unmasked) config, for the service's own use."""

    id: str
    project_id: str
    project_name: str
    project_path: str
    title: str
    task: str
    agent: str | None
    status: SessionStatus
    config: dict[str, Any]
    workspace_kind: str
    workspace_path: str
    workspace_state: str
    branch: str | None
    base_ref: str | None
    base_commit: str | None
    snapshot_ref: str | None
    snapshot_commit: str | None
    failure: str | None
    last_seq: int
    process_group: int | None
    agent_state: dict[str, Any] | None
    created_at: str
    updated_at: str
    completed_at: str | None = None
    active_s: float = 0.0
    run_id: str | None = None
    slot: int | None = None

    def to_wire(self, **workspace_extra: str | None) -> Session:
        return Session(
            id=self.id,
            project_id=self.project_id,
            project=self.project_name,
            title=self.title,
            task=self.task,
            agent=self.agent,
            status=self.status,
            workspace=Workspace(
                kind=self.workspace_kind,  # type: ignore[arg-type]
                path=self.workspace_path,
                state=self.workspace_state,  # type: ignore[arg-type]
                branch=self.branch,
                base_ref=self.base_ref,
                base_commit=self.base_commit,
                snapshot_ref=self.snapshot_ref,
                snapshot_commit=self.snapshot_commit,
                **workspace_extra,
            ),
            config=mask_config(self.config),
            failure=self.failure,
            agent_state=self.agent_state,
            last_seq=self.last_seq,
            created_at=self.created_at,
            updated_at=self.updated_at,
            completed_at=self.completed_at,
            active_s=self.active_s,
            run_id=self.run_id,
            slot=self.slot,
        )


_SESSION_COLUMNS: Final = (
    "id",
    "project_id",
    "title",
    "status",
    "created_at",
    "updated_at",
    "task",
    "agent",
    "config",
    "workspace_kind",
    "workspace_path",
    "workspace_state",
    "branch",
    "base_ref",
    "base_commit",
    "snapshot_ref",
    "snapshot_commit",
    "failure",
    "last_seq",
    "process_group",
    "agent_state",
    "completed_at",
    "active_s",
    "run_id",
    "slot",
)
# The column order is spelled out because _row unpacks rows by position.
_select = sa.select(
    *(sessions.c[name] for name in _SESSION_COLUMNS),
    projects.c.name.label("project_name"),
    projects.c.path.label("project_path"),
).select_from(sessions.join(projects, projects.c.id == sessions.c.project_id))


def _row(row: Sequence[Any]) -> SessionRow:
    # Unpacked by position: reading 25 columns by name costs ~10 µs a row
    # (SQLAlchemy Row attribute access). session.list maps its rows with _wire_of.
    (
        id_,
        project_id,
        title,
        status,
        created_at,
        updated_at,
        task,
        agent,
        config,
        workspace_kind,
        workspace_path,
        workspace_state,
        branch,
        base_ref,
        base_commit,
        snapshot_ref,
        snapshot_commit,
        failure,
        last_seq,
        process_group,
        agent_state,
        completed_at,
        active_s,
        run_id,
        slot,
        project_name,
        project_path,
    ) = row
    return SessionRow(
        id=id_,
        project_id=project_id,
        project_name=project_name,
        project_path=project_path,
        title=title,
        task=task,
        agent=agent,
        status=status,
        config=msgspec.json.decode(config),
        workspace_kind=workspace_kind,
        workspace_path=workspace_path,
        workspace_state=workspace_state,
        branch=branch,
        base_ref=base_ref,
        base_commit=base_commit,
        snapshot_ref=snapshot_ref,
        snapshot_commit=snapshot_commit,
        failure=failure,
        last_seq=last_seq,
        process_group=process_group,
        agent_state=msgspec.json.decode(agent_state) if agent_state else None,
        created_at=created_at,
        updated_at=updated_at,
        completed_at=completed_at,
        active_s=active_s,
        run_id=run_id,
        slot=slot,
    )


def find(conn: sa.Connection, ref: str) -> SessionRow:
    """A session by id or unique id prefix (case-insensitive, like the ids' alphabet)."""
    return _row(lookup.by_id_or_prefix(conn, _select, sessions.c.id, ref, "session"))


def get(conn: sa.Connection, session_id: str) -> SessionRow:
    return find(conn, session_id)


def of_run(conn: sa.Connection, run_id: str, slot: int | None = None) -> list[SessionRow]:
    """The member sessions of a run (only the one in ``slot``, if given), by slot:
    one query, through the (run_id, slot) index."""
    where = [sessions.c.run_id == run_id, sessions.c.slot.is_not(None)]
    if slot is not None:
        where.append(sessions.c.slot == slot)
    return [_row(r) for r in conn.execute(_select.where(*where).order_by(sessions.c.slot))]


def insert(conn: sa.Connection, values: dict[str, Any]) -> SessionRow:
    now = utc_now()
    row = {
        **values,
        "config": msgspec.json.encode(values.get("config", {})).decode(),
        "created_at": now,
        "updated_at": now,
        "last_seq": 0,
    }
    conn.execute(sa.insert(sessions).values(**row))
    return find(conn, values["id"])


def update(
    conn: sa.Connection,
    session_id: str,
    values: dict[str, Any],
    *,
    event: journal.Fact | None = None,
) -> SessionRow:
    for name in ("config", "agent_state"):
        if name in values and values[name] is not None:
            values = {**values, name: msgspec.json.encode(values[name]).decode()}
    conn.execute(
        sa.update(sessions)
        .where(sessions.c.id == session_id)
        .values(**values, updated_at=utc_now())
    )
    if event is not None:
        journal.append(conn, session_id, event)
    return find(conn, session_id)


def transition(
    conn: sa.Connection,
    session_id: str,
    target: SessionStatus,
    *,
    action: str,
    reason: str = "",
    values: dict[str, Any] | None = None,
    events: Sequence[journal.Fact] = (),
) -> SessionRow:
    """Move a session to ``target`` (checked against TRANSITIONS), journaled after
    ``events``, the facts that led to it, all in the caller's transaction."""
    current = conn.execute(
        sa.select(sessions.c.status).where(sessions.c.id == session_id)
    ).scalar_one_or_none()
    if current is None:
        raise NotFound(f"session {session_id} no longer exists", field="session", id=session_id)
    check_transition(session_id, current, target, action)
    for fact in events:
        journal.append(conn, session_id, fact)
    changed = StatusChanged(from_=current, to=target, reason=reason or None)
    return update(conn, session_id, {**(values or {}), "status": target}, event=changed)


def transition_if(
    conn: sa.Connection,
    session_id: str,
    target: SessionStatus,
    *,
    only_from: frozenset[str],
    reason: str = "",
    values: dict[str, Any] | None = None,
    events: Sequence[journal.Fact] = (),
) -> SessionRow | None:
    """Journal ``events``; then, if the session is in one of ``only_from``, move it
    to ``target`` (a legal move, checked) with ``values``. For the agent host, whose
    view of the status may be overtaken (a stop, a crash). None if it is gone."""
    current = conn.execute(
        sa.select(sessions.c.status).where(sessions.c.id == session_id)
    ).scalar_one_or_none()
    if current is None:
        return None
    for fact in events:
        journal.append(conn, session_id, fact)
    if current not in only_from or current == target:
        if values:
            return update(conn, session_id, values)
        return find(conn, session_id)
    return transition(
        conn, session_id, target, action=f"move to {target}", reason=reason, values=values
    )


def prompt_started(conn: sa.Connection, session_id: str, prompt: Prompt, *, text: str) -> int:
    """Journal the user's prompt (indexed for search) and mark the turn running."""
    seq = journal.append(conn, session_id, prompt, text=text)
    transition_if(conn, session_id, "running", only_from=frozenset({"idle"}), reason="prompt")
    return seq


def turn_ended(
    conn: sa.Connection,
    session_id: str,
    ended: TurnEnded,
    *,
    active_s: float = 0.0,
    text: str | None = None,
) -> int:
    """Journal the turn's end (``text``, the files it changed, indexed for search),
    add its ``active_s`` to the session's and move it back to idle."""
    seq = journal.append(conn, session_id, ended, text=text)
    conn.execute(
        sa.update(sessions)
        .where(sessions.c.id == session_id)
        .values(active_s=sessions.c.active_s + max(active_s, 0.0))
    )
    transition_if(
        conn,
        session_id,
        "idle",
        only_from=frozenset({"running", "awaiting_permission"}),
        reason="turn_ended",
    )
    return seq


def complete(
    conn: sa.Connection, session_id: str, completed: SessionCompleted, *, reason: str
) -> SessionRow:
    """Mark the session completed now (a legal move, checked), journaled with
    ``completed`` (its note indexed for search)."""
    journal.append(conn, session_id, completed, text=completed.note)
    return transition(
        conn,
        session_id,
        "completed",
        action="complete",
        reason=reason,
        values={"completed_at": utc_now(), "process_group": None},
    )


@dataclass(frozen=True, slots=True)
class ListFilter:
    project_id: str | None = None
    statuses: tuple[str, ...] | None = None
    agent: str | None = None
    text: str | None = None
    created_after: str | None = None
    created_before: str | None = None
    updated_after: str | None = None
    updated_before: str | None = None
    include_archived: bool = False
    include_deleted: bool = False
    sort: str = "created"
    cursor: str | None = None
    limit: int = 100
    offset: int = 0


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


#: session.list's query, written out: it runs on the DBAPI cursor, without
#: SQLAlchemy's statement building and compilation (~0.3 ms) and its per-row work.
_LIST_SELECT: Final = (
    "SELECT "
    + ", ".join(f"sessions.{name}" for name in _SESSION_COLUMNS)
    + ", projects.name, projects.path FROM sessions"
    " JOIN projects ON projects.id = sessions.project_id"
)
_LIST_BOUNDS: Final = (
    ("created_after", "sessions.created_at > ?"),
    ("created_before", "sessions.created_at < ?"),
    ("updated_after", "sessions.updated_at > ?"),
    ("updated_before", "sessions.updated_at < ?"),
)


def list_wire_page(conn: sa.Connection, f: ListFilter) -> tuple[list[Session], str | None]:
    """A page of sessions as session.list answers it, newest first by id (ids sort
    by creation); the cursor is the last id of the page when there is another. Each
    row is mapped straight to its wire struct, the same as ``SessionRow.to_wire()``
    without the ``SessionRow`` in between (a frozen dataclass of 23 fields costs
    more to build than the struct)."""
    rows = _list_rows(conn, f)
    page = [_wire_of(r) for r in rows[: f.limit]]
    return page, (page[-1].id if len(rows) > f.limit else None)


def _wire_of(row: Sequence[Any]) -> Session:
    """A row of ``_LIST_SELECT`` as ``_row(row).to_wire()`` makes it."""
    (
        id_,
        project_id,
        title,
        status,
        created_at,
        updated_at,
        task,
        agent,
        config,
        workspace_kind,
        workspace_path,
        workspace_state,
        branch,
        base_ref,
        base_commit,
        snapshot_ref,
        snapshot_commit,
        failure,
        last_seq,
        _process_group,
        agent_state,
        completed_at,
        active_s,
        run_id,
        slot,
        project_name,
        _project_path,
    ) = row
    return Session(
        id=id_,
        project_id=project_id,
        project=project_name,
        title=title,
        task=task,
        agent=agent,
        status=status,
        workspace=Workspace(
            kind=workspace_kind,
            path=workspace_path,
            state=workspace_state,
            branch=branch,
            base_ref=base_ref,
            base_commit=base_commit,
            snapshot_ref=snapshot_ref,
            snapshot_commit=snapshot_commit,
        ),
        config=mask_config(msgspec.json.decode(config)),
        failure=failure,
        agent_state=msgspec.json.decode(agent_state) if agent_state else None,
        last_seq=last_seq,
        created_at=created_at,
        updated_at=updated_at,
        completed_at=completed_at,
        active_s=active_s,
        run_id=run_id,
        slot=slot,
    )


def counted_wire_page(conn: sa.Connection, f: ListFilter) -> tuple[list[Session], str | None, int]:
    """:func:`list_wire_page` and, read in the same transaction, how many sessions
    ``f``'s filters match on every page (cursor and offset aside): ``total``."""
    where, args = _list_where(f, paging=False)
    sql = "SELECT count(*) FROM sessions"
    if where:
        sql += " WHERE " + " AND ".join(where)
    total = int(_fetch(conn, sql, args)[0][0])
    return (*list_wire_page(conn, f), total)


def _list_where(f: ListFilter, *, paging: bool = True) -> tuple[list[str], list[Any]]:
    """The conditions of ``f`` and their arguments; with ``paging``, the cursor's too."""
    where: list[str] = []
    args: list[Any] = []
    if f.project_id is not None:
        where.append("sessions.project_id = ?")
        args.append(f.project_id)
    if f.statuses:
        where.append(f"sessions.status IN ({', '.join('?' * len(f.statuses))})")
        args.extend(f.statuses)
    else:
        hidden = [
            s
            for s, shown in (("archived", f.include_archived), ("deleted", f.include_deleted))
            if not shown
        ]
        if hidden:
            where.append(f"sessions.status NOT IN ({', '.join('?' * len(hidden))})")
            args.extend(hidden)
    if f.agent is not None:
        where.append("sessions.agent = ?")
        args.append(f.agent)
    if f.text is not None:
        # The title, the task, the id (a prefix as mimirctl shows it) or the branch.
        where.append(
            "(sessions.title LIKE ? ESCAPE '\\' OR sessions.task LIKE ? ESCAPE '\\'"
            " OR sessions.id LIKE ? ESCAPE '\\' OR sessions.branch LIKE ? ESCAPE '\\')"
        )
        pattern = _like(f.text)
        args.extend((pattern,) * 4)
    for name, condition in _LIST_BOUNDS:
        bound = getattr(f, name)
        if bound is not None:
            where.append(condition)
            args.append(bound)
    by_completion = f.sort == "completed_at"
    if by_completion:
        where.append("sessions.completed_at IS NOT NULL")
    if not paging:
        return where, args
    if f.cursor is not None and by_completion:
        # After the cursor's session in (completed_at, id) order; a cursor whose
        # session has no completed_at (any more) ends the list.
        where.append(
            "(sessions.completed_at, sessions.id) < "
            "(SELECT c.completed_at, c.id FROM sessions AS c WHERE c.id = ?)"
        )
        args.append(f.cursor)
    elif f.cursor is not None:
        where.append("sessions.id < ?")
        args.append(f.cursor)
    return where, args


def _list_rows(conn: sa.Connection, f: ListFilter) -> list[tuple[Any, ...]]:
    """Up to ``f.limit + 1`` rows of ``_LIST_SELECT`` (one more tells a next page)."""
    where, args = _list_where(f)
    sql = _LIST_SELECT
    if where:
        sql += " WHERE " + " AND ".join(where)
    by_completion = f.sort == "completed_at"
    order = "sessions.completed_at DESC, sessions.id DESC" if by_completion else "sessions.id DESC"
    sql += f" ORDER BY {order} LIMIT ? OFFSET ?"
    args.extend((f.limit + 1, f.offset))
    return _fetch(conn, sql, args)


def _fetch(conn: sa.Connection, sql: str, args: list[Any]) -> list[tuple[Any, ...]]:
    """``sql``'s rows, run on the DBAPI cursor."""
    driver = conn.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    try:
        rows: list[tuple[Any, ...]] = cursor.execute(sql, args).fetchall()
    finally:
        cursor.close()
    return rows


def with_workspaces(conn: sa.Connection, project_id: str | None) -> list[SessionRow]:
    """Every session whose workspace is (or was) a git worktree."""
    query = _select.where(sessions.c.workspace_kind == "worktree")
    if project_id is not None:
        query = query.where(sessions.c.project_id == project_id)
    return [_row(r) for r in conn.execute(query.order_by(sessions.c.id))]


def in_status(conn: sa.Connection, statuses: tuple[str, ...]) -> list[SessionRow]:
    return [_row(r) for r in conn.execute(_select.where(sessions.c.status.in_(statuses)))]


def live_session_ids(conn: sa.Connection, project_id: str) -> list[str]:
    """Sessions of a project that are not deleted, oldest first."""
    return list(
        conn.execute(
            sa.select(sessions.c.id)
            .where(sessions.c.project_id == project_id, sessions.c.status != "deleted")
            .order_by(sessions.c.id)
        ).scalars()
    )


def count_by_status(conn: sa.Connection) -> dict[str, int]:
    """How many sessions are in each status (deleted ones not counted)."""
    query = (
        sa.select(sessions.c.status, sa.func.count())
        .where(sessions.c.status != "deleted")
        .group_by(sessions.c.status)
    )
    return {str(status): int(count) for status, count in conn.execute(query)}
