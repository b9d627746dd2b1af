"""ait42's session files as Mimir's export records, for ``mimirctl import --from ait42``.

ait42 keeps a ``WorktreeSession`` (camelCase JSON) per competition, ensemble or
debate: its ``instances`` (one agent in one worktree each) and its
``chatHistory``. Each becomes a run whose members are sessions, one per
instance (an ensemble's integration instance in the integration slot, 0), and
the chat becomes the members' journals: a user's message a ``prompt`` event, the
others ``message`` events. Nothing is lost: the whole session (but its instances
and chat) is kept in the run's ``imported`` event, each instance in its
session's ``imported`` event, and a message's fields beside its text
(``ait42``). Statuses are mapped (a session that was running or paused is
interrupted: nothing runs it here); the daemon checks every record as it checks
any import's.

Ids are made from ait42's ids and times, so that importing the same file twice
reports conflicts instead of making copies.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from dataclasses import dataclass
from typing import Any, Final

from mimirctl.client import loads
from mimird.wire.runs import INTEGRATION_SLOT

RUN_MODES: Final = ("competition", "ensemble", "debate")
#: ait42's SessionStatus → Mimir's run status.
RUN_STATUS: Final = {
    "running": "interrupted",
    "paused": "interrupted",
    "completed": "completed",
    "failed": "failed",
}
#: ait42's InstanceStatus → Mimir's session status.
SESSION_STATUS: Final = {
    "idle": "stopped",
    "running": "interrupted",
    "paused": "stopped",
    "completed": "completed",
    "failed": "failed",
    "archived": "archived",
}
#: ait42's InstanceStatus → how the run saw the member's work end.
MEMBER_OUTCOME: Final = {
    "idle": "pending",
    "running": "cancelled",
    "paused": "cancelled",
    "completed": "finished",
    "failed": "failed",
    "archived": "finished",
}
INTEGRATION_PHASES: Final = ("pending", "in_progress", "completed")
MAX_MEMBERS: Final = 16
_AGENT_NAME: Final = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_ALPHABET: Final = "0123456789abcdefghjkmnpqrstvwxyz"
#: How Mimir stores times (fixed width: they sort as text).
_STORED: Final = "%Y-%m-%dT%H:%M:%S.%fZ"


class Ait42Error(Exception):
    """The file is not what ait42 writes (the message names the field)."""


@dataclass(frozen=True)
class Converted:
    header: dict[str, Any]
    records: list[dict[str, Any]]


def _new_id(when_ms: int, *parts: str) -> str:
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    value = (when_ms << 80) | int.from_bytes(digest[:10], "big")
    return "".join(_ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise Ait42Error(f"{where}.{key} is missing or not a {getattr(kind, '__name__', kind)}")
    return value


def _opt(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    return None if obj.get(key) is None else _get(obj, key, kind, where)


def _time(text: Any, where: str) -> tuple[str, int]:
    """An ait42 time as Mimir stores times, and as milliseconds since the epoch."""
    if not isinstance(text, str):
        raise Ait42Error(f"{where} is not a time")
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise Ait42Error(f"{where} is not an ISO 8601 time: {text[:40]!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    when = when.astimezone(dt.UTC)
    if not 1970 <= when.year <= 9999:
        raise Ait42Error(f"{where} is out of range: {text[:40]!r}")
    return when.strftime(_STORED), int(when.timestamp() * 1000)


def _sessions(document: Any) -> list[Any]:
    if isinstance(document, list):
        return document
    if isinstance(document, dict) and isinstance(document.get("sessions"), list):
        return list(document["sessions"])
    if isinstance(document, dict) and "instances" in document:
        return [document]
    raise Ait42Error(
        "not an ait42 session file: expected a WorktreeSession, a list of them, "
        'or {"sessions": [...]}'
    )


def convert(data: bytes, project_path: str, projects: list[dict[str, Any]]) -> Converted:
    """The records for ait42's ``data``, in ``project_path``'s project (an existing
    one from ``projects``, matched by path, or a new one)."""
    try:
        document = loads(data)
    except ValueError as exc:
        raise Ait42Error(f"not JSON: {exc}") from None
    found = _sessions(document)
    if not found:
        raise Ait42Error("the file holds no session")
    records: list[dict[str, Any]] = []
    project_id = _project(project_path, projects, found, records)
    for index, session in enumerate(found):
        records.extend(_run(session, f"sessions[{index}]", project_id))
    header = {
        "format": "mimir-export",
        "version": 1,
        "schema": "ait42",
        "exported_at": dt.datetime.now(dt.UTC).strftime(_STORED),
        "filters": {"from": "ait42"},
    }
    return Converted(header, records)


def _project(
    path: str, projects: list[dict[str, Any]], sessions: list[Any], out: list[dict[str, Any]]
) -> str:
    for project in projects:
        if os.path.realpath(project.get("path", "")) == path:
            return str(project["id"])
    first = next((s for s in sessions if isinstance(s, dict)), {})
    try:
        created, created_ms = _time(first.get("createdAt"), "createdAt")
    except Ait42Error:  # said where the session is read
        now = dt.datetime.now(dt.UTC)
        created, created_ms = now.strftime(_STORED), int(now.timestamp() * 1000)
    names = {p.get("name") for p in projects}
    base = (os.path.basename(path) or "ait42")[:100]
    name = base
    counter = 1
    while name in names:
        counter += 1
        name = f"{base}-{counter}"
    project_id = _new_id(created_ms, "project", path)
    out.append(
        {
            "type": "project",
            "id": project_id,
            "name": name,
            "path": path,
            "project_type": "unknown",
            "is_git": os.path.exists(os.path.join(path, ".git")),
            "description": "imported from ait42",
            "config": {},
            "archived": False,
            "created_at": created,
            "updated_at": created,
        }
    )
    return project_id


def _run(session: Any, where: str, project_id: str) -> list[dict[str, Any]]:
    if not isinstance(session, dict):
        raise Ait42Error(f"{where} is not an object")
    ait42_id = _get(session, "id", str, where)
    mode = _get(session, "type", str, where)
    if mode not in RUN_MODES:
        raise Ait42Error(f"{where}.type is {mode[:40]!r}, not one of {', '.join(RUN_MODES)}")
    task = _get(session, "task", str, where)
    status = _get(session, "status", str, where)
    created, created_ms = _time(session.get("createdAt"), f"{where}.createdAt")
    updated, _ = _time(session.get("updatedAt", session.get("createdAt")), f"{where}.updatedAt")
    finished = None
    if session.get("completedAt") is not None:
        finished, _ = _time(session["completedAt"], f"{where}.completedAt")
    instances = _get(session, "instances", list, where)
    chat = _opt(session, "chatHistory", list, where) or []
    integration_id = _opt(session, "integrationInstanceId", int, where)
    if len(instances) > MAX_MEMBERS + 1:
        raise Ait42Error(f"{where} has {len(instances)} instances; a run has at most {MAX_MEMBERS}")
    run_id = _new_id(created_ms, "run", ait42_id)
    slots: dict[int, int] = {}
    next_slot = 1
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise Ait42Error(f"{where}.instances[{i}] is not an object")
        instance_id = _get(instance, "instanceId", int, f"{where}.instances[{i}]")
        if instance_id in slots:
            raise Ait42Error(f"{where}.instances[{i}].instanceId {instance_id} is repeated")
        if instance_id == integration_id:
            slots[instance_id] = INTEGRATION_SLOT
        else:
            slots[instance_id] = next_slot
            next_slot += 1
    if next_slot - 1 > MAX_MEMBERS:
        raise Ait42Error(f"{where} has more than {MAX_MEMBERS} members")
    winner = _opt(session, "winnerId", int, where)
    winner_slot = slots.get(winner) if winner is not None else None
    session_ids = {iid: _new_id(created_ms, "session", ait42_id, str(iid)) for iid in slots}
    member_results: dict[str, Any] = {}
    for instance in instances:
        result: dict[str, Any] = {
            "outcome": MEMBER_OUTCOME.get(str(instance.get("status")), "finished")
        }
        for ours, theirs in (
            ("files_changed", "filesChanged"),
            ("lines_added", "linesAdded"),
            ("lines_deleted", "linesDeleted"),
        ):
            value = instance.get(theirs)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                result[ours] = value
        member_results[str(slots[instance["instanceId"]])] = result
    phase = session.get("integrationPhase")
    records: list[dict[str, Any]] = [
        {
            "type": "run",
            "id": run_id,
            "project_id": project_id,
            "title": task.strip().split("\n", 1)[0][:100],
            "task": task,
            "mode": mode,
            "status": RUN_STATUS.get(status, "interrupted"),
            "judge": "user",
            "check_command": None,
            "config": {},
            "options": {"preserve_worktrees": session.get("preserveWorktrees") is True},
            "base_ref": None,
            "base_commit": None,
            "into": None,
            "round": 1,
            "winner_slot": winner_slot,
            "decision": None
            if winner_slot is None
            else {"winner": winner_slot, "by": "user", "reasons": "chosen in ait42"},
            "integration_phase": phase if phase in INTEGRATION_PHASES else None,
            "integration_session_id": session_ids.get(integration_id)
            if integration_id is not None
            else None,
            "member_results": member_results,
            "failure": None,
            "last_seq": 1,
            "created_at": created,
            "updated_at": updated,
            "finished_at": finished,
        },
        {
            "type": "run_event",
            "run_id": run_id,
            "seq": 1,
            "kind": "imported",
            "data": {
                "source": "ait42",
                "session": {
                    k: v for k, v in session.items() if k not in ("instances", "chatHistory")
                },
            },
            "created_at": created,
        },
    ]
    first_instance = instances[0]["instanceId"] if instances else None
    for i, instance in enumerate(instances):
        iid = instance["instanceId"]
        messages = [
            (n, m)
            for n, m in enumerate(chat)
            if isinstance(m, dict)
            and (
                m.get("instanceId") == iid
                or (m.get("instanceId") is None and iid == first_instance)
            )
        ]
        records.extend(
            _member(
                instance,
                f"{where}.instances[{i}]",
                session_ids[iid],
                slots[iid],
                run_id,
                project_id,
                task,
                (created, updated),
                messages,
                f"{where}.chatHistory",
            )
        )
    for n, message in enumerate(chat):
        if not isinstance(message, dict):
            raise Ait42Error(f"{where}.chatHistory[{n}] is not an object")
        target = message.get("instanceId")
        if target is not None and target not in slots:
            raise Ait42Error(f"{where}.chatHistory[{n}].instanceId {target!r} is no instance's")
    return records


def _member(
    instance: dict[str, Any],
    where: str,
    session_id: str,
    slot: int,
    run_id: str,
    project_id: str,
    task: str,
    times: tuple[str, str],
    messages: list[tuple[int, dict[str, Any]]],
    chat_where: str,
) -> list[dict[str, Any]]:
    agent_name = _get(instance, "agentName", str, where)
    runtime = instance.get("runtime")
    agent = runtime if isinstance(runtime, str) and _AGENT_NAME.match(runtime) else None
    if agent is None and _AGENT_NAME.match(agent_name):
        agent = agent_name
    status = str(instance.get("status"))
    created, updated = times
    if instance.get("startTime") is not None:
        created, _ = _time(instance["startTime"], f"{where}.startTime")
    ended = None
    if instance.get("endTime") is not None:
        ended, _ = _time(instance["endTime"], f"{where}.endTime")
    seconds = instance.get("executionTime")
    active_s = float(seconds) if isinstance(seconds, int | float) and seconds >= 0 else 0.0
    journal: list[dict[str, Any]] = [
        {
            "type": "event",
            "session_id": session_id,
            "seq": 1,
            "kind": "imported",
            "data": {"source": "ait42", "instance": instance},
            "created_at": created,
        }
    ]
    for n, message in messages:
        journal.append(_chat_event(message, f"{chat_where}[{n}]", session_id, len(journal) + 1))
    title = f"{agent_name} #{instance['instanceId']}"[:500]
    return [
        {
            "type": "session",
            "id": session_id,
            "project_id": project_id,
            "title": title,
            "status": SESSION_STATUS.get(status, "stopped"),
            "task": task,
            "agent": agent,
            "config": {},
            "workspace_kind": "worktree",
            "workspace_path": _opt(instance, "worktreePath", str, where) or "",
            "workspace_state": "ok",
            "branch": _opt(instance, "branch", str, where),
            "base_ref": None,
            "base_commit": None,
            "snapshot_ref": None,
            "snapshot_commit": None,
            "failure": None,
            "last_seq": len(journal),
            "agent_state": None,
            "completed_at": ended if status == "completed" else None,
            "active_s": active_s,
            "run_id": run_id,
            "slot": slot,
            "created_at": created,
            "updated_at": ended or updated,
        },
        *journal,
    ]


def _chat_event(message: dict[str, Any], where: str, session_id: str, seq: int) -> dict[str, Any]:
    content = _get(message, "content", str, where)
    role = _get(message, "role", str, where)
    created, _ = _time(message.get("timestamp"), f"{where}.timestamp")
    kept = {k: v for k, v in message.items() if k != "content"}
    if role == "user":
        kind = "prompt"
        data: dict[str, Any] = {"content": [{"type": "text", "text": content}], "ait42": kept}
    else:
        kind = "message"
        data = {
            "role": "agent" if role == "assistant" else role[:40],
            "text": content,
            "ait42": kept,
        }
        if isinstance(message.get("id"), str):
            data["message_id"] = message["id"][:200]
    return {
        "type": "event",
        "session_id": session_id,
        "seq": seq,
        "kind": kind,
        "data": data,
        "created_at": created,
        "text": content,
    }
