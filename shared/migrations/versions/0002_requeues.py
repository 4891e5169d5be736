"""jobs.requeues (how often an operator re-queued the job) and an index on jobs (state, finished_at) for dead
letters, re-queue and purge by age.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 18:51:52.890451
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("requeues", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index("ix_jobs_state_finished", ["state", "finished_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_state_finished")
        batch_op.drop_column("requeues")
