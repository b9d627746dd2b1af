"""Params and results of the ``run.*`` methods: a run is one task given to several
member sessions at once (competition, ensemble, debate), compared, checked and
decided.

Standard library and msgspec only: ``mimirctl`` imports this module.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from mimird.wire.types import (
    AgentName,
    BranchName,
    ConfigObject,
    GitName,
    ListCursor,
    Params,
    PositiveCount,
    ProjectRef,
    Result,
    SessionStatus,
    Task,
    TemplatePrompt,
    Title,
)
from mimird.wire.usage import Usage

#: The most members a run may have.
MAX_MEMBERS: Final = 16
#: The most rounds of a debate.
MAX_ROUNDS: Final = 10

RunMode = Literal["competition", "ensemble", "debate"]
#: Who decides the winner: the user (``run.pick``), the checks, or a judge agent.
RunJudge = Literal["user", "checks", "agent"]
RunStatus = Literal[
    "starting",  # members being made
    "running",  # members' turns running
    "checking",  # check commands running
    "judging",  # a judge agent is deciding (judge "agent")
    "deciding",  # waiting for run.pick
    "decided",  # a winner, waiting for run.integrate (merge "manual", or it failed)
    "integrating",  # the winner (or the ensemble's result) being brought home
    "completed",
    "cancelled",
    "failed",
    "interrupted",  # the daemon went away mid-run; run.resume goes on
]
#: How one member's work ended, as the run saw it.
MemberOutcome = Literal[
    "pending",  # not started yet
    "working",  # its turn runs
    "finished",  # its turn ended (stop_reason says how)
    "failed",  # its agent could not start, or its turn failed
    "budget_exceeded",  # its own budget, or the run's
    "cancelled",
    "interrupted",
]
IntegrationPhase = Literal["pending", "in_progress", "completed"]
MemberCount = Annotated[int, Meta(ge=1, le=MAX_MEMBERS)]
Slot = Annotated[int, Meta(ge=1, le=MAX_MEMBERS)]
RunRef = Annotated[
    str,
    Meta(
        min_length=4, max_length=64, description="A run's id, or a unique prefix of it (4+ chars)."
    ),
]
CheckCommand = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=10_000,
        pattern=r"^[^\x00]*[^\x00\s][^\x00]*$",
        description="A shell command run in each member's worktree (/bin/sh -c).",
    ),
]
Reason = Annotated[str, Meta(max_length=10_000)]


class RunBudget(Params):
    """What the whole run may use, summed over its members (and its judge or
    integration session): reaching either cancels every member's turn."""

    tokens: PositiveCount | None = None
    cost_usd: Annotated[float, Meta(gt=0, le=1_000_000)] | None = None


class RunCreateParams(Params):
    project: ProjectRef
    task: Annotated[Task, Meta(min_length=1)]
    title: Title = ""
    mode: RunMode = "competition"
    #: One agent kind per slot ...
    agents: Annotated[list[AgentName], Meta(min_length=1, max_length=MAX_MEMBERS)] | UnsetType = (
        UNSET
    )
    #: ... or one kind, n times.
    agent: AgentName | UnsetType = UNSET
    n: MemberCount | UnsetType = UNSET
    base_ref: GitName | UnsetType = UNSET
    #: Session config overrides every member gets (layered as any session's).
    config: ConfigObject = msgspec.field(default_factory=dict)
    check_command: CheckCommand | UnsetType = UNSET
    judge: RunJudge = "user"
    #: The prompt each member gets: the task (default), or a template with vars.
    template: TemplatePrompt | UnsetType = UNSET
    #: The branch the winner is integrated into (default: the branch base_ref names).
    into: BranchName | UnsetType = UNSET
    #: "auto": integrate the winner once decided; "manual": wait for run.integrate.
    merge: Literal["auto", "manual"] = "auto"
    #: Keep the losers' worktrees as they are (else archived, their work snapshotted).
    preserve_worktrees: bool = False
    run_budget: RunBudget | UnsetType = UNSET
    #: debate: how many rounds (the first is as competition).
    rounds: Annotated[int, Meta(ge=1, le=MAX_ROUNDS)] | UnsetType = UNSET
    #: debate: after the last round, decide (as competition) or integrate (as ensemble).
    then: Literal["decide", "ensemble"] = "decide"
    #: The agent kind of the judge session (judge "agent"; default: the first member's).
    judge_agent: AgentName | UnsetType = UNSET
    #: The agent kind of the integration session (ensemble; default: the first member's).
    integration_agent: AgentName | UnsetType = UNSET


class RunRefParams(Params):
    run: RunRef


class RunListParams(Params):
    project: ProjectRef | UnsetType = UNSET
    status: list[RunStatus] | UnsetType = UNSET
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100
    cursor: ListCursor | UnsetType = UNSET


class RunPickParams(Params):
    run: RunRef
    slot: Slot
    #: Why (recorded in the decision).
    reason: Reason | UnsetType = UNSET


class RunDeleteParams(Params):
    run: RunRef
    #: Cancel a run that is still working first (its members are snapshotted all the same).
    force: bool = False


class RunEventsParams(Params):
    run: RunRef
    after: Annotated[int, Meta(ge=0)] = 0
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100


class RunSubscribeParams(Params):
    run: RunRef
    #: The seq of the last event already seen; absent: only new events.
    after: Annotated[int, Meta(ge=0)] | UnsetType = UNSET


# ---- results -------------------------------------------------------------------------


class RunCheck(Result):
    """A member's check command, as it ended."""

    #: None when it was stopped (timed out, cancelled) or could not start.
    exit_code: int | None
    passed: bool
    #: The last non-empty line of its output.
    summary: str
    duration_s: float
    timed_out: bool = False


class RunMember(Result):
    slot: int
    agent: str
    session_id: str
    #: The member session's status.
    status: SessionStatus
    outcome: MemberOutcome
    #: Why it failed or stopped, when it did.
    reason: str | None = None
    stop_reason: str | None = None
    branch: str | None = None
    #: Seconds spent in turns.
    active_s: float = 0.0
    usage: Usage = msgspec.field(default_factory=Usage)
    #: Against the run's base commit (its branch, once committed), None until known.
    files_changed: int | None = None
    lines_added: int | None = None
    lines_deleted: int | None = None
    check: RunCheck | None = None


class RunDecision(Result):
    winner: int | None
    by: Literal["user", "checks", "agent"]
    reasons: str


class RunTotals(Result):
    #: Seconds from the run's creation to its end (or to now).
    total_duration: float
    total_files_changed: int
    total_lines_added: int
    total_lines_deleted: int
    total_tokens: int
    total_cost_usd: float


class Run(Result):
    id: str
    project_id: str
    project: str
    title: str
    task: str
    mode: RunMode
    status: RunStatus
    judge: RunJudge
    check_command: str | None
    config: dict[str, Any]
    base_ref: str | None
    base_commit: str | None
    into: str | None
    merge: str
    preserve_worktrees: bool
    run_budget: RunBudget | None
    rounds: int
    round: int
    then: str
    winner: int | None
    decision: RunDecision | None
    integration_phase: IntegrationPhase | None
    integration_session_id: str | None
    failure: str | None
    members: list[RunMember]
    totals: RunTotals
    last_seq: int
    created_at: str
    updated_at: str
    finished_at: str | None


class RunList(Result):
    runs: list[Run]
    next_cursor: str | None


class RunRemoved(Result):
    run: str
    #: The member sessions deleted (their work snapshotted unless force).
    sessions: list[str]


class RunEvent(Result):
    id: int
    run_id: str
    seq: int
    kind: str
    #: A JSON object; its fields depend on ``kind``.
    data: msgspec.Raw
    created_at: str


class RunEventList(Result):
    events: list[RunEvent]


class RunSubscribed(Result):
    subscription: int
    run_id: str
    #: The seq of the last event not sent (the subscription sends those after it).
    cursor: int
