"""session workspaces, state and config; the events journal

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("task", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(sa.Column("agent", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("config", sa.Text(), server_default="{}", nullable=False))
        batch_op.add_column(
            sa.Column("workspace_kind", sa.Text(), server_default="worktree", nullable=False)
        )
        batch_op.add_column(
            sa.Column("workspace_path", sa.Text(), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("workspace_state", sa.Text(), server_default="ok", nullable=False)
        )
        batch_op.add_column(sa.Column("branch", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("base_ref", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("base_commit", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("snapshot_ref", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("snapshot_commit", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("failure", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("last_seq", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("process_group", sa.Integer(), nullable=True))
        batch_op.drop_index("ix_sessions_project_id")
        batch_op.create_index(
            batch_op.f("ix_sessions_project_id_id"), ["project_id", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_sessions_status_id"), ["status", "id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_sessions_project_id_status"), ["project_id", "status"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_sessions_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_events_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("session_id", "seq", name=op.f("uq_events_session_id_seq")),
    )


def downgrade() -> None:
    op.drop_table("events")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sessions_updated_at"))
        batch_op.drop_index(batch_op.f("ix_sessions_project_id_status"))
        batch_op.drop_index(batch_op.f("ix_sessions_status_id"))
        batch_op.drop_index(batch_op.f("ix_sessions_project_id_id"))
        batch_op.create_index("ix_sessions_project_id", ["project_id"], unique=False)
        for column in (
            "process_group",
            "last_seq",
            "failure",
            "snapshot_commit",
            "snapshot_ref",
            "base_commit",
            "base_ref",
            "branch",
            "workspace_state",
            "workspace_path",
            "workspace_kind",
            "config",
            "agent",
            "task",
        ):
            batch_op.drop_column(column)
