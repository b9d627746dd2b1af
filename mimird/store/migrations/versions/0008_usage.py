"""turn usage: what each turn used (tokens, cost), summed per session, project and day

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "turn_usage",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("turn_seq", sa.Integer(), nullable=True),
        sa.Column("day", sa.Text(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("output_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cached_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("thought_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("total_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cost_usd", sa.Float(), server_default="0", nullable=False),
        sa.Column("reported_cost_usd", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_turn_usage_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_turn_usage_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_turn_usage")),
    )
    with op.batch_alter_table("turn_usage", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_turn_usage_day"), ["day"], unique=False)
        batch_op.create_index(batch_op.f("ix_turn_usage_project_id"), ["project_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_turn_usage_session_id"), ["session_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("turn_usage", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_turn_usage_session_id"))
        batch_op.drop_index(batch_op.f("ix_turn_usage_project_id"))
        batch_op.drop_index(batch_op.f("ix_turn_usage_day"))
    op.drop_table("turn_usage")
