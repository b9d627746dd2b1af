"""The run state machine: every status, which may follow which, and the groups of
statuses the rest of the daemon asks about. The statuses are the wire's
:data:`~mimird.wire.runs.RunStatus`."""

from __future__ import annotations

from typing import Final, get_args

from mimird.errors import InvalidState
from mimird.wire.runs import RunStatus

ALL: Final[frozenset[str]] = frozenset(get_args(RunStatus))

_ENDS: Final = frozenset({"failed", "cancelled"})

#: Which status may follow which. Anything else is an "invalid state" error.
TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "starting": frozenset({"running"}) | _ENDS | {"interrupted"},
    # running again: the next round of a debate.
    "running": frozenset(
        {"running", "checking", "judging", "deciding", "integrating", "interrupted"}
    )
    | _ENDS,
    "checking": frozenset(
        {"running", "judging", "deciding", "decided", "integrating", "completed", "interrupted"}
    )
    | _ENDS,
    "judging": frozenset({"deciding", "decided", "integrating", "interrupted"}) | _ENDS,
    "deciding": frozenset({"decided", "integrating", "judging", "completed"}) | _ENDS,
    "decided": frozenset({"integrating", "completed"}) | _ENDS,
    # checking: an ensemble's result is checked too.
    "integrating": frozenset({"checking", "decided", "completed", "interrupted"}) | _ENDS,
    "completed": frozenset(),
    "cancelled": frozenset(),
    "failed": frozenset(),
    "interrupted": frozenset({"running", "checking", "judging", "deciding", "integrating"} | _ENDS),
}
assert set(TRANSITIONS) == ALL, "every run status has its row in TRANSITIONS"

#: The run is over: nothing more happens to it (run.delete may remove it).
FINISHED: Final = frozenset({"completed", "cancelled", "failed"})
#: The orchestrator has work to do for it (members' turns, checks, a judge, an integration).
WORKING: Final = frozenset({"starting", "running", "checking", "judging", "integrating"})
#: Waiting for the user: run.pick, run.integrate, run.resume.
WAITING: Final = frozenset({"deciding", "decided", "interrupted"})


def check_run_transition(run_id: str, current: str, target: str, action: str) -> None:
    """Raise invalid_state unless ``current`` → ``target`` is a legal move."""
    if target not in TRANSITIONS.get(current, frozenset()):
        allowed = ", ".join(sorted(s for s, nexts in TRANSITIONS.items() if target in nexts))
        raise InvalidState(
            f"cannot {action} run {run_id}: it is {current}"
            + (f" (possible only when {allowed})" if allowed else ""),
            field="run",
            id=run_id,
            detail={"status": current, "wanted": target},
        )
