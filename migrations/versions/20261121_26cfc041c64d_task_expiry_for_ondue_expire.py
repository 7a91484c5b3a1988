"""task expiry for onDue expire

Revision ID: 26cfc041c64d
Revises: 483bf7b0e2a8
Create Date: 2026-11-21 13:23:55.994005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.storage.models

revision: str = "26cfc041c64d"
down_revision: str | None = "483bf7b0e2a8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", engine.storage.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_tasks_expiry", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_expiry")
        batch_op.drop_column("expires_at")
