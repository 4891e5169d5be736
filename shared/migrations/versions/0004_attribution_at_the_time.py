"""jobs and attempts record their router key's team, project and environment (at submission, at the call),
so usage reports keep jobs and spend with the team that made them after a key moves. Existing rows get their
key's current attribution, the best knowledge there is.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 00:55:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("jobs", "attempts")
_COLUMNS = (("team", 64), ("project", 64), ("environment", 16))


def upgrade() -> None:
    api_keys = sa.table("api_keys", sa.column("id"), *(sa.column(name) for name, _ in _COLUMNS))
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, length in _COLUMNS:
                batch_op.add_column(sa.Column(name, sa.String(length=length), nullable=True))
        rows = sa.table(table, sa.column("api_key_id"), *(sa.column(name) for name, _ in _COLUMNS))
        op.execute(
            rows.update()
            .where(rows.c.api_key_id.is_not(None))
            .values(
                {
                    name: sa.select(api_keys.c[name]).where(api_keys.c.id == rows.c.api_key_id).scalar_subquery()
                    for name, _ in _COLUMNS
                }
            )
        )


def downgrade() -> None:
    for table in reversed(_TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, _ in reversed(_COLUMNS):
                batch_op.drop_column(name)
