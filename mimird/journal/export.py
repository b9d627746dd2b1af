"""Export: the database's projects, runs, sessions and their journals as records,
one bounded page at a time, in an order an import can stream (a project, then its
runs each followed by its own journal, then its sessions each followed by its
events and its turns' usage).

A page is read in one read transaction; where the next one starts is a small
cursor (:class:`Position`, as text), so that the daemon keeps nothing between
pages and memory does not grow with the database. Pages are not one snapshot:
what a session journals while it is exported is exported if its page comes later.

Left out, on purpose: ``daemon_runs`` (this daemon's own lifetimes), ``audit_log``
(who called this daemon; it stays with the database, see ``db.backup``),
``terminals`` and ``workspace_intents`` (processes and disk operations under way on
this machine), and the search index, which an import rebuilds from each event's
``text``. Event ids are not kept either: they are this database's cursors; an
event is its session's ``seq``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import sqlalchemy as sa

from mimird.errors import InvalidParams
from mimird.store.schema import projects, run_events, runs, sessions, turn_usage
from mimird.wire.transfer import PAGE_BYTES

#: Rows read at once while a page fills (events and usage).
CHUNK: Final = 200
_ENCODER: Final = msgspec.json.Encoder()
_STAGES: Final = ("P", "R", "RE", "S", "E", "U")

#: Masks secrets in a stored config (a project's, session's or run's) before it leaves.
Mask = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Filters:
    project_id: str | None = None
    session_id: str | None = None
    #: The session's run, with ``session_id``.
    run_id: str | None = None
    since: str | None = None


@dataclass(frozen=True, slots=True)
class Position:
    """Where the next record is: in stage ``stage`` of project ``project`` (unit
    ``unit``: a run or a session), after ``after`` (an id, or a seq)."""

    stage: str
    project: str = ""
    unit: str = ""
    after: str = ""

    def text(self) -> str:
        return ":".join((self.stage, self.project, self.unit, self.after))

    @classmethod
    def parse(cls, text: str) -> Position:
        parts = text.split(":")
        ok = len(parts) == 4 and parts[0] in _STAGES
        ok = ok and all((len(p) <= 26 and p.isalnum()) or p == "" for p in parts[1:])
        if parts[0] in ("RE", "E", "U"):
            ok = ok and parts[3].isdigit() and len(parts[3]) <= 19
        if not ok:
            raise InvalidParams(
                f"cursor {text[:60]!r} is not one export.page gave; start again without it",
                field="cursor",
            )
        return cls(*parts)


START: Final = Position("P")


def _json(text: str | None) -> Any:
    return None if text is None else msgspec.json.decode(text)


class _Page:
    def __init__(self, limit: int) -> None:
        self.records: list[msgspec.Raw] = []
        self.size = 0
        self.limit = limit

    def add(self, record: dict[str, Any]) -> None:
        encoded = _ENCODER.encode(record)
        self.records.append(msgspec.Raw(encoded))
        self.size += len(encoded)

    @property
    def full(self) -> bool:
        return len(self.records) >= self.limit or self.size >= PAGE_BYTES


def page(
    conn: sa.Connection, filters: Filters, at: Position, *, limit: int, mask: Mask
) -> tuple[list[msgspec.Raw], Position | None]:
    """The records from ``at`` on (at most ``limit``, about :data:`PAGE_BYTES`), and
    where the next page starts (None: nothing is left)."""
    out = _Page(limit)
    pos: Position | None = at
    while pos is not None and not out.full:
        pos = _STEPS[pos.stage](conn, filters, pos, out, mask)
    return out.records, pos


def _project_step(
    conn: sa.Connection, f: Filters, pos: Position, out: _Page, mask: Mask
) -> Position | None:
    query = sa.select(projects).where(projects.c.id > pos.project).order_by(projects.c.id)
    if f.project_id is not None:
        query = query.where(projects.c.id == f.project_id)
    if f.since is not None:
        query = query.where(
            sa.or_(
                projects.c.updated_at >= f.since,
                sa.exists().where(
                    sessions.c.project_id == projects.c.id, sessions.c.updated_at >= f.since
                ),
                sa.exists().where(runs.c.project_id == projects.c.id, runs.c.updated_at >= f.since),
            )
        )
    row = conn.execute(query.limit(1)).first()
    if row is None:
        return None
    out.add(
        {
            "type": "project",
            "id": row.id,
            "name": row.name,
            "path": row.path,
            "project_type": row.type,
            "is_git": bool(row.is_git),
            "description": row.description,
            "config": mask(_json(row.config)),
            "archived": bool(row.archived),
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }
    )
    return Position("R", row.id)


def _run_step(
    conn: sa.Connection, f: Filters, pos: Position, out: _Page, mask: Mask
) -> Position | None:
    query = (
        sa.select(runs)
        .where(runs.c.project_id == pos.project, runs.c.id > pos.unit)
        .order_by(runs.c.id)
    )
    if f.session_id is not None:
        query = query.where(runs.c.id == (f.run_id or ""))
    if f.since is not None:
        query = query.where(
            sa.or_(
                runs.c.updated_at >= f.since,
                sa.exists().where(sessions.c.run_id == runs.c.id, sessions.c.updated_at >= f.since),
            )
        )
    row = conn.execute(query.limit(1)).first()
    if row is None:
        return Position("S", pos.project)
    record = {"type": "run", **row._asdict()}
    record["config"] = mask(_json(row.config))
    record["options"] = mask(_json(row.options))
    record["decision"] = _json(row.decision)
    record["member_results"] = without_process_groups(_json(row.member_results))
    out.add(record)
    return Position("RE", pos.project, row.id, "0")


def without_process_groups(member_results: dict[str, Any]) -> dict[str, Any]:
    """A run's member results without the process groups of check commands: they
    belong to this machine (start-up recovery reaps them)."""
    return {
        slot: {k: v for k, v in known.items() if k != "check_group"}
        if isinstance(known, dict)
        else known
        for slot, known in member_results.items()
    }


def _run_event_step(
    conn: sa.Connection, f: Filters, pos: Position, out: _Page, mask: Mask
) -> Position | None:
    result = conn.execute(
        sa.select(run_events.c.seq, run_events.c.kind, run_events.c.data, run_events.c.created_at)
        .where(run_events.c.run_id == pos.unit, run_events.c.seq > int(pos.after))
        .order_by(run_events.c.seq)
        .limit(min(CHUNK, out.limit - len(out.records)))
    )
    rows = 0
    for seq, kind, data, created_at in result:
        rows += 1
        out.add(
            {
                "type": "run_event",
                "run_id": pos.unit,
                "seq": seq,
                "kind": kind,
                "data": msgspec.Raw(data.encode()),
                "created_at": created_at,
            }
        )
        pos = Position("RE", pos.project, pos.unit, str(seq))
        if out.full:
            break
    result.close()
    return pos if rows else Position("R", pos.project, pos.unit)


def _session_step(
    conn: sa.Connection, f: Filters, pos: Position, out: _Page, mask: Mask
) -> Position | None:
    query = (
        sa.select(sessions)
        .where(sessions.c.project_id == pos.project, sessions.c.id > pos.unit)
        .order_by(sessions.c.id)
    )
    if f.session_id is not None:
        query = query.where(sessions.c.id == f.session_id)
    if f.since is not None:
        query = query.where(sessions.c.updated_at >= f.since)
    row = conn.execute(query.limit(1)).first()
    if row is None:
        return Position("P", pos.project)
    record = {"type": "session", **row._asdict()}
    del record["process_group"]
    record["config"] = mask(_json(row.config))
    record["agent_state"] = _json(row.agent_state)
    out.add(record)
    return Position("E", pos.project, row.id, "0")


#: A session's events with the words the search index holds for each (FTS5 finds a
#: row by its rowid, the event's id, directly).
_EVENTS_WITH_TEXT: Final = sa.text(
    "SELECT events.seq, events.kind, events.data, events.created_at, events_fts.text "
    "FROM events LEFT JOIN events_fts ON events_fts.rowid = events.id "
    "WHERE events.session_id = :session AND events.seq > :after "
    "ORDER BY events.seq LIMIT :limit"
)


def _event_step(
    conn: sa.Connection, f: Filters, pos: Position, out: _Page, mask: Mask
) -> Position | None:
    # Rows are stepped through one by one (never fetched all at once), so that a page
    # of big events holds no more of them than it returns.
    result = conn.execute(
        _EVENTS_WITH_TEXT,
        {"session": pos.unit, "after": int(pos.after), "limit": out.limit - len(out.records)},
    )
    try:
        found = False
        for seq, kind, data, created_at, text in result:
            found = True
            record: dict[str, Any] = {
                "type": "event",
                "session_id": pos.unit,
                "seq": seq,
                "kind": kind,
                "data": msgspec.Raw(data.encode()),
            }
            if text is not None:
                record["text"] = text
            record["created_at"] = created_at
            out.add(record)
            pos = Position("E", pos.project, pos.unit, str(seq))
            if out.full:
                break
    finally:
        result.close()
    return pos if found else Position("U", pos.project, pos.unit, "0")


def _usage_step(
    conn: sa.Connection, f: Filters, pos: Position, out: _Page, mask: Mask
) -> Position | None:
    rows = conn.execute(
        sa.select(turn_usage)
        .where(turn_usage.c.session_id == pos.unit, turn_usage.c.id > int(pos.after))
        .order_by(turn_usage.c.id)
        .limit(min(CHUNK, out.limit - len(out.records)))
    ).all()
    if not rows:
        return Position("S", pos.project, pos.unit)
    for row in rows:
        record = {"type": "usage", **row._asdict()}
        del record["id"], record["project_id"]
        out.add(record)
        pos = Position("U", pos.project, pos.unit, str(row.id))
        if out.full:
            break
    return pos


_STEPS: Final[dict[str, Callable[[sa.Connection, Filters, Position, _Page, Mask], Any]]] = {
    "P": _project_step,
    "R": _run_step,
    "RE": _run_event_step,
    "S": _session_step,
    "E": _event_step,
    "U": _usage_step,
}
