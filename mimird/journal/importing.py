"""Import: records of an export file checked one by one, and written back with
their ids, each session (or run) with its whole journal in one transaction.

Plain sync functions taking a connection, as every database function here. The
records come from a file: every value is hostile until :func:`check_record`
passed it (types, sizes, ids' form, an event's data against its kind). An id
that exists already is a conflict, reported and never overwritten.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import sqlalchemy as sa

from mimird import names
from mimird.errors import InvalidParams
from mimird.journal import search
from mimird.journal.export import without_process_groups
from mimird.store.schema import events, projects, run_events, runs, sessions, turn_usage
from mimird.wire.depth import depth_problem
from mimird.wire.events import DATA_TYPES
from mimird.wire.transfer import (
    MAX_RECORD_BYTES,
    RECORD_TYPES,
    Decision,
    EventRecord,
    MemberResults,
    ProjectRecord,
    Record,
    RunEventRecord,
    RunOptions,
    RunRecord,
    SessionRecord,
    UsageRecord,
)

#: Rows per INSERT of a unit's journal, and about the most bytes of them.
CHUNK: Final = 200
CHUNK_BYTES: Final = 1 << 20
_ENCODER: Final = msgspec.json.Encoder()
#: A unit's journal, spooled one record a line (see :func:`read_spool`).
Spooled = EventRecord | UsageRecord | RunEventRecord
_SPOOLED: Final = msgspec.json.Decoder(Spooled)


def check_record(value: Any, line: int) -> Record:
    """``value`` (one decoded line of the file) as a record, or InvalidParams that
    names the line and what is wrong with it."""
    if not isinstance(value, dict):
        raise _bad(line, f"a record is a JSON object, not {type(value).__name__}")
    kind = value.get("type")
    if kind not in RECORD_TYPES:
        shown = repr(kind)[:60]
        raise _bad(line, f"unknown record type {shown} (known: {', '.join(RECORD_TYPES)})")
    if problem := depth_problem(value):
        raise _bad(line, problem)
    try:
        record: Record = msgspec.convert(value, Record)
    except msgspec.ValidationError as exc:
        raise _bad(line, f"{kind} record: {exc}") from None
    if problem := _names_problem(record):
        raise _bad(line, f"{kind} record: {problem}")
    if isinstance(record, RunRecord):
        try:
            msgspec.convert(record.options, RunOptions)
            msgspec.convert(record.member_results, MemberResults)
            if record.decision is not None:
                msgspec.convert(record.decision, Decision)
        except msgspec.ValidationError as exc:
            raise _bad(line, f"run record: {exc}") from None
    if isinstance(record, EventRecord | RunEventRecord):
        if len(_ENCODER.encode(record.data)) > MAX_RECORD_BYTES:
            raise _bad(line, f"{kind} data is larger than {MAX_RECORD_BYTES} bytes")
        if isinstance(record, EventRecord) and (typed := DATA_TYPES.get(record.kind)):
            try:
                msgspec.convert(record.data, typed)
            except msgspec.ValidationError as exc:
                raise _bad(line, f"{record.kind} event data: {exc}") from None
    return record


def _names_problem(record: Record) -> str | None:
    """What is wrong with the names a record gives git or the file system, if anything."""
    if isinstance(record, ProjectRecord) and (problem := names.project_name_problem(record.name)):
        return f"project name {record.name!r} {problem}"
    if isinstance(record, SessionRecord):
        if record.branch is not None and (problem := names.ref_problem(record.branch)):
            return f"branch {record.branch!r}: {problem}"
        state = record.agent_state or {}
        if not isinstance(state.get("acp_session_id", ""), str | None):
            return "agent_state.acp_session_id is not a string"
        ref = record.snapshot_ref
        if ref is not None and (not ref.startswith("refs/") or names.ref_problem(ref)):
            return f"snapshot_ref {ref!r} is not a ref under refs/"
    return None


def _bad(line: int, message: str) -> InvalidParams:
    return InvalidParams(f"line {line}: {message}", field="records", detail={"line": line})


def spool_line(record: Record) -> bytes:
    return _ENCODER.encode(record) + b"\n"


def read_spool(lines: Iterable[bytes]) -> Iterator[list[Spooled]]:
    """A unit's journal from its spool file, in chunks of at most :data:`CHUNK` records
    and about :data:`CHUNK_BYTES` (a chunk is what one INSERT holds)."""
    chunk: list[Spooled] = []
    size = 0
    for line in lines:
        chunk.append(_SPOOLED.decode(line))
        size += len(line)
        if len(chunk) >= CHUNK or size >= CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


# ---- what is there already --------------------------------------------------------------


def project_conflict(conn: sa.Connection, record: ProjectRecord) -> str | None:
    row = conn.execute(
        sa.select(projects.c.id, projects.c.name, projects.c.path).where(
            sa.or_(
                projects.c.id == record.id,
                projects.c.name == record.name,
                projects.c.path == record.path,
            )
        )
    ).first()
    if row is None:
        return None
    if row.id == record.id:
        return f"project {record.id} exists already (kept as it is)"
    if row.name == record.name:
        return f"the name {record.name!r} is project {row.id}'s here"
    return f"the path {record.path} is project {row.id}'s here"


def session_conflict(conn: sa.Connection, record: SessionRecord) -> str | None:
    if conn.execute(sa.select(sessions.c.id).where(sessions.c.id == record.id)).first():
        return f"session {record.id} exists already"
    project = conn.execute(
        sa.select(projects.c.path).where(projects.c.id == record.project_id)
    ).first()
    if project is None:
        return f"its project {record.project_id} is not here"
    if record.workspace_kind == "in_place" and record.workspace_path != project.path:
        # Mimir gives an in-place session its project's directory, nothing else.
        return (
            f"an in_place session works in its project's directory {project.path!r}, "
            f"not in {record.workspace_path!r}"
        )
    if record.run_id is not None:
        if not conn.execute(sa.select(runs.c.id).where(runs.c.id == record.run_id)).first():
            return f"its run {record.run_id} is not here"
        if (
            record.slot is not None
            and conn.execute(
                sa.select(sessions.c.id).where(
                    sessions.c.run_id == record.run_id, sessions.c.slot == record.slot
                )
            ).first()
        ):
            return f"slot {record.slot} of run {record.run_id} is another session's here"
    return None


def run_conflict(conn: sa.Connection, record: RunRecord) -> str | None:
    if conn.execute(sa.select(runs.c.id).where(runs.c.id == record.id)).first():
        return f"run {record.id} exists already"
    if not conn.execute(sa.select(projects.c.id).where(projects.c.id == record.project_id)).first():
        return f"its project {record.project_id} is not here"
    return None


# ---- writes -----------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return None if value is None else _ENCODER.encode(value).decode()


def insert_project(conn: sa.Connection, record: ProjectRecord) -> str | None:
    """Insert the project; returns the conflict instead when there is one."""
    if reason := project_conflict(conn, record):
        return reason
    conn.execute(
        sa.insert(projects).values(
            id=record.id,
            name=record.name,
            path=record.path,
            type=record.project_type,
            is_git=record.is_git,
            description=record.description,
            config=_text(record.config),
            archived=record.archived,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )
    )
    return None


@dataclass(slots=True)
class Written:
    """What a unit's transaction wrote, or why it wrote nothing."""

    conflict: str | None = None
    events: int = 0
    usage: int = 0
    run_events: int = 0


def insert_session(
    conn: sa.Connection,
    record: SessionRecord,
    journal: Iterable[list[Spooled]],
    *,
    status: str,
    workspace_state: str,
) -> Written:
    """The session and its journal (from the spool), in the caller's one transaction."""
    if reason := session_conflict(conn, record):
        return Written(conflict=reason)
    values = msgspec.structs.asdict(record)
    values.update(
        config=_text(record.config),
        agent_state=_text(record.agent_state),
        status=status,
        workspace_state=workspace_state,
        process_group=None,
    )
    conn.execute(sa.insert(sessions).values(values))
    written = Written()
    last_seq = record.last_seq
    for chunk in journal:
        event_rows = [r for r in chunk if isinstance(r, EventRecord)]
        if event_rows:
            ids = conn.execute(
                sa.insert(events).returning(events.c.id, sort_by_parameter_order=True),
                [
                    {
                        "session_id": record.id,
                        "seq": r.seq,
                        "kind": r.kind,
                        "data": _text(r.data),
                        "created_at": r.created_at,
                    }
                    for r in event_rows
                ],
            ).scalars()
            search.index(
                conn,
                [(i, r.text) for i, r in zip(ids, event_rows, strict=True) if r.text],
            )
            last_seq = max(last_seq, event_rows[-1].seq)
            written.events += len(event_rows)
        usage_rows = [r for r in chunk if isinstance(r, UsageRecord)]
        if usage_rows:
            conn.execute(
                sa.insert(turn_usage),
                [
                    {
                        **msgspec.structs.asdict(r),
                        "session_id": record.id,
                        "project_id": record.project_id,
                    }
                    for r in usage_rows
                ],
            )
            written.usage += len(usage_rows)
    if last_seq != record.last_seq:
        conn.execute(
            sa.update(sessions).where(sessions.c.id == record.id).values(last_seq=last_seq)
        )
    return written


def insert_run(
    conn: sa.Connection,
    record: RunRecord,
    journal: Iterable[list[Spooled]],
) -> Written:
    """The run and its own journal (from the spool), in the caller's one transaction."""
    if reason := run_conflict(conn, record):
        return Written(conflict=reason)
    values = msgspec.structs.asdict(record)
    values.update(
        config=_text(record.config),
        options=_text(record.options),
        decision=_text(record.decision),
        member_results=_text(without_process_groups(record.member_results)),
    )
    conn.execute(sa.insert(runs).values(values))
    written = Written()
    last_seq = record.last_seq
    for chunk in journal:
        rows = [r for r in chunk if isinstance(r, RunEventRecord)]
        if rows:
            conn.execute(
                sa.insert(run_events),
                [
                    {
                        "run_id": record.id,
                        "seq": r.seq,
                        "kind": r.kind,
                        "data": _text(r.data),
                        "created_at": r.created_at,
                    }
                    for r in rows
                ],
            )
            last_seq = max(last_seq, rows[-1].seq)
            written.run_events += len(rows)
    if last_seq != record.last_seq:
        conn.execute(sa.update(runs).where(runs.c.id == record.id).values(last_seq=last_seq))
    return written
