"""runs: one task, several member sessions; the run's own journal

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), server_default="", nullable=False),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column("mode", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("judge", sa.Text(), nullable=False),
        sa.Column("check_command", sa.Text(), nullable=True),
        sa.Column("config", sa.Text(), server_default="{}", nullable=False),
        sa.Column("options", sa.Text(), server_default="{}", nullable=False),
        sa.Column("base_ref", sa.Text(), nullable=True),
        sa.Column("base_commit", sa.Text(), nullable=True),
        sa.Column("into", sa.Text(), nullable=True),
        sa.Column("round", sa.Integer(), server_default="0", nullable=False),
        sa.Column("winner_slot", sa.Integer(), nullable=True),
        sa.Column("decision", sa.Text(), nullable=True),
        sa.Column("integration_phase", sa.Text(), nullable=True),
        sa.Column("integration_session_id", sa.Text(), nullable=True),
        sa.Column("member_results", sa.Text(), server_default="{}", nullable=False),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column("last_seq", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Text(), nullable=False),
        sa.Column("finished_at", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "mode IN ('competition', 'ensemble', 'debate')", name=op.f("ck_runs_mode")
        ),
        sa.CheckConstraint("judge IN ('user', 'checks', 'agent')", name=op.f("ck_runs_judge")),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_runs_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_runs_project_id_id"), ["project_id", "id"])
        batch_op.create_index(batch_op.f("ix_runs_status_id"), ["status", "id"])
    op.create_table(
        "run_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_events_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_events")),
        sa.UniqueConstraint("run_id", "seq", name=op.f("uq_run_events_run_id_seq")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("run_id", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("slot", sa.Integer(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_sessions_run_id_slot"), ["run_id", "slot"])
        batch_op.create_foreign_key(
            batch_op.f("fk_sessions_run_id_runs"), "runs", ["run_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_sessions_run_id_runs"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("uq_sessions_run_id_slot"), type_="unique")
        batch_op.drop_column("slot")
        batch_op.drop_column("run_id")
    op.drop_table("run_events")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_status_id"))
        batch_op.drop_index(batch_op.f("ix_runs_project_id_id"))
    op.drop_table("runs")
