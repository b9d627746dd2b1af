"""sessions that finish: completed_at, and active_s (seconds spent in turns)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("completed_at", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("active_s", sa.Float(), server_default="0", nullable=False))
        batch_op.create_index(
            batch_op.f("ix_sessions_completed_at_id"), ["completed_at", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sessions_completed_at_id"))
        batch_op.drop_column("active_s")
        batch_op.drop_column("completed_at")
