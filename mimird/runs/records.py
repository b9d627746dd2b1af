"""Runs: the records (database functions); the state machine is :mod:`.states`.

Plain sync functions taking a connection (run by the store in a worker thread).
Every status change goes through :func:`transition`, which refuses illegal ones
and journals the legal ones in the run's own journal in the same transaction;
what the run learns of a member goes through :func:`set_member`, with its event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import sqlalchemy as sa

from mimird.errors import NotFound
from mimird.journal.run_events import append_run
from mimird.policy import mask_config
from mimird.runs.states import check_run_transition
from mimird.sessions import records as sessions_
from mimird.sessions import usage
from mimird.sessions.records import SessionRow
from mimird.store import lookup
from mimird.store.schema import projects, runs, sessions
from mimird.timeutil import utc_now
from mimird.wire.run_events import RunEventData, RunStatusChanged
from mimird.wire.runs import (
    Run,
    RunBudget,
    RunCheck,
    RunDecision,
    RunMember,
    RunStatus,
    RunTotals,
)
from mimird.wire.usage import Usage

#: Where the check of a run's integration session (ensemble) is kept and journaled:
#: slot 0, which no member has.
INTEGRATION_SLOT: Final = "0"
#: The JSON columns, decoded in :class:`RunRow`.
_JSON: Final = ("config", "options", "member_results")


@dataclass(frozen=True, slots=True)
class RunRow:
    """A run as stored (raw config), for the daemon's own use."""

    id: str
    project_id: str
    project_name: str
    project_path: str
    title: str
    task: str
    mode: str
    status: RunStatus
    judge: str
    check_command: str | None
    config: dict[str, Any]
    options: dict[str, Any]
    base_ref: str | None
    base_commit: str | None
    into: str | None
    round: int
    winner_slot: int | None
    decision: dict[str, Any] | None
    integration_phase: str | None
    integration_session_id: str | None
    member_results: dict[str, dict[str, Any]]
    failure: str | None
    last_seq: int
    created_at: str
    updated_at: str
    finished_at: str | None

    def member(self, slot: int) -> dict[str, Any]:
        """What the run knows of the member in ``slot`` (outcome, check, stats)."""
        return self.member_results.get(str(slot), {})

    @property
    def slots(self) -> list[int]:
        """The members' slots (slot 0, an integration session's check, is not one)."""
        return sorted(int(slot) for slot in self.member_results if slot != INTEGRATION_SLOT)

    @property
    def recorded_slots(self) -> list[int]:
        """Every slot the run keeps a record of: the members', and 0 once an
        ensemble's integration session exists."""
        return sorted(int(slot) for slot in self.member_results)

    @property
    def pickable(self) -> list[int]:
        """The slots run.pick may choose: the members', and 0 once an ensemble's
        integration session finished its work."""
        return [*([0] if self.integration_phase == "completed" else []), *self.slots]


_RUN_COLUMNS: Final = tuple(c.name for c in runs.columns)
_select = sa.select(
    runs, projects.c.name.label("project_name"), projects.c.path.label("project_path")
).select_from(runs.join(projects, projects.c.id == runs.c.project_id))


def _row(row: Any) -> RunRow:
    values = dict(row._mapping)
    for name in _JSON:
        values[name] = msgspec.json.decode(values[name])
    values["decision"] = msgspec.json.decode(values["decision"]) if values["decision"] else None
    return RunRow(**values)


def find(conn: sa.Connection, ref: str) -> RunRow:
    """A run by id or unique id prefix (case-insensitive)."""
    return _row(lookup.by_id_or_prefix(conn, _select, runs.c.id, ref, "run"))


def get(conn: sa.Connection, run_id: str) -> RunRow:
    return find(conn, run_id)


def _encoded(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for name in (*_JSON, "decision"):
        if name in out and out[name] is not None:
            out[name] = msgspec.json.encode(out[name]).decode()
    return out


def insert(conn: sa.Connection, values: dict[str, Any], *facts: RunEventData) -> RunRow:
    """Insert a run (journaling ``facts`` as its first events)."""
    now = utc_now()
    conn.execute(
        sa.insert(runs).values(**_encoded(values), created_at=now, updated_at=now, last_seq=0)
    )
    for fact in facts:
        append_run(conn, values["id"], fact)
    return get(conn, values["id"])


def update(
    conn: sa.Connection, run_id: str, values: dict[str, Any], *facts: RunEventData
) -> RunRow:
    """Change columns of a run, journaling ``facts`` with the change."""
    result = conn.execute(
        sa.update(runs).where(runs.c.id == run_id).values(**_encoded(values), updated_at=utc_now())
    )
    if result.rowcount == 0:
        raise NotFound(f"run {run_id} no longer exists", field="run", id=run_id)
    for fact in facts:
        append_run(conn, run_id, fact)
    return get(conn, run_id)


def transition(
    conn: sa.Connection,
    run_id: str,
    target: RunStatus,
    *,
    action: str,
    values: dict[str, Any] | None = None,
    facts: Sequence[RunEventData] = (),
    only_from: frozenset[str] | None = None,
) -> RunRow:
    """Move a run to ``target`` (checked against TRANSITIONS), journaled after
    ``facts``; with ``only_from``, a run in another status is left as it is (the
    facts are journaled all the same)."""
    current = get(conn, run_id)
    if only_from is not None and current.status not in only_from:
        return update(conn, run_id, {}, *facts) if facts else current
    if current.status == target:
        return update(conn, run_id, values or {}, *facts)
    check_run_transition(run_id, current.status, target, action)
    changes = {**(values or {}), "status": target}
    if target in ("completed", "cancelled", "failed"):
        changes.setdefault("finished_at", utc_now())
    changed = RunStatusChanged(from_=current.status, to=target)
    return update(conn, run_id, changes, *facts, changed)


def set_member(
    conn: sa.Connection,
    run_id: str,
    slot: int,
    changes: dict[str, Any],
    *facts: RunEventData,
) -> RunRow:
    """Merge ``changes`` into what the run knows of the member in ``slot``."""
    row = get(conn, run_id)
    results = dict(row.member_results)
    results[str(slot)] = {**results.get(str(slot), {}), **changes}
    return update(conn, run_id, {"member_results": results}, *facts)


def member_sessions(conn: sa.Connection, run_id: str) -> list[tuple[int, SessionRow]]:
    """The run's member sessions, by slot."""
    return [(row.slot, row) for row in sessions_.of_run(conn, run_id) if row.slot is not None]


def member_session(conn: sa.Connection, run_id: str, slot: int) -> SessionRow | None:
    """The run's member session in ``slot``, if there is one."""
    found = sessions_.of_run(conn, run_id, slot)
    return found[0] if found else None


def set_membership(conn: sa.Connection, session_id: str, run_id: str, slot: int | None) -> None:
    conn.execute(
        sa.update(sessions).where(sessions.c.id == session_id).values(run_id=run_id, slot=slot)
    )


def delete(conn: sa.Connection, run_id: str) -> None:
    """Remove the run and its journal (its members' sessions stay, without the run)."""
    conn.execute(sa.delete(runs).where(runs.c.id == run_id))


def in_status(conn: sa.Connection, statuses: Sequence[str]) -> list[RunRow]:
    return [_row(r) for r in conn.execute(_select.where(runs.c.status.in_(list(statuses))))]


def list_page(
    conn: sa.Connection,
    *,
    project_id: str | None,
    statuses: Sequence[str] | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Run], str | None]:
    """A page of runs, newest first; the cursor is the last id when there is more."""
    query = _select
    if project_id is not None:
        query = query.where(runs.c.project_id == project_id)
    if statuses:
        query = query.where(runs.c.status.in_(list(statuses)))
    if cursor is not None:
        query = query.where(runs.c.id < cursor.lower())
    rows = [_row(r) for r in conn.execute(query.order_by(runs.c.id.desc()).limit(limit + 1))]
    page = [to_wire(conn, row) for row in rows[:limit]]
    return page, (page[-1].id if len(rows) > limit else None)


# ---- the wire form ----------------------------------------------------------------------


def _seconds(start: str, end: str | None) -> float:
    def parse(stamp: str) -> dt.datetime:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))

    finish = parse(end) if end is not None else dt.datetime.now(dt.UTC)
    return round(max((finish - parse(start)).total_seconds(), 0.0), 3)


def _member(slot: int, session: SessionRow, known: dict[str, Any], used: Usage) -> RunMember:
    check = known.get("check")
    return RunMember(
        slot=slot,
        agent=session.agent or "",
        session_id=session.id,
        status=session.status,
        outcome=known.get("outcome", "pending"),
        reason=known.get("reason"),
        stop_reason=known.get("stop_reason"),
        branch=session.branch,
        active_s=session.active_s,
        usage=used,
        files_changed=known.get("files_changed"),
        lines_added=known.get("lines_added"),
        lines_deleted=known.get("lines_deleted"),
        check=None if check is None else msgspec.convert(check, RunCheck),
    )


def to_wire(conn: sa.Connection, row: RunRow) -> Run:
    """The run as run.get answers it: its members and totals read with it."""
    members = [
        _member(slot, session, row.member(slot), usage.of_session(conn, session.id))
        for slot, session in member_sessions(conn, row.id)
    ]
    member_ids = {m.session_id for m in members}
    extra_usage = Usage()
    for session_id in session_ids(conn, row.id):
        if session_id not in member_ids:
            of = usage.of_session(conn, session_id)
            extra_usage.total_tokens += of.total_tokens
            extra_usage.cost_usd += of.cost_usd
    budget = row.options.get("run_budget")
    return Run(
        id=row.id,
        project_id=row.project_id,
        project=row.project_name,
        title=row.title,
        task=row.task,
        mode=row.mode,  # type: ignore[arg-type]
        status=row.status,
        judge=row.judge,  # type: ignore[arg-type]
        check_command=row.check_command,
        config=mask_config(row.config),
        base_ref=row.base_ref,
        base_commit=row.base_commit,
        into=row.into,
        merge=row.options.get("merge", "auto"),
        preserve_worktrees=bool(row.options.get("preserve_worktrees", False)),
        run_budget=None if budget is None else msgspec.convert(budget, RunBudget),
        rounds=int(row.options.get("rounds", 1)),
        round=row.round,
        then=row.options.get("then", "decide"),
        winner=row.winner_slot,
        decision=None if row.decision is None else msgspec.convert(row.decision, RunDecision),
        integration_phase=row.integration_phase,  # type: ignore[arg-type]
        integration_session_id=row.integration_session_id,
        failure=row.failure,
        members=members,
        totals=RunTotals(
            total_duration=_seconds(row.created_at, row.finished_at),
            total_files_changed=sum(m.files_changed or 0 for m in members),
            total_lines_added=sum(m.lines_added or 0 for m in members),
            total_lines_deleted=sum(m.lines_deleted or 0 for m in members),
            total_tokens=sum(m.usage.total_tokens for m in members) + extra_usage.total_tokens,
            total_cost_usd=round(sum(m.usage.cost_usd for m in members) + extra_usage.cost_usd, 6),
        ),
        last_seq=row.last_seq,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
    )


def session_ids(conn: sa.Connection, run_id: str) -> list[str]:
    """Every session of the run: its members and its other sessions (a judge, an
    integration session: run_id set, no slot)."""
    return list(
        conn.execute(
            sa.select(sessions.c.id).where(sessions.c.run_id == run_id).order_by(sessions.c.id)
        ).scalars()
    )


def used(conn: sa.Connection, row: RunRow) -> Usage:
    """What the run's sessions used so far, as stored (turns ended)."""
    ids = session_ids(conn, row.id)
    if row.integration_session_id and row.integration_session_id not in ids:
        ids.append(row.integration_session_id)
    total = Usage()
    for session_id in ids:
        of = usage.of_session(conn, session_id)
        total.total_tokens += of.total_tokens
        total.cost_usd += of.cost_usd
    return total
