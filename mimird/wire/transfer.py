"""Params and results of ``export.page`` and ``import.*``, and the records of an
export file (JSON Lines: a header line, then one record a line).

The records are checked here as far as a type can say it (ids' form, sizes,
statuses, timestamps); the daemon checks the rest (an event's data against its
kind, the order of the records). Standard library and msgspec only.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from mimird.wire.runs import (
    INTEGRATION_SLOT,
    MAX_MEMBERS,
    MAX_ROUNDS,
    IntegrationPhase,
    MemberOutcome,
    RunBudget,
    RunCheck,
    RunDecision,
    RunJudge,
    RunMode,
    RunStatus,
)
from mimird.wire.types import (
    Params,
    ProjectRef,
    ProjectType,
    Result,
    SessionRef,
    SessionStatus,
    Timestamp,
    WorkspaceKind,
    WorkspaceState,
)

#: The export file's ``format`` and the ``version`` of its records.
FORMAT: Final = "mimir-export"
VERSION: Final = 1
#: The most records one ``export.page`` answers, and one ``import.records`` takes.
MAX_PAGE_RECORDS: Final = 1000
#: An ``export.page`` stops adding records once it holds this many bytes of them
#: (it always holds at least one).
PAGE_BYTES: Final = 1 << 20
#: The largest record (one line of the file), in bytes.
MAX_RECORD_BYTES: Final = 8 << 20
#: Longest text column of a record that is not a task or an event's data.
MAX_TEXT: Final = 100_000

#: An id as Mimir makes them: 26 lower-case Crockford base32 characters.
Id = Annotated[str, Meta(pattern=r"^[0-7][0-9abcdefghjkmnpqrstvwxyz]{25}$")]
#: A stored timestamp: fixed width, so that they sort as text.
StoredTime = Annotated[str, Meta(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")]
Day = Annotated[str, Meta(pattern=r"^\d{4}-\d{2}-\d{2}$")]
Text = Annotated[str, Meta(max_length=MAX_TEXT)]
ShortText = Annotated[str, Meta(max_length=4096)]
#: A git name (a branch, a ref, a revision): the daemon checks the rest.
GitText = Annotated[str, Meta(min_length=1, max_length=250, pattern=r"^[^-\x00-\x1f\x7f]")]
Commit = Annotated[str, Meta(pattern=r"^[0-9a-f]{4,64}$")]
Kind = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Seq = Annotated[int, Meta(ge=1, le=(1 << 63) - 1)]
Tokens = Annotated[int, Meta(ge=0, le=(1 << 63) - 1)]
Money = Annotated[float, Meta(ge=0, le=1e12)]
#: A member's slot (0: an ensemble's integration session).
Slot = Annotated[int, Meta(ge=INTEGRATION_SLOT, le=MAX_MEMBERS)]
Json = dict[str, Any]


class _Record(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
    pass


class ProjectRecord(_Record, tag="project"):
    id: Id
    name: Annotated[str, Meta(min_length=1, max_length=128)]
    path: Annotated[str, Meta(min_length=1, max_length=4096, pattern=r"^/[^\x00]*$")]
    #: The project's ``type`` (``type`` names the record's).
    project_type: ProjectType
    is_git: bool
    description: Annotated[str, Meta(max_length=10_000)]
    config: Json
    archived: bool
    created_at: StoredTime
    updated_at: StoredTime


class RunRecord(_Record, tag="run"):
    id: Id
    project_id: Id
    title: Text
    task: Annotated[str, Meta(max_length=1_000_000)]
    mode: RunMode
    status: RunStatus
    judge: RunJudge
    check_command: Text | None
    config: Json
    options: Json
    base_ref: GitText | None
    base_commit: Commit | None
    into: GitText | None
    round: Annotated[int, Meta(ge=0, le=1000)]
    winner_slot: Slot | None
    decision: Json | None
    integration_phase: IntegrationPhase | None
    integration_session_id: Id | None
    member_results: Json
    failure: Text | None
    last_seq: Annotated[int, Meta(ge=0, le=(1 << 63) - 1)]
    created_at: StoredTime
    updated_at: StoredTime
    finished_at: StoredTime | None


class RunOptions(msgspec.Struct, kw_only=True):
    """The run options ``run.get`` reads (others are kept as they are)."""

    merge: Literal["auto", "manual"] = "auto"
    run_budget: RunBudget | None = None
    rounds: Annotated[int, Meta(ge=1, le=MAX_ROUNDS)] = 1
    then: Literal["decide", "ensemble"] = "decide"
    preserve_worktrees: bool = False


class MemberResult(msgspec.Struct, kw_only=True):
    """What a run knows of one member, as ``run.get`` reads it."""

    outcome: MemberOutcome = "pending"
    reason: Text | None = None
    stop_reason: Annotated[str, Meta(max_length=100)] | None = None
    files_changed: Tokens | None = None
    lines_added: Tokens | None = None
    lines_deleted: Tokens | None = None
    check: RunCheck | None = None


#: A run's ``member_results``, by slot (as text).
MemberResults = dict[Annotated[str, Meta(pattern=r"^\d{1,4}$")], MemberResult]
#: A run's ``decision``.
Decision = RunDecision


class RunEventRecord(_Record, tag="run_event"):
    run_id: Id
    seq: Seq
    kind: Kind
    data: Json
    created_at: StoredTime


class SessionRecord(_Record, tag="session"):
    id: Id
    project_id: Id
    title: Text
    status: SessionStatus
    task: Annotated[str, Meta(max_length=1_000_000)]
    agent: Annotated[str, Meta(max_length=100)] | None
    config: Json
    workspace_kind: WorkspaceKind
    #: Absolute, or empty.
    workspace_path: Annotated[str, Meta(max_length=4096, pattern=r"^(/[^\x00]*)?$")]
    workspace_state: WorkspaceState
    branch: GitText | None
    base_ref: GitText | None
    base_commit: Commit | None
    snapshot_ref: GitText | None
    snapshot_commit: Commit | None
    failure: Text | None
    last_seq: Annotated[int, Meta(ge=0, le=(1 << 63) - 1)]
    agent_state: Json | None
    completed_at: StoredTime | None
    active_s: Annotated[float, Meta(ge=0, le=1e12)]
    run_id: Id | None
    slot: Slot | None
    created_at: StoredTime
    updated_at: StoredTime


class EventRecord(_Record, tag="event"):
    session_id: Id
    seq: Seq
    kind: Kind
    data: Json
    created_at: StoredTime
    #: The words the journal indexed for search, if any.
    text: Annotated[str, Meta(max_length=MAX_RECORD_BYTES)] | None = None


class UsageRecord(_Record, tag="usage"):
    session_id: Id
    turn_seq: Seq | None
    day: Day
    input_tokens: Tokens
    output_tokens: Tokens
    cached_tokens: Tokens
    thought_tokens: Tokens
    total_tokens: Tokens
    cost_usd: Money
    reported_cost_usd: Money | None
    created_at: StoredTime


Record = ProjectRecord | RunRecord | RunEventRecord | SessionRecord | EventRecord | UsageRecord
RECORD_TYPES: Final = ("project", "run", "run_event", "session", "event", "usage")


class Header(msgspec.Struct, kw_only=True):
    """The first line of an export file."""

    format: Literal["mimir-export"]
    version: Annotated[int, Meta(ge=1)]
    #: The Alembic revision of the database it was exported from.
    schema: Annotated[str, Meta(max_length=64)]
    exported_at: Annotated[str, Meta(max_length=64)]
    mimir: Annotated[str, Meta(max_length=64)] = ""
    filters: dict[str, Any] = {}


# ---- export.page ----------------------------------------------------------------------


class ExportPageParams(Params):
    #: Only this project (id or name).
    project: ProjectRef | UnsetType = UNSET
    #: Only this session (id or unique prefix), with its project and its run.
    session: SessionRef | UnsetType = UNSET
    #: Only sessions and runs updated at or after this time (with their whole
    #: journals), and the projects they belong to or that were updated since.
    since: Timestamp | UnsetType = UNSET
    #: The ``cursor`` of the previous page; absent for the first one.
    cursor: Annotated[str, Meta(min_length=1, max_length=200)] | UnsetType = UNSET
    limit: Annotated[int, Meta(ge=1, le=MAX_PAGE_RECORDS)] = 500


class ExportPage(Result):
    #: The next records, in an order an import can stream.
    records: list[msgspec.Raw]
    #: Where the next page starts; null when this page is the last.
    cursor: str | None
    #: The file's first line (only on the first page).
    header: Header | None = None


# ---- import.* ---------------------------------------------------------------------------


class ImportBeginParams(Params):
    #: The export file's first line.
    header: dict[str, Any]


class ImportBegun(Result):
    #: This daemon's schema revision, and the file's.
    schema: str
    file_schema: str


class ImportRecordsParams(Params):
    #: The next records of the file, in order.
    records: Annotated[list[Any], Meta(max_length=MAX_PAGE_RECORDS)]
    #: The line of the file the first record is on (errors name lines).
    first_line: Annotated[int, Meta(ge=1, le=(1 << 53))] = 1


class ImportProgress(Result):
    #: Records taken so far (all of them checked).
    records: int


class ImportConflict(Result):
    line: int
    type: str
    id: str
    reason: str


class ImportMissingPath(Result):
    project_id: str
    name: str
    path: str


class ImportForeignWorkspace(Result):
    session_id: str
    path: str


class ImportSetting(Result):
    #: The record's ``type`` (project, session or run) and id.
    type: str
    id: str
    #: Dotted: setup_command, mcp_servers.NAME, env.NAME, tool_policy.KIND,
    #: permission_timeout_default, or a run's check_command.
    key: str
    #: As text, at most 200 characters (cut with "…").
    value: str


class ImportReport(Result):
    projects: int
    runs: int
    sessions: int
    events: int
    run_events: int
    usage: int
    #: Records not imported: an id that exists already (never overwritten), or a
    #: session or run whose project or run is not there (at most 100 listed).
    conflicts: list[ImportConflict]
    conflicts_total: int
    #: Records left out because their session or run was a conflict.
    skipped: int
    #: Projects whose repository is not on this machine (imported anyway).
    missing_paths: list[ImportMissingPath]
    #: Sessions whose status was changed on the way in (no agent runs for them here).
    statuses_changed: int
    #: Workspaces (worktrees, private copies) whose path holds a directory here that
    #: this mimird did not make: imported ``foreign`` (at most 100 listed;
    #: session.repair adopts one).
    foreign_workspaces: list[ImportForeignWorkspace]
    #: Settings that came with the imported records and run commands or let agents
    #: act without asking here (policy.acting_settings; at most 100 listed).
    acting_settings: list[ImportSetting]
    acting_settings_total: int
