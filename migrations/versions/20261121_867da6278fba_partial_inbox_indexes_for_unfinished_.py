"""partial inbox indexes for unfinished tasks

Revision ID: 867da6278fba
Revises: 26cfc041c64d
Create Date: 2026-11-21 14:32:45.646538
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "867da6278fba"
down_revision: str | None = "26cfc041c64d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNFINISHED = "status NOT IN ('COMPLETED', 'CANCELLED')"
INDEXES = {
    "ix_tasks_role_unfinished": "assigned_role",
    "ix_tasks_user_unfinished": "assigned_user_id",
    "ix_tasks_group_unfinished": "assigned_group",
}


def upgrade() -> None:
    # CONCURRENTLY (outside a transaction) so a big tasks table keeps taking writes while they build.
    with op.get_context().autocommit_block():
        for name, column in INDEXES.items():
            where = sa.text(UNFINISHED)
            op.create_index(
                name, "tasks", [column, "created_at", "id"],
                postgresql_where=where, sqlite_where=where, postgresql_concurrently=True,
            )  # fmt: skip


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name in INDEXES:
            op.drop_index(name, table_name="tasks", postgresql_concurrently=True)
