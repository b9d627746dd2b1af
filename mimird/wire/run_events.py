"""The kinds of a run's own journal: what each kind's ``data`` holds.

A run's events (``run.events``, ``run.subscribe``) are objects ``{id, run_id, seq,
kind, data, created_at}``; ``seq`` counts per run, gapless, from 1. Producers (the
orchestrator, :mod:`mimird.runs`) build one of these structs and the run journal
stores its encoding under its :attr:`RunEventData.KIND`. :func:`decode_run_event`
decodes a whole event, typed by kind, tolerant of fields it does not know, and
falls back to the untyped :class:`~mimird.wire.runs.RunEvent` for a kind it does
not know (a newer mimird).

Standard library and msgspec only: ``mimirctl`` imports this module.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, Literal, Union

import msgspec

from mimird.wire.runs import RunEvent


class RunEventData(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Base of the ``data`` of one kind of run event."""

    KIND: ClassVar[str]


class RunMemberRef(msgspec.Struct, kw_only=True):
    slot: int
    agent: str
    session_id: str


class RunCreated(RunEventData):
    KIND: ClassVar[str] = "run_created"
    mode: str
    judge: str
    members: list[RunMemberRef]
    check_command: str | None = None
    base_commit: str | None = None


class RunStatusChanged(RunEventData):
    KIND: ClassVar[str] = "run_status_changed"
    from_: str = msgspec.field(name="from")
    to: str


class MemberStarted(RunEventData):
    """The member's task was sent: its turn runs."""

    KIND: ClassVar[str] = "member_started"
    slot: int
    session_id: str
    round: int = 1


class MemberFinished(RunEventData):
    """The member's turn ended (``finished``: ``stop_reason`` says how), or it failed,
    or a budget stopped it (``reason`` says which), or it was cancelled."""

    KIND: ClassVar[str] = "member_finished"
    slot: int
    session_id: str
    outcome: Literal["finished", "failed", "budget_exceeded", "cancelled", "interrupted"]
    stop_reason: str | None = None
    reason: str | None = None
    #: The commit of the member's work on its branch (its worktree's changes committed).
    commit: str | None = None
    files_changed: int | None = None
    lines_added: int | None = None
    lines_deleted: int | None = None
    round: int = 1


class CheckStarted(RunEventData):
    KIND: ClassVar[str] = "check_started"
    slot: int
    command: str


class CheckFinished(RunEventData):
    KIND: ClassVar[str] = "check_finished"
    slot: int
    #: None when it was stopped or could not start.
    exit_code: int | None
    passed: bool
    #: The last non-empty line of the output.
    summary: str
    duration_s: float
    #: The output's end (at most ``[runs] check_output_bytes``), secrets masked.
    output: str
    timed_out: bool = False
    #: How many bytes of output were left out (the beginning).
    output_dropped: int = 0


class Decision(RunEventData):
    KIND: ClassVar[str] = "decision"
    #: None: no winner (nothing to pick from).
    winner: int | None
    by: Literal["user", "checks", "agent"]
    reasons: str


class RunBudgetExceeded(RunEventData):
    """The run's budget was reached: every member's turn was cancelled."""

    KIND: ClassVar[str] = "run_budget_exceeded"
    budget: Literal["tokens", "cost_usd"]
    limit: float
    used: float


class RunCancelled(RunEventData):
    KIND: ClassVar[str] = "run_cancelled"
    reason: str = "run.cancel"


class RunCompleted(RunEventData):
    KIND: ClassVar[str] = "run_completed"
    winner: int | None
    #: The commit the target branch points at after the integration, if any.
    commit: str | None = None
    into: str | None = None


class RunFailed(RunEventData):
    KIND: ClassVar[str] = "run_failed"
    reason: str


class RunInterrupted(RunEventData):
    """The daemon went away mid-run (found at the next start)."""

    KIND: ClassVar[str] = "run_interrupted"
    #: The status the run had.
    status: str
    #: The members whose turn was cut short.
    slots: list[int] = msgspec.field(default_factory=list)


class RunResumed(RunEventData):
    KIND: ClassVar[str] = "run_resumed"
    #: The members prompted again.
    slots: list[int] = msgspec.field(default_factory=list)


class Integrated(RunEventData):
    """The chosen work was brought into the target branch (``run.integrate``, or the
    orchestrator after a decision)."""

    KIND: ClassVar[str] = "integrated"
    #: The member integrated; None for an ensemble's integration session.
    slot: int | None
    branch: str
    into: str
    kind: Literal["fast_forward", "merge", "squash", "up_to_date"]
    commit: str
    previous: str
    files_changed: int = 0
    insertions: int = 0
    deletions: int = 0
    #: The checkout of ``into`` that was moved with it, if it is checked out.
    worktree: str | None = None


class IntegrationRefused(RunEventData):
    """Bringing the work home was refused; nothing changed (the run neither)."""

    KIND: ClassVar[str] = "integration_refused"
    slot: int | None
    into: str
    #: The error's ``data.kind``: ``merge_conflict``, ``checkout_dirty``, ``busy``, ...
    error: str
    message: str
    #: The conflicting files, for ``merge_conflict``.
    files: list[str] = msgspec.field(default_factory=list)


class RunNote(RunEventData):
    """Something the run noticed that changes nothing by itself (a member's budget
    warning, an integration left to run.integrate, ...)."""

    KIND: ClassVar[str] = "run_note"
    text: str
    slot: int | None = None


def _all_kinds() -> dict[str, type[RunEventData]]:
    found: dict[str, type[RunEventData]] = {}
    pending = list(RunEventData.__subclasses__())
    while pending:
        cls = pending.pop()
        assert cls.KIND not in found, f"two structs for run event kind {cls.KIND!r}"
        found[cls.KIND] = cls
        pending.extend(cls.__subclasses__())
    return found


#: Every run event kind, by name. (Kinds of other modes go in this module too.)
RUN_DATA_TYPES: Final[dict[str, type[RunEventData]]] = _all_kinds()
RUN_KINDS: Final = frozenset(RUN_DATA_TYPES)


class _RunEventBase(msgspec.Struct, kw_only=True, tag_field="kind"):
    id: int
    run_id: str
    seq: int
    created_at: str


def _event_type(kind: str, data: Any) -> type[_RunEventBase]:
    name = "".join(part.title() for part in kind.split("_")) + "RunEvent"
    made = msgspec.defstruct(
        name, [("data", data)], bases=(_RunEventBase,), tag=kind, kw_only=True, module=__name__
    )
    assert issubclass(made, _RunEventBase)
    return made


#: One event struct per kind, the union :func:`decode_run_event` decodes.
RUN_EVENT_TYPES: Final[dict[str, type[_RunEventBase]]] = {
    kind: _event_type(kind, data) for kind, data in RUN_DATA_TYPES.items()
}
_DECODER: Final = msgspec.json.Decoder(Union[tuple(RUN_EVENT_TYPES.values())])  # noqa: UP007
_FALLBACK: Final = msgspec.json.Decoder(RunEvent)


def decode_run_event(line: bytes | str) -> Any:
    """One run event object, its ``data`` typed by its kind; a kind this module does
    not know decodes as the untyped :class:`~mimird.wire.runs.RunEvent`."""
    try:
        return _DECODER.decode(line)
    except msgspec.ValidationError:
        event = _FALLBACK.decode(line)
        if event.kind in RUN_DATA_TYPES:
            raise
        return event
