"""What a start does after mimird died without stopping (SIGKILL, power loss):
reap the processes it left, settle the workspace operations it had under way,
mark the sessions it cut short, and check every worktree against the disk.

Reaping: the process groups mimird had started (setup commands, agents,
terminals) may outlive it. Their group ids are stored; a stored id alone is not
proof (after a reboot the number may name someone else's processes), so a
process is killed only if it is in that group AND it is the session's: its
environment holds ``MIMIR_SESSION=<session id>`` (every child gets it, and
passes it on), or its working directory is inside the session's workspace.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import structlog
import trio

from mimird import journal
from mimird.agents import terminals
from mimird.processes import SESSION_ENV, group_members
from mimird.sessions import intents, records
from mimird.sessions.lifecycle import Sessions
from mimird.sessions.settle import settle_shielded
from mimird.sessions.states import AGENT_KEPT, AGENT_UP, IN_TURN, SETTING_UP
from mimird.store import Store
from mimird.wire import events

log = structlog.get_logger("mimird.sessions.recovery")


# ---- reaping ----------------------------------------------------------------------------


def _cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def _marked(pid: int, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return marker in f.read().split(b"\0")
    except OSError:
        return False


def leftovers(pgid: int, workspace: Path, session_id: str) -> list[int]:
    """Live processes of group ``pgid`` that are session ``session_id``'s: marked
    with its id, or working inside ``workspace``."""
    root = workspace.resolve()
    marker = f"{SESSION_ENV}={session_id}".encode()
    found = []
    for pid in group_members(pgid):
        cwd = _cwd(pid)
        inside = cwd is not None and (cwd == root or root in cwd.parents)
        if inside or _marked(pid, marker):
            found.append(pid)
    return found


def reap(pgid: int, workspace: Path, session_id: str) -> list[int]:
    """SIGKILL the leftovers of group ``pgid`` (see :func:`leftovers`); their pids."""
    killed = []
    for pid in leftovers(pgid, workspace, session_id):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        killed.append(pid)
    return killed


# ---- the start-up pass ------------------------------------------------------------------


async def _reap_all(store: Store) -> None:
    """Setup commands, agents and terminals the previous daemon started and did not stop."""
    # A budget_exceeded session keeps its agent up (a raised budget resumes it at once).
    for row in await store.read(
        records.in_status, tuple(sorted(SETTING_UP | AGENT_UP | AGENT_KEPT))
    ):
        if row.process_group is not None:
            killed = await trio.to_thread.run_sync(
                reap, row.process_group, Path(row.workspace_path), row.id
            )
            if killed:
                log.warning("orphan_processes_reaped", session_id=row.id, pids=killed)
    # Commands agents ran through Mimir (terminals), whatever their session's status.
    left = await store.read(terminals.recorded)
    for terminal in left:
        killed = await trio.to_thread.run_sync(
            reap, terminal.process_group, terminal.workspace, terminal.session_id
        )
        if killed:
            log.warning(
                "orphan_terminal_reaped",
                session_id=terminal.session_id,
                terminal=terminal.id,
                pids=killed,
            )
    if left:
        await store.write(terminals.forget_after_crash, left)


def _interrupt(conn: Any) -> list[str]:
    """Sessions cut short: a setup command fails, an agent's session is interrupted."""
    stuck = records.in_status(conn, tuple(sorted(SETTING_UP)))
    for row in stuck:
        records.transition(
            conn,
            row.id,
            "failed",
            action="recover",
            reason="daemon_stopped_during_setup",
            values={
                "failure": "mimird stopped while the setup command was running",
                "process_group": None,
            },
        )
    running = records.in_status(conn, tuple(sorted(AGENT_UP)))
    for row in running:
        facts: list[journal.Fact] = []
        if row.status in IN_TURN:
            facts.append(events.TurnEnded(stop_reason="interrupted"))
        records.transition(
            conn,
            row.id,
            "interrupted",
            action="recover",
            reason="daemon_restarted",
            values={"process_group": None},
            events=facts,
        )
    for row in records.in_status(conn, tuple(AGENT_KEPT)):
        if row.process_group is not None:  # reaped: the session stays budget_exceeded
            records.update(conn, row.id, {"process_group": None})
    return [row.id for row in stuck + running]


async def recover(store: Store, sessions: Sessions) -> dict[str, int]:
    """At start-up, before anything else runs: reap what the previous daemon left,
    settle its half-made workspace operations (see :mod:`.settle`), mark the
    sessions it cut short, and check every worktree against the disk and git.
    Returns how many worktrees are in each state.

    Cancellation: each step is recorded as it goes; a start cancelled here (a
    stop during start-up) leaves the rest to the next start, which does it again."""
    await _reap_all(store)
    for intent in await store.read(intents.pending):
        await settle_shielded(store, sessions.workspaces, intent, after_crash=True)
    recovered = await store.write(_interrupt)
    if recovered:
        log.warning("sessions_recovered", sessions=recovered)
    states: dict[str, int] = {}
    for row in await store.read(records.with_workspaces, None):
        if row.status == "deleted" or row.workspace_state == "removed":
            continue
        row, _ = await sessions.check_workspace(row)
        states[row.workspace_state] = states.get(row.workspace_state, 0) + 1
    return states
