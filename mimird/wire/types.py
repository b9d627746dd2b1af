"""Params and results of every method, as msgspec Structs.

Params forbid unknown fields (a typo is an error, not a silent no-op); results
are tolerant so that an older client keeps decoding a newer daemon's answers.
``UNSET`` distinguishes "field absent" from an explicit ``null``.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from mimird.wire.depth import depth_problem
from mimird.wire.formats import MIN_ID_PREFIX, TIMESTAMP_PATTERN
from mimird.wire.usage import Usage

#: The largest integer SQLite holds: no seq, event id or other counter exceeds it.
MAX_INT: Final = (1 << 63) - 1
#: A string without NUL, which no path, argument or environment can hold.
NO_NUL_PATTERN: Final = r"^[^\x00]*$"
#: A session.list cursor, an id: 26 Crockford base32 characters (128 bits, so the first is
#: at most 7), in any case.
CURSOR_PATTERN: Final = r"^[0-7][0-9a-hjkmnp-tv-zA-HJKMNP-TV-Z]{25}$"


class Params(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every method's params.

    Decoding refuses a param that nests JSON more than ``MAX_JSON_DEPTH`` levels: the
    ValueError raised here becomes msgspec's ValidationError, answered with -32602 and
    ``data.field`` naming the param (``mimird.validation`` reads it from the message)."""

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, dict | list) and (problem := depth_problem(value)):
                raise ValueError(f"invalid field `{name}`: {problem}")


class Result(msgspec.Struct, kw_only=True):
    """Base of every method's result."""


ProjectName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=128,
        pattern=r"^[^/\s](?:[^/]*[^/\s])?$",
        description=(
            "Unique project name: printable, no '/', not starting with '.' or '-', no "
            "leading or trailing whitespace (the daemon checks what a pattern cannot)."
        ),
    ),
]
ProjectRef = Annotated[
    str, Meta(min_length=1, max_length=4096, description="A project's id or its name.")
]
ProjectType = Literal["python", "go", "rust", "typescript", "javascript", "java", "unknown"]
Description = Annotated[str, Meta(max_length=10_000)]
#: A path on the daemon's machine: the OS takes no NUL byte in one.
PathText = Annotated[
    str,
    Meta(min_length=1, max_length=4096, pattern=NO_NUL_PATTERN, description="A path (no NUL)."),
]
ConfigObject = Annotated[
    dict[str, Any], Meta(description="Configuration overrides (a JSON object).")
]


# ---- rpc.* / daemon.* -------------------------------------------------------------


class EmptyParams(Params):
    pass


class DaemonStatusParams(Params):
    #: The caller's name (``mimirctl``, an editor plugin), kept for the connection:
    #: the audit log names it beside uid and pid.
    client: Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[ -~]+$")] | UnsetType = (
        UNSET
    )


class DaemonCounts(Result):
    projects: int
    archived_projects: int
    sessions: int
    connections: int


class DaemonPaths(Result):
    socket: str
    database: str
    config: str | None
    worktrees: str
    state: str


class DaemonStatus(Result):
    version: str
    protocol_version: int
    pid: int
    started_at: str
    uptime_s: float
    socket_activated: bool
    database_size_bytes: int
    database_encrypted: bool
    schema_revision: str
    paths: DaemonPaths
    counts: DaemonCounts
    usage_today: Usage | None = None  # all sessions' turns that ended today (UTC)


# ---- project.* --------------------------------------------------------------------


class Project(Result):
    id: str
    name: str
    path: str
    type: ProjectType
    is_git: bool
    description: str
    config: dict[str, Any]
    archived: bool
    sessions: int
    created_at: str
    updated_at: str
    usage: Usage | None = None  # its sessions' turns summed
    #: When one of its sessions last changed (null: it has had none).
    last_used_at: str | None = None


class ProjectAddParams(Params):
    path: PathText
    name: ProjectName | UnsetType = UNSET
    description: Description = ""
    config: ConfigObject = msgspec.field(default_factory=dict)


class ProjectListParams(Params):
    include_archived: bool = False


class ProjectList(Result):
    projects: list[Project]


class ProjectGetParams(Params):
    project: ProjectRef


class ProjectUpdateParams(Params):
    project: ProjectRef
    name: ProjectName | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    config: ConfigObject | UnsetType = UNSET
    archived: bool | UnsetType = UNSET


class ProjectRemoveParams(Params):
    project: ProjectRef
    force: bool = False


class ProjectRemoved(Result):
    id: str
    name: str
    sessions_removed: int


# ---- session.* ---------------------------------------------------------------------

SessionStatus = Literal[
    "preparing",  # workspace being made, setup command running
    "created",  # workspace ready, no agent running
    "starting",
    "idle",
    "running",
    "awaiting_permission",
    "stopped",
    "failed",
    "interrupted",
    "budget_exceeded",
    "completed",  # said done (session.complete, or auto_complete); resume goes on
    "archived",
    "deleted",
]
WorkspaceKind = Literal["worktree", "in_place", "private"]
#: See docs/api.md, "Workspace states and drift" (foreign: an imported session's
#: worktree or private copy, at a path holding a directory this mimird did not make).
WorkspaceState = Literal[
    "ok", "missing", "moved", "wrong_branch", "not_a_worktree", "foreign", "removed"
]
SessionRef = Annotated[
    str,
    Meta(
        min_length=MIN_ID_PREFIX,
        max_length=64,
        description="A session's id, or a unique prefix of it (at least 4 characters).",
    ),
]
Timestamp = Annotated[
    str,
    Meta(
        pattern=TIMESTAMP_PATTERN,
        description="ISO 8601 UTC, e.g. 2026-11-22T10:00:00Z (or just a date).",
    ),
]
Title = Annotated[str, Meta(max_length=500)]
Task = Annotated[str, Meta(max_length=100_000)]
AgentName = Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")]
#: A git revision or branch name: git gets it as an argument, which cannot hold a NUL byte.
GitName = Annotated[str, Meta(min_length=1, max_length=250, pattern=NO_NUL_PATTERN)]
BranchName = GitName
#: A seq, an event id, or another counter the database holds.
Count = Annotated[int, Meta(ge=0, le=MAX_INT)]
PositiveCount = Annotated[int, Meta(ge=1, le=MAX_INT)]
#: session.list's cursor: the id of the last session of the previous page.
ListCursor = Annotated[
    str, Meta(pattern=CURSOR_PATTERN, description="The next_cursor of the previous page.")
]


PromptText = Annotated[str, Meta(min_length=1, max_length=10_000_000)]
TemplateName = Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")]
TemplateVars = Annotated[dict[str, str], Meta(max_length=100, description="Placeholder values.")]


class TemplatePrompt(Params):
    template: TemplateName
    vars: TemplateVars = msgspec.field(default_factory=dict)


class Workspace(Result):
    kind: WorkspaceKind
    path: str
    state: WorkspaceState
    branch: str | None = None
    base_ref: str | None = None
    base_commit: str | None = None
    #: Where the work was saved when the worktree was last removed.
    snapshot_ref: str | None = None
    snapshot_commit: str | None = None
    #: For state "moved": where git says the worktree is now.
    actual_path: str | None = None
    #: For state "wrong_branch": the branch (or "HEAD" when detached) checked out.
    actual_branch: str | None = None


class GitStatus(Result):
    head: str | None
    dirty: bool
    ahead: int
    behind: int
    files_changed: int
    insertions: int
    deletions: int


class Session(Result):
    id: str
    project_id: str
    project: str
    title: str
    task: str
    agent: str | None
    status: SessionStatus
    workspace: Workspace
    config: dict[str, Any]
    #: Why the session failed (exit code, last lines of output), when it did.
    failure: str | None
    #: What the agent said about itself when it last started: protocol_version,
    #: agent_info, capabilities, acp_session_id, modes, models, config_options.
    agent_state: dict[str, Any] | None
    last_seq: int
    created_at: str
    updated_at: str
    #: Filled by session.get (git: computed from git; usage: its turns summed), not lists.
    git: GitStatus | None = None
    #: When the session was completed; None unless it is (or was, then archived or deleted).
    completed_at: str | None = None
    #: Seconds spent in turns (prompt to turn end), summed at each turn's end.
    active_s: float = 0.0
    #: Filled by session.get for a completed session: seconds from creation to completed_at.
    wall_s: float | None = None
    usage: Usage | None = None
    #: The run the session is a member of (run.create), and its slot there.
    run_id: str | None = None
    slot: int | None = None


class SessionCreateParams(Params):
    project: ProjectRef
    title: Title = ""
    task: Task = ""
    agent: AgentName | UnsetType = UNSET
    base_ref: GitName | UnsetType = UNSET
    branch: BranchName | UnsetType = UNSET
    workspace: Literal["worktree", "in_place"] | UnsetType = UNSET
    config: ConfigObject = msgspec.field(default_factory=dict)
    #: A first prompt, sent once the session is made: text, or {template, vars}.
    prompt: PromptText | TemplatePrompt | UnsetType = UNSET


class SessionListParams(Params):
    project: ProjectRef | UnsetType = UNSET
    status: list[SessionStatus] | UnsetType = UNSET
    agent: AgentName | UnsetType = UNSET
    text: Annotated[str, Meta(min_length=1, max_length=500)] | UnsetType = UNSET
    created_after: Timestamp | UnsetType = UNSET
    created_before: Timestamp | UnsetType = UNSET
    updated_after: Timestamp | UnsetType = UNSET
    updated_before: Timestamp | UnsetType = UNSET
    #: Archived and deleted sessions are left out unless asked for (or named in status).
    include_archived: bool = False
    include_deleted: bool = False
    #: created: newest first by creation; completed_at: most recently completed first,
    #: only sessions that have a completed_at.
    sort: Literal["created", "completed_at"] = "created"
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100
    cursor: ListCursor | UnsetType = UNSET
    #: Skip this many sessions first (the seed's paging; ``cursor`` is the fast way).
    offset: Annotated[int, Meta(ge=0, le=1_000_000)] = 0
    #: Also count every session the filters match (every page, not this one).
    total: bool = False


class SessionList(Result, omit_defaults=True):
    sessions: list[Session]
    #: Pass as ``cursor`` to get the next page; None on the last page.
    next_cursor: str | None
    #: How many sessions the filters match, when ``total`` was asked for.
    total: int | None = None


class SessionRefParams(Params):
    session: SessionRef


class SessionUpdateParams(Params):
    session: SessionRef
    title: Title | UnsetType = UNSET
    task: Task | UnsetType = UNSET
    config: ConfigObject | UnsetType = UNSET


class SessionCompleteParams(Params):
    session: SessionRef
    #: Why or how it is done, journaled with the completion.
    note: Annotated[str, Meta(max_length=10_000)] | UnsetType = UNSET


class SessionDeleteParams(Params):
    session: SessionRef
    #: Remove the worktree even if its work cannot be snapshotted (loses that work).
    force: bool = False
    #: Also delete the session's branch (the snapshot ref still keeps the work).
    delete_branch: bool = False


class Snapshot(Result):
    ref: str
    commit: str
    #: Files that differed from the branch's HEAD (modified, added, deleted, untracked).
    files: int


class SessionRemoved(Result):
    session: Session
    snapshot: Snapshot | None


class SessionDiffParams(Params):
    session: SessionRef
    patch: bool = False


class FileDiff(Result):
    path: str
    #: added, modified, deleted, renamed, type_changed
    status: str
    insertions: int
    deletions: int
    binary: bool


class SessionDiff(Result):
    session: str
    base_commit: str
    files: list[FileDiff]
    files_changed: int
    insertions: int
    deletions: int
    patch: str | None = None


class ConfigEntry(Result):
    key: str
    value: Any
    #: builtin, defaults (the config file), project, session
    source: str


class SessionConfig(Result):
    session: str
    effective: dict[str, Any]
    entries: list[ConfigEntry]


class SessionEventsParams(Params):
    session: SessionRef
    after_seq: Count = 0
    #: Only events before this seq.
    before_seq: PositiveCount | UnsetType = UNSET
    #: Only events of this kind (e.g. "prompt").
    kind: Annotated[str, Meta(min_length=1, max_length=100)] | UnsetType = UNSET
    #: Newest first (the page then ends at after_seq instead of starting there).
    newest_first: bool = False
    limit: Annotated[int, Meta(ge=1, le=10_000)] = 1000


class Event(Result):
    id: int
    session_id: str
    seq: int
    kind: str
    #: A JSON object; its fields depend on ``kind``.
    data: msgspec.Raw
    created_at: str


class EventList(Result):
    events: list[Event]


# ---- worktree.* --------------------------------------------------------------------


class WorktreeListParams(Params):
    project: ProjectRef | UnsetType = UNSET


class WorktreeInfo(Result):
    session_id: str
    session_status: SessionStatus
    project: str
    path: str
    branch: str | None
    base_commit: str | None
    state: WorkspaceState
    snapshot_ref: str | None


class WorktreeList(Result):
    worktrees: list[WorktreeInfo]
    #: Directories under the worktrees directory that no session owns.
    orphans: list[str]


class WorktreePruneParams(Params):
    project: ProjectRef | UnsetType = UNSET
    dry_run: bool = False


class WorktreePruned(Result):
    removed: list[WorktreeInfo]
    snapshots: list[Snapshot]
    dry_run: bool


# ---- agent.* -----------------------------------------------------------------------


class AgentKind(Result):
    name: str
    #: The command run (for a preset with several candidates: the one found, else the first).
    command: str
    args: list[str]
    #: preset (built into Mimir), config (an [agents.<name>] section of the config file)
    #: or installed (by ``agent.install``, from the ACP Registry).
    source: Literal["preset", "config", "installed"]
    #: Whether the command is on the daemon's PATH.
    found: bool
    path: str | None
    description: str
    #: An installed agent's version, when it was installed (UTC), the registry it came
    #: from ("snapshot": Mimir's own; else a file or a URL) and that registry's date.
    version: str | None = None
    installed_at: str | None = None
    registry: str | None = None
    registry_date: str | None = None
    #: For a kind not found: the command that installs it (when the registry has it).
    install: str | None = None


class AgentList(Result):
    agents: list[AgentKind]


# ---- session.prompt (its params: mimird.wire.prompts) / cancel / stop / resume / logs ------


class PromptResult(Result):
    session: str
    #: ACP's stop reason: end_turn, max_tokens, max_turn_requests, refusal, cancelled.
    stop_reason: str
    #: seq of the journaled prompt and of the turn's end.
    prompt_seq: int
    end_seq: int
    usage: Usage | None = None  # the turn's, as counted (see turn_ended)


class SessionCancelled(Result):
    session: str
    #: False when no turn was running.
    cancelled: bool


class SessionLogsParams(Params):
    session: SessionRef
    lines: Annotated[int, Meta(ge=1, le=100_000)] = 100


class SessionLogs(Result):
    session: str
    #: The agent's stderr log file (capped; one older generation kept as <path>.1).
    path: str
    lines: list[str]


# ---- permission.* ------------------------------------------------------------------------

PermissionKind = Literal["allow_once", "allow_always", "reject_once", "reject_always"]


class PermissionListParams(Params):
    session: SessionRef | UnsetType = UNSET


class PermissionRequest(Result):
    id: str
    session_id: str
    #: The tool call the agent wants to run (ACP ToolCallUpdate), as the agent sent it.
    tool_call: Any
    #: The agent's options: each with optionId, name and kind.
    options: list[dict[str, Any]]
    requested_at: str


class PermissionList(Result):
    permissions: list[PermissionRequest]


class PermissionRespondParams(Params):
    permission: Annotated[str, Meta(min_length=1, max_length=64)]
    #: By option id or by kind (``*_always`` falls back to ``*_once``); see docs/api.md.
    option_id: Annotated[str, Meta(min_length=1, max_length=1000)] | UnsetType = UNSET
    kind: PermissionKind | UnsetType = UNSET
    remember: Literal["session", "project"] | UnsetType = UNSET


class PermissionAnswered(Result):
    permission: str
    session_id: str
    option_id: str


# ---- subscribe / unsubscribe -------------------------------------------------------------


class SubscribeParams(Params):
    #: Only this session's events; all sessions' events when absent.
    session: SessionRef | UnsetType = UNSET
    #: Replay the session's events after this seq (needs ``session``).
    after_seq: Count | UnsetType = UNSET
    #: Replay events after this global event id.
    after_id: Count | UnsetType = UNSET


class Subscribed(Result):
    subscription: int
    session_id: str | None
    #: "seq" for a session subscription, "id" for all sessions.
    cursor_kind: Literal["seq", "id"]
    #: Events after this cursor are sent, stored ones first, then live ones.
    cursor: int


class UnsubscribeParams(Params):
    subscription: PositiveCount


class Unsubscribed(Result):
    subscription: int


# ---- search ------------------------------------------------------------------------

SearchQuery = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=4096,
        description=(
            'Words (all must match), "quoted phrases", word* for a prefix; anything else '
            "is literal text."
        ),
    ),
]


class SearchParams(Params):
    query: SearchQuery
    project: ProjectRef | UnsetType = UNSET
    session: SessionRef | UnsetType = UNSET
    limit: Annotated[int, Meta(ge=1, le=200)] = 20


class SnippetPart(Result):
    text: str
    #: Whether this part is a match of the query (show it highlighted).
    match: bool


class SearchHit(Result):
    event_id: int
    session_id: str
    project_id: str
    #: The project's name.
    project: str
    session_title: str
    session_status: SessionStatus
    seq: int
    kind: str
    created_at: str
    #: Relevance (FTS5's bm25, negated): larger is better; only for comparing the
    #: hits of one search.
    score: float
    #: An excerpt of the event's text around the matches, as parts; joined, they
    #: are the excerpt ("…" where the text was cut).
    snippet: list[SnippetPart]


class SearchResult(Result):
    hits: list[SearchHit]
