"""The database schema, as SQLAlchemy Core tables.

This metadata is what the Alembic migrations must produce: a test compares
the migrated database with it, so a change here without a migration fails.
The full-text index of the journal is the one exception: an FTS5 virtual table
cannot be said in Core, so migration 0004 makes it (and its trigger) in SQL,
and :func:`include_name` keeps it out of the comparison and of autogenerate.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Final, Literal

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# What the daemon keeps about itself: one row per run, so that a start after a
# crash (stopped_at still NULL) is noticed and checked.
daemon_runs = sa.Table(
    "daemon_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("version", sa.Text, nullable=False),
    sa.Column("started_at", sa.Text, nullable=False),
    sa.Column("stopped_at", sa.Text, nullable=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.CheckConstraint("status IN ('running', 'stopped', 'crashed')", name="status"),
)

# Who called which mutating method, when, and how it ended (also when its params
# were refused).
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Text, nullable=False),
    sa.Column("uid", sa.Integer, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    # The name the client gave (daemon.status's ``client``), else its process's name.
    sa.Column("client", sa.Text, nullable=True),
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("target", sa.Text, nullable=True),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("error_code", sa.Integer, nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.CheckConstraint("outcome IN ('ok', 'error')", name="outcome"),
)
sa.Index(None, audit_log.c.at)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("path", sa.Text, nullable=False, unique=True),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("is_git", sa.Boolean, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("config", sa.Text, nullable=False, server_default="{}"),
    sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
)

# A session: one piece of work in one project, in its own workspace.
sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column(
        "project_id",
        sa.Text,
        sa.ForeignKey("projects.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("title", sa.Text, nullable=False, server_default=""),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
    sa.Column("task", sa.Text, nullable=False, server_default=""),
    sa.Column("agent", sa.Text, nullable=True),
    sa.Column("config", sa.Text, nullable=False, server_default="{}"),
    sa.Column("workspace_kind", sa.Text, nullable=False, server_default="worktree"),
    sa.Column("workspace_path", sa.Text, nullable=False, server_default=""),
    sa.Column("workspace_state", sa.Text, nullable=False, server_default="ok"),
    sa.Column("branch", sa.Text, nullable=True),
    sa.Column("base_ref", sa.Text, nullable=True),
    sa.Column("base_commit", sa.Text, nullable=True),
    sa.Column("snapshot_ref", sa.Text, nullable=True),
    sa.Column("snapshot_commit", sa.Text, nullable=True),
    sa.Column("failure", sa.Text, nullable=True),
    # The seq of the session's newest event: the next one gets last_seq + 1.
    sa.Column("last_seq", sa.Integer, nullable=False, server_default="0"),
    # The process group mimird started for this session (its setup command) and
    # that may still run: a start after a crash reaps it.
    sa.Column("process_group", sa.Integer, nullable=True),
    # What the agent said about itself: capabilities, its ACP session id, modes,
    # models and config options (JSON), kept for resume.
    sa.Column("agent_state", sa.Text, nullable=True),
    # When the session was completed (session.complete, auto_complete); cleared when
    # it is resumed.
    sa.Column("completed_at", sa.Text, nullable=True),
    # Seconds spent in turns, added at each turn's end with its turn_ended.
    sa.Column("active_s", sa.Float, nullable=False, server_default="0"),
    # The run the session is a member of (mimird/runs/), and its slot there (1..N).
    sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id", ondelete="SET NULL"), nullable=True),
    sa.Column("slot", sa.Integer, nullable=True),
    # A run's members, by slot (also the index that finds a run's members).
    sa.UniqueConstraint("run_id", "slot"),
)
# Lists go newest first (by id) within a project or a status: with id in the
# index, SQLite walks it in order instead of sorting every match.
sa.Index(None, sessions.c.project_id, sessions.c.id)
sa.Index(None, sessions.c.status, sessions.c.id)
# Counting a project's sessions by status reads this index alone.
sa.Index(None, sessions.c.project_id, sessions.c.status)
sa.Index(None, sessions.c.updated_at)
# session.list sorted by completed_at walks this index (id breaks ties and pages).
sa.Index(None, sessions.c.completed_at, sessions.c.id)

# The journal: every event of every session, in order. (session_id, seq) is
# unique and gapless per session; id orders everything. A client keeps an event
# id as its cursor, so ids are never reused (AUTOINCREMENT): without it SQLite
# hands out max(id) + 1, and deleting the newest session's events would let the
# next event take an id some client has already seen.
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "session_id",
        sa.Text,
        sa.ForeignKey("sessions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.UniqueConstraint("session_id", "seq"),
    sqlite_autoincrement=True,
)

# A run: one task given to several member sessions at once (mimird/runs/). Its
# members are ordinary sessions with run_id and slot; what the run learnt of each
# (turn outcome, check result, diff stats) is kept by slot in member_results.
runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column(
        "project_id",
        sa.Text,
        sa.ForeignKey("projects.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("title", sa.Text, nullable=False, server_default=""),
    sa.Column("task", sa.Text, nullable=False),
    sa.Column("mode", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("judge", sa.Text, nullable=False),
    sa.Column("check_command", sa.Text, nullable=True),
    # The members' session config overrides (JSON), layered as any session's.
    sa.Column("config", sa.Text, nullable=False, server_default="{}"),
    # The run's own settings (JSON): agents, merge, preserve_worktrees, run_budget,
    # rounds, then, the prompt template...
    sa.Column("options", sa.Text, nullable=False, server_default="{}"),
    sa.Column("base_ref", sa.Text, nullable=True),
    sa.Column("base_commit", sa.Text, nullable=True),
    # The branch the winner is integrated into (None: the branch base_ref names).
    sa.Column("into", sa.Text, nullable=True),
    # The round under way (debate; 1 for the other modes once started).
    sa.Column("round", sa.Integer, nullable=False, server_default="0"),
    sa.Column("winner_slot", sa.Integer, nullable=True),
    # {by, reasons} once decided (JSON).
    sa.Column("decision", sa.Text, nullable=True),
    sa.Column("integration_phase", sa.Text, nullable=True),
    # Not a foreign key: sessions refer to runs already.
    sa.Column("integration_session_id", sa.Text, nullable=True),
    # By slot (JSON): outcome, reason, check result, diff stats.
    sa.Column("member_results", sa.Text, nullable=False, server_default="{}"),
    sa.Column("failure", sa.Text, nullable=True),
    # The seq of the run's newest event (its own journal, run_events).
    sa.Column("last_seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
    sa.Column("finished_at", sa.Text, nullable=True),
    sa.CheckConstraint("mode IN ('competition', 'ensemble', 'debate')", name="mode"),
    sa.CheckConstraint("judge IN ('user', 'checks', 'agent')", name="judge"),
)
sa.Index(None, runs.c.project_id, runs.c.id)
sa.Index(None, runs.c.status, runs.c.id)

# A run's journal: (run_id, seq) unique and gapless per run, ids never reused
# (a client's cursor), as the sessions' events.
run_events = sa.Table(
    "run_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "run_id",
        sa.Text,
        sa.ForeignKey("runs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.UniqueConstraint("run_id", "seq"),
    sqlite_autoincrement=True,
)

# Commands that agents run through Mimir (ACP terminals), while their process
# group may be alive: a start after a crash reaps what is left of them. A row
# goes when its group is gone (the command and everything it started exited,
# or was stopped).
terminals = sa.Table(
    "terminals",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column(
        "session_id",
        sa.Text,
        sa.ForeignKey("sessions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("process_group", sa.Integer, nullable=False),
    sa.Column("started_at", sa.Text, nullable=False),
)
sa.Index(None, terminals.c.session_id)

# Multi-step workspace operations in progress (session.create, delete, restore):
# written before the first change on disk, removed in the transaction that
# records the outcome. A row left by a crash (or a cancel that outran the
# shielded record step) tells the next start what to finish or undo.
# session_id has no foreign key: a create's session row does not exist yet.
workspace_intents = sa.Table(
    "workspace_intents",
    metadata,
    sa.Column("session_id", sa.Text, primary_key=True),
    sa.Column("operation", sa.Text, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
)

# What each turn used (tokens, cost), as the agents reported it: summed per
# session, per project and per day (UTC, the day the turn ended). project_id is
# kept with the row so that a project's sums need no join.
turn_usage = sa.Table(
    "turn_usage",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "session_id",
        sa.Text,
        sa.ForeignKey("sessions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column(
        "project_id",
        sa.Text,
        sa.ForeignKey("projects.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # The seq of the turn's turn_ended event.
    sa.Column("turn_seq", sa.Integer, nullable=True),
    sa.Column("day", sa.Text, nullable=False),
    sa.Column("input_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("output_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cached_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("thought_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("total_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
    # The agent's cumulative cost at the turn's end: where a loaded session's
    # cost goes on from (agents report cost summed over their session).
    sa.Column("reported_cost_usd", sa.Float, nullable=True),
    sa.Column("created_at", sa.Text, nullable=False),
)
sa.Index(None, turn_usage.c.session_id)
sa.Index(None, turn_usage.c.project_id)
sa.Index(None, turn_usage.c.day)

#: The full-text index of the journal (migration 0004): an FTS5 table with one
#: column, ``text``, whose rowid is the event's id (see mimird/search.py).
#: FTS5 keeps its data in shadow tables named ``events_fts_*``.
SEARCH_TABLE: Final = "events_fts"
#: Deletes an event's row of the index with the event (a session's events go
#: by ON DELETE CASCADE, which fires it too).
SEARCH_DELETE_TRIGGER: Final = "events_fts_after_delete"


NameKind = Literal[
    "schema",
    "table",
    "column",
    "index",
    "unique_constraint",
    "foreign_key_constraint",
    "check_constraint",
]
ParentNames = MutableMapping[
    Literal["schema_name", "table_name", "schema_qualified_table_name"], str | None
]


def include_name(name: str | None, type_: NameKind, parent_names: ParentNames) -> bool:
    """Alembic's filter for what it compares with this metadata: everything but
    the FTS5 index (and its shadow tables) and SQLite's own ``sqlite_sequence``."""
    if type_ != "table" or name is None:
        return True
    return not (
        name == SEARCH_TABLE or name.startswith(f"{SEARCH_TABLE}_") or name == "sqlite_sequence"
    )
