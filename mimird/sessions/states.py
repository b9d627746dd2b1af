"""The session state machine: every status, which may follow which, and the named
groups of statuses the rest of the daemon asks about, in this one place.

The statuses themselves are the wire's :data:`~mimird.wire.types.SessionStatus`
(clients see them); this module says what they mean to the daemon.
"""

from __future__ import annotations

from typing import Final, get_args

from mimird.errors import InvalidState
from mimird.wire.types import SessionStatus, WorkspaceState

#: Every status a session can have.
ALL: Final[frozenset[str]] = frozenset(get_args(SessionStatus))

#: Which status may follow which. Anything else is an "invalid state" error.
TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    # Not deleted while its setup command runs: the worktree would go from under it.
    "preparing": frozenset({"created", "failed", "interrupted"}),
    "created": frozenset({"starting", "stopped", "completed", "archived", "deleted"}),
    "starting": frozenset({"idle", "failed", "stopped", "interrupted"}),
    # starting again: the agent exited and is being restarted.
    # Archived or deleted: the agent is stopped first (the sessions owner).
    "idle": frozenset(
        {
            "running",
            "starting",
            "stopped",
            "failed",
            "interrupted",
            "budget_exceeded",
            "completed",
            "archived",
            "deleted",
        }
    ),
    # Not completed while a turn runs: session.complete asks to cancel it first.
    "running": frozenset(
        {
            "idle",
            "awaiting_permission",
            "starting",
            "stopped",
            "failed",
            "interrupted",
            "budget_exceeded",
        }
    ),
    "awaiting_permission": frozenset(
        {"running", "idle", "starting", "stopped", "failed", "interrupted"}
    ),
    "stopped": frozenset({"starting", "completed", "archived", "deleted"}),
    "failed": frozenset({"starting", "completed", "archived", "deleted"}),
    "interrupted": frozenset({"starting", "stopped", "completed", "archived", "deleted"}),
    # idle: its budget was raised and it resumed with its agent still up.
    "budget_exceeded": frozenset(
        {"idle", "starting", "stopped", "completed", "archived", "deleted"}
    ),
    # Resumed (starting, then idle), or put away as any other session.
    "completed": frozenset({"starting", "archived", "deleted"}),
    "archived": frozenset({"created", "deleted"}),
    "deleted": frozenset({"created"}),
}
assert set(TRANSITIONS) == ALL, "every status has its row in TRANSITIONS"

#: The workspace is being made and the setup command runs.
SETTING_UP: Final = frozenset({"preparing"})
#: Statuses in which an agent may be working in the workspace.
ACTIVE: Final = frozenset({"starting", "running", "awaiting_permission"})
#: Statuses in which the session's agent process is up (or coming up).
AGENT_UP: Final = frozenset({"starting", "idle", "running", "awaiting_permission"})
#: The agent's process may still be up though it takes no prompts (kept for a resume
#: once the budget is raised): start-up recovery reaps it too.
AGENT_KEPT: Final = frozenset({"budget_exceeded"})
#: The agent is past its handshake: it takes prompts, or works on one.
AGENT_READY: Final = AGENT_UP - {"starting"}
#: A turn is in progress: a crash ends it as interrupted.
IN_TURN: Final = frozenset({"running", "awaiting_permission"})
#: Sessions whose workspace is still needed, whatever its state.
LIVE: Final = ALL - {"deleted"}
#: Statuses from which session.restore brings a session back.
RESTORABLE: Final = frozenset({"archived", "deleted"})
#: Statuses from which a prompt starts the agent by itself.
STARTS_ON_PROMPT: Final = frozenset({"created", "stopped", "interrupted"})
#: Statuses from which session.resume starts the agent.
RESUMABLE: Final = frozenset(
    {"created", "stopped", "interrupted", "failed", "budget_exceeded", "completed"}
)
#: Statuses from which session.complete completes a session (its agent, if up, stopped).
COMPLETABLE: Final = frozenset(s for s, nexts in TRANSITIONS.items() if "completed" in nexts)

#: Every state a workspace can be in.
WORKSPACE_STATES: Final[frozenset[str]] = frozenset(get_args(WorkspaceState))
#: Workspace states in which the files at the session's path are its own.
USABLE_WORKSPACE: Final = frozenset({"ok"})
#: Workspace states in which something else is at (or moved) the session's place:
#: removing it needs force.
FOREIGN_WORKSPACE: Final = frozenset({"moved", "wrong_branch", "not_a_worktree"})
#: Workspace states in which nothing at the session's path is Mimir's to remove: gone
#: already, or never made by this mimird (an import's).
NOTHING_TO_REMOVE: Final = frozenset({"removed", "foreign"})


def check_transition(session_id: str, current: str, target: str, action: str) -> None:
    """Raise invalid_state unless ``current`` → ``target`` is a legal move."""
    if target not in TRANSITIONS.get(current, frozenset()):
        allowed = ", ".join(sorted(s for s, nexts in TRANSITIONS.items() if target in nexts))
        raise InvalidState(
            f"cannot {action} session {session_id}: it is {current} (possible only when {allowed})",
            field="session",
            id=session_id,
            detail={"status": current, "wanted": target},
        )
