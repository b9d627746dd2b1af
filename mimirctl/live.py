"""What ``mimirctl top`` shows, as plain data: every session and run, kept up to
date from the journal's events (no curses here, so that it is tested as data).

:class:`LiveView` is filled from ``session.list``/``session.get``, ``run.list`` and
``permission.list`` once, then moved by each event of an all-sessions
subscription (:meth:`LiveView.apply`). An event that changes what only the
daemon can tell (a new session, the diff and usage after a turn) names the
session to read again (``session.get``). Every string that came from the daemon
(titles, names, permission titles) is made :func:`~mimirctl.render.visible` when
it is stored, so that no agent's text reaches the terminal raw.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mimirctl import render

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see mimirctl.cli)
if TYPE_CHECKING:
    from typing import Any, Final

#: Statuses in which a turn is under way (its time is counted).
IN_TURN: Final = frozenset({"running", "awaiting_permission"})
#: Statuses that take a session out of the view.
GONE: Final = frozenset({"archived", "deleted"})


def _epoch(timestamp: Any) -> float | None:
    if not isinstance(timestamp, str):
        return None
    try:
        return render.parse_timestamp(timestamp).timestamp()
    except ValueError:
        return None


def _text(value: Any) -> str:
    return render.visible(value) if isinstance(value, str) else ""


@dataclass
class SessionLine:
    id: str
    title: str = ""
    project: str = ""
    agent: str = ""
    status: str = "?"
    #: When the current turn started (epoch seconds), None between turns.
    turn_started: float | None = None
    tokens: int = 0
    files: int = 0
    insertions: int = 0
    deletions: int = 0
    run_id: str | None = None
    slot: int | None = None
    created_at: str = ""
    #: Pending permission requests: id -> title.
    pending: dict[str, str] = field(default_factory=dict)

    def fill(self, session: dict[str, Any]) -> None:
        """From a ``session.list`` or ``session.get`` result."""
        self.title = _text(session.get("title")) or _text(session.get("task"))
        self.project = _text(session.get("project"))
        self.agent = _text(session.get("agent")) or "-"
        self.set_status(_text(session.get("status")) or "?", _epoch(session.get("updated_at")))
        self.run_id = session.get("run_id") if isinstance(session.get("run_id"), str) else None
        self.slot = session.get("slot") if isinstance(session.get("slot"), int) else None
        self.created_at = _text(session.get("created_at"))
        if isinstance(usage := session.get("usage"), dict):
            self.tokens = int(usage.get("total_tokens") or 0)
        if isinstance(git := session.get("git"), dict):
            self.files = int(git.get("files_changed") or 0)
            self.insertions = int(git.get("insertions") or 0)
            self.deletions = int(git.get("deletions") or 0)

    def set_status(self, status: str, at: float | None) -> None:
        if status in IN_TURN and self.turn_started is None:
            self.turn_started = at if at is not None else time.time()
        elif status not in IN_TURN:
            self.turn_started = None
        self.status = status

    def turn_time(self, now: float) -> str:
        if self.turn_started is None:
            return "-"
        return render.duration(max(0.0, now - self.turn_started))

    def diff(self) -> str:
        if not self.files:
            return "-"
        return f"{self.files}f +{self.insertions} -{self.deletions}"


@dataclass
class RunLine:
    id: str
    title: str = ""
    mode: str = ""
    status: str = ""
    members: list[str] = field(default_factory=list)


@dataclass
class Row:
    """One line of the view: a run's header (``run`` set) or a session."""

    session: SessionLine | None = None
    run: RunLine | None = None
    #: A member of the run above (shown indented).
    member: bool = False


class LiveView:
    def __init__(self) -> None:
        self.sessions: dict[str, SessionLine] = {}
        self.runs: dict[str, RunLine] = {}

    # ---- filling ------------------------------------------------------------------

    def add_session(self, session: dict[str, Any]) -> None:
        session_id = session.get("id")
        if not isinstance(session_id, str):
            return
        if session.get("status") in GONE:
            self.sessions.pop(session_id, None)
            return
        line = self.sessions.get(session_id) or SessionLine(session_id)
        line.fill(session)
        self.sessions[session_id] = line

    def add_run(self, run: dict[str, Any]) -> None:
        run_id = run.get("id")
        if not isinstance(run_id, str):
            return
        members = [m["session_id"] for m in run.get("members") or [] if "session_id" in m]
        self.runs[run_id] = RunLine(
            run_id,
            title=_text(run.get("title")) or _text(run.get("task")),
            mode=_text(run.get("mode")),
            status=_text(run.get("status")),
            members=[m for m in members if isinstance(m, str)],
        )

    def set_permissions(self, permissions: list[dict[str, Any]]) -> None:
        for line in self.sessions.values():
            line.pending.clear()
        for permission in permissions:
            waiting = self.sessions.get(permission.get("session_id", ""))
            if waiting is not None:
                waiting.pending[str(permission.get("id"))] = _permission_title(permission)

    # ---- events -------------------------------------------------------------------

    def apply(self, event: dict[str, Any]) -> str | None:
        """Move the view by one event; the id of a session to read again
        (``session.get``), if the event calls for it."""
        session_id = event.get("session_id")
        kind = event.get("kind")
        data = event.get("data")
        if not isinstance(session_id, str) or not isinstance(data, dict):
            return None
        line = self.sessions.get(session_id)
        if line is None:
            # A session the view does not know yet (made after the list): read it,
            # unless the event is the one that ends it.
            if kind == "status_changed" and data.get("to") in GONE:
                return None
            return session_id
        at = _epoch(event.get("created_at"))
        if kind == "status_changed":
            target = _text(data.get("to"))
            if target in GONE:
                del self.sessions[session_id]
                return None  # (a member archived: its run is read with the others')
            line.set_status(target, at)
            # A member's move may be its run's: read both again (top's refresh does).
            return session_id if line.run_id is not None else None
        elif kind == "prompt":
            line.turn_started = at if at is not None else time.time()
        elif kind == "permission_requested":
            policy = data.get("policy")
            decided = isinstance(policy, dict) and policy.get("decision") in ("allow", "deny")
            if not decided:
                line.pending[str(data.get("permission"))] = _permission_title(data)
        elif kind in ("permission_answered", "permission_decided"):
            line.pending.pop(str(data.get("permission")), None)
        elif kind == "turn_ended":
            line.turn_started = None
            line.pending.clear()
            return session_id  # its usage and diff, summed by the daemon
        elif kind in ("session_updated", "workspace_state_changed"):
            return session_id
        return None

    # ---- rows ---------------------------------------------------------------------

    def rows(self) -> list[Row]:
        """Runs first (newest first), each followed by its members by slot; then the
        sessions of no run, newest first."""
        rows: list[Row] = []
        shown: set[str] = set()
        for run in sorted(self.runs.values(), key=lambda r: r.id, reverse=True):
            members = [
                line
                for line in self.sessions.values()
                if line.run_id == run.id or line.id in run.members
            ]
            if not members:
                continue
            rows.append(Row(run=run))
            for line in sorted(members, key=lambda m: (m.slot is None, m.slot or 0, m.id)):
                rows.append(Row(session=line, member=True))
                shown.add(line.id)
        alone = [line for line in self.sessions.values() if line.id not in shown]
        for line in sorted(alone, key=lambda m: (m.created_at, m.id), reverse=True):
            rows.append(Row(session=line))
        return rows


def _permission_title(permission: dict[str, Any]) -> str:
    title = permission.get("title")
    if not isinstance(title, str):
        tool_call = permission.get("tool_call")
        title = tool_call.get("title") if isinstance(tool_call, dict) else None
    return render.visible(title) if isinstance(title, str) else "(no title)"
