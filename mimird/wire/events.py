"""Mimir's own event kinds: what each kind's ``data`` holds, as wire types.

Producers build one of these structs (``StatusChanged(from_="idle", to="running",
reason="prompt")``) and the journal stores its encoding as the event's ``data``
under its :attr:`EventData.KIND`. Clients decode a whole event object (``id``,
``session_id``, ``seq``, ``kind``, ``data``, ``created_at``) with
:func:`decode_event`: a tagged union on ``kind`` (msgspec ``tag_field="kind"``),
tolerant of members it does not know, and falling back to the untyped
:class:`~mimird.wire.types.Event` for a kind it does not know (a newer mimird).

One kind carries what the agent sent verbatim (``update``, the params of ACP's
``session/update``): its data is a plain object, so nothing an agent sends is
lost to a struct that does not know its fields.

Standard library and msgspec only: ``mimirctl`` imports this module.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, Literal, Union

import msgspec

from mimird.wire.types import Event


class EventData(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Base of the ``data`` of one kind of event. Fields with a default are left out
    of the stored JSON when they hold it (the docs say "only when ..." for them)."""

    KIND: ClassVar[str]


# ---- sessions and workspaces ----------------------------------------------------------


class SessionCreated(EventData):
    KIND: ClassVar[str] = "session_created"
    status: str


class WorkspaceCreated(EventData):
    KIND: ClassVar[str] = "workspace_created"
    kind: str
    path: str
    branch: str | None = None
    base_commit: str | None = None
    copied: list[str] | None = None
    copy_of: str | None = None


class SetupStarted(EventData):
    KIND: ClassVar[str] = "setup_started"
    command: str


class SetupOutput(EventData):
    KIND: ClassVar[str] = "setup_output"
    text: str


class SetupFinished(EventData):
    KIND: ClassVar[str] = "setup_finished"
    #: ``None`` when the command was stopped.
    exit_code: int | None
    #: Only when stopped.
    ended: Literal["cancelled", "timed_out"] | None = None


class StatusChanged(EventData):
    KIND: ClassVar[str] = "status_changed"
    from_: str = msgspec.field(name="from")
    to: str
    reason: str | None = None


class SessionCompleted(EventData):
    KIND: ClassVar[str] = "session_completed"
    #: ``client`` (session.complete), ``auto_complete`` (a turn ended end_turn), or ``run``
    #: (a run's winner, once its work is home).
    by: str
    note: str | None = None


class SessionUpdated(EventData):
    KIND: ClassVar[str] = "session_updated"
    fields: list[str]


class WorkspaceStateChanged(EventData):
    KIND: ClassVar[str] = "workspace_state_changed"
    from_: str = msgspec.field(name="from")
    to: str
    #: Where the worktree is now, and its branch, when the check found them.
    actual_path: str | None = None
    actual_branch: str | None = None


class SnapshotTaken(EventData):
    KIND: ClassVar[str] = "snapshot_taken"
    ref: str
    commit: str
    #: ``None`` when start-up recovery found the snapshot (the count was not kept).
    files: int | None


class WorkspaceRemoved(EventData):
    KIND: ClassVar[str] = "workspace_removed"
    path: str | None = None
    branch_deleted: bool | None = None
    #: True when ``worktree.prune`` removed it.
    pruned: bool | None = None
    #: True when start-up recovery finished a delete a crash cut short.
    recovered: bool | None = None


class WorkspaceRestored(EventData):
    KIND: ClassVar[str] = "workspace_restored"
    path: str
    #: ``None`` when start-up recovery finished the restore.
    snapshot_commit: str | None
    #: True when start-up recovery finished a restore a crash cut short.
    recovered: bool | None = None


class WorkspaceRepaired(EventData):
    KIND: ClassVar[str] = "workspace_repaired"
    adopted_path: str | None = None
    recreated_from_branch: str | None = None


class WorkspaceRolledBack(EventData):
    KIND: ClassVar[str] = "workspace_rolled_back"
    operation: Literal["create", "restore"] | str
    path: str
    directory_removed: bool | None = None
    #: For a worktree.
    branch_deleted: bool | None = None
    #: For a create of a worktree.
    branch: str | None = None


# ---- the agent process ----------------------------------------------------------------


class ProcessStateChanged(EventData):
    KIND: ClassVar[str] = "process_state_changed"
    from_: str = msgspec.field(name="from")
    to: Literal["stopped", "starting", "running", "backoff", "stopping", "fatal"] | str
    #: When there is one.
    reason: str | None = None


class AgentStarting(EventData):
    KIND: ClassVar[str] = "agent_starting"
    attempt: int
    command: str
    args: list[str]


class AgentStarted(EventData):
    KIND: ClassVar[str] = "agent_started"
    pid: int | None
    acp_session_id: str | None
    loaded: bool
    agent_info: Any
    protocol_version: Any
    startup_ms: int
    #: Only when ``session/load`` of ``load_session_id`` failed: the agent's error
    #: (message, code and data; secrets masked, bounded).
    load_error: str | None = None
    #: Only when a load was due: the ACP session that was to be loaded.
    load_session_id: str | None = None


class AgentStartFailed(EventData):
    KIND: ClassVar[str] = "agent_start_failed"
    reason: str


class AgentExited(EventData):
    KIND: ClassVar[str] = "agent_exited"
    exit_code: int | None
    signal: str | None
    expected: bool
    stderr_tail: list[str]


class AgentRestarting(EventData):
    KIND: ClassVar[str] = "agent_restarting"
    attempt: int
    delay_s: float
    reason: str


# ---- turns ----------------------------------------------------------------------------


class Prompt(EventData):
    KIND: ClassVar[str] = "prompt"
    content: list[dict[str, Any]]
    #: Only when the prompt was made from a prompt template: its name.
    template: str | None = None


class HandoffSent(EventData):
    """The session's earlier conversation, sent before a prompt to an agent that
    could not load it (``handoff_max_bytes``)."""

    KIND: ClassVar[str] = "handoff_sent"
    #: UTF-8 bytes of the conversation's text sent.
    bytes: int
    #: Prompts (user turns) in it.
    turns: int
    #: Whether older turns were left out (or the oldest kept was cut) to fit the bound.
    cut: bool
    #: Why the agent did not have the conversation: ``load_failed``, ``cannot_load``
    #: or ``no_session``.
    reason: str


class PromptFailed(EventData):
    """A prompt sent on the client's behalf (``session.create``'s ``prompt``) that
    could not be sent: no turn ran."""

    KIND: ClassVar[str] = "prompt_failed"
    reason: str
    #: The error's kind (e.g. agent_unavailable, invalid_state).
    error: str


class Message(EventData):
    KIND: ClassVar[str] = "message"
    role: Literal["agent", "thought"] | str
    text: str
    message_id: str | None = None
    #: Only for a message journaled in pieces (a long one): this piece's number, from 1.
    piece: int | None = None
    #: Only when another piece of the same message follows.
    continued: bool = False


class ChangedFile(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A file a turn changed in the workspace (whoever changed it)."""

    path: str
    #: added, modified, deleted, renamed, type_changed
    change: str
    insertions: int = 0
    deletions: int = 0
    binary: bool = False
    #: For renamed: where the file was.
    old_path: str | None = None


class TurnEnded(EventData):
    KIND: ClassVar[str] = "turn_ended"
    stop_reason: str
    #: What the turn used, as Mimir counted it (a :class:`Usage`; only when the agent
    #: reported any). Untyped: journals of mimird before 0008 hold the agent's own object.
    usage: Any = None
    error: str | None = None
    #: The files the turn changed (against the workspace at the turn's start), at most
    #: MAX_TURN_FILES of them; absent when they were not computed (``files_skipped``).
    files: list[ChangedFile] | None = None
    #: How many more files changed than ``files`` lists.
    files_more: int = 0
    #: Why ``files`` is absent: a workspace that is not a git repository, a git failure.
    files_skipped: str | None = None
    #: Why Mimir cancelled the turn: ``turn_timeout`` or ``budget_exceeded``.
    reason: str | None = None


class BudgetWarning(EventData):
    """Usage passed ``budget_warn_ratio`` of a budget (once per session and budget)."""

    KIND: ClassVar[str] = "budget_warning"
    #: ``token_budget`` or ``cost_budget_usd``.
    budget: str
    limit: float
    used: float
    #: The config layer that set the budget.
    layer: str
    ratio: float


class BudgetExceeded(EventData):
    """A budget was reached: the turn was cancelled, the session is ``budget_exceeded``."""

    KIND: ClassVar[str] = "budget_exceeded"
    budget: str
    limit: float
    used: float
    layer: str


class CancelRequested(EventData):
    KIND: ClassVar[str] = "cancel_requested"


class CancelTimedOut(EventData):
    KIND: ClassVar[str] = "cancel_timed_out"
    grace_s: float


# ---- the agent's model and mode -------------------------------------------------------


class ModelChanged(EventData):
    KIND: ClassVar[str] = "model_changed"
    model: str
    #: client (session.set_model), config (set at the agent's start), agent (its own change).
    by: Literal["client", "config", "agent"] | str
    #: Only when known.
    previous: str | None = None
    #: Only when Mimir told the agent: the ACP method it used.
    via: str | None = None


class ModeChanged(EventData):
    KIND: ClassVar[str] = "mode_changed"
    mode: str
    #: client (session.set_mode), config (set at the agent's start), agent (its own change).
    by: Literal["client", "config", "agent"] | str
    #: Only when known.
    previous: str | None = None
    #: Only when Mimir told the agent: the ACP method it used.
    via: str | None = None


class SettingFailed(EventData):
    """A configured model or mode that could not be set when the agent started."""

    KIND: ClassVar[str] = "setting_failed"
    key: Literal["model", "mode"] | str
    value: str
    reason: str
    #: The ids the agent offers.
    offered: list[str]


# ---- permissions ----------------------------------------------------------------------


class PermissionRequested(EventData):
    KIND: ClassVar[str] = "permission_requested"
    permission: str
    #: The tool call and the options, as the agent sent them.
    tool_call: Any
    options: Any
    title: Any
    #: What the tool policy said: ``decision`` (``ask``: parked; ``allow``/``deny``: a
    #: ``permission_decided`` follows), ``rule``, and for ``ask`` the ``reason`` or null.
    policy: Any = None


class PermissionAnswered(EventData):
    KIND: ClassVar[str] = "permission_answered"
    permission: str
    outcome: Any
    option_id: Any
    by: str
    #: Only when the client asked to remember its answer: the rule written
    #: (``layer``, ``key``, ``patterns``, ``decision``).
    remembered: Any = None


class PermissionDecided(EventData):
    """The tool policy answered a request at once (``by`` ``policy``), without parking it."""

    KIND: ClassVar[str] = "permission_decided"
    permission: str
    decision: str
    by: str
    #: The rule that decided: ``layer``, ``key`` (``tool_policy.<kind>``), ``pattern`` or null.
    rule: Any
    #: The agent's option chosen (by kind); null when it offered none: then ``outcome``
    #: is ``cancelled``, the one refusal every agent understands.
    option_id: Any
    outcome: str
    reason: str | None = None


# ---- what the agent had Mimir do ------------------------------------------------------


class FileRead(EventData):
    KIND: ClassVar[str] = "file_read"
    path: str
    chars: int
    #: Only when the file does not exist and the agent's kind reads it as empty
    #: (``missing_file = "empty"``).
    missing: bool = False


class FileWritten(EventData):
    KIND: ClassVar[str] = "file_written"
    path: str
    bytes: int


class FileRefused(EventData):
    KIND: ClassVar[str] = "file_refused"
    op: Literal["read", "write"] | str
    path: Any
    reason: str


class TerminalStarted(EventData):
    KIND: ClassVar[str] = "terminal_started"
    terminal: str
    command: str
    args: list[str]
    cwd: str
    pid: int


class TerminalExited(EventData):
    KIND: ClassVar[str] = "terminal_exited"
    terminal: str
    exit_code: int | None
    signal: str | None
    #: Only when the next start after a crash of mimird found it.
    after_crash: bool | None = None


class TerminalRefused(EventData):
    KIND: ClassVar[str] = "terminal_refused"
    command: str
    cwd: Any
    reason: str


class AgentNotification(EventData):
    KIND: ClassVar[str] = "agent_notification"
    method: str
    #: As the agent sent them.
    params: Any


class AgentProtocolError(EventData):
    KIND: ClassVar[str] = "agent_protocol_error"
    reason: str
    preview: str


#: The kinds whose data is what the agent sent, verbatim: a plain JSON object.
VERBATIM_KINDS: Final = frozenset({"update"})


def _all_kinds() -> dict[str, type[EventData]]:
    found: dict[str, type[EventData]] = {}
    pending = list(EventData.__subclasses__())
    while pending:
        cls = pending.pop()
        assert cls.KIND not in found, f"two structs for event kind {cls.KIND!r}"
        found[cls.KIND] = cls
        pending.extend(cls.__subclasses__())
    return found


#: Every kind with a typed ``data``, by name.
DATA_TYPES: Final[dict[str, type[EventData]]] = _all_kinds()
#: Every kind Mimir journals.
KINDS: Final = frozenset(DATA_TYPES) | VERBATIM_KINDS


class _EventBase(msgspec.Struct, kw_only=True, tag_field="kind"):
    id: int
    session_id: str
    seq: int
    created_at: str


def _event_type(kind: str, data: Any) -> type[_EventBase]:
    name = "".join(part.title() for part in kind.split("_")) + "Event"
    made = msgspec.defstruct(
        name, [("data", data)], bases=(_EventBase,), tag=kind, kw_only=True, module=__name__
    )
    assert issubclass(made, _EventBase)
    return made


#: One event struct per kind (``data`` typed by kind), the union :func:`decode_event` decodes.
EVENT_TYPES: Final[dict[str, type[_EventBase]]] = {
    **{kind: _event_type(kind, data) for kind, data in DATA_TYPES.items()},
    **{kind: _event_type(kind, dict[str, Any]) for kind in sorted(VERBATIM_KINDS)},
}
_DECODER: Final = msgspec.json.Decoder(Union[tuple(EVENT_TYPES.values())])  # noqa: UP007
_FALLBACK: Final = msgspec.json.Decoder(Event)


def decode_event(line: bytes | str) -> Any:
    """One event object, its ``data`` typed by its kind (an ``<Kind>Event`` struct
    from :data:`EVENT_TYPES`); a kind this module does not know decodes as the
    untyped :class:`~mimird.wire.types.Event`. Members a struct does not know are
    skipped. Raises :class:`msgspec.ValidationError` when a known kind's data does
    not fit it."""
    try:
        return _DECODER.decode(line)
    except msgspec.ValidationError:
        event = _FALLBACK.decode(line)
        if event.kind in KINDS:
            raise
        return event
