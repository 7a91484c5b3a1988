"""an index of delegated tasks

Revision ID: 5e2b8c4d1f60
Revises: 3a7c9e1b5d20
Create Date: 2026-12-04 02:45:00.000000

"Assigned to me" is the assignee's or the delegate's (docs/approvals.md, delegation), so the inbox reads the
assignee's index and this one and merges them. Only delegated tasks are in it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e2b8c4d1f60"
down_revision: str | None = "3a7c9e1b5d20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DELEGATED = "delegated_to IS NOT NULL"


def upgrade() -> None:
    op.create_index(
        "ix_tasks_delegated", "tasks", ["delegated_to", "created_at", "id"],
        postgresql_where=sa.text(_DELEGATED), sqlite_where=sa.text(_DELEGATED),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_tasks_delegated", table_name="tasks")
