"""webhook delivery log purge index

Revision ID: 04d30a38ffa8
Revises: 55113c6df3d0
Create Date: 2026-12-03 16:29:04.156871

The worker deletes settled webhook deliveries (delivered or given up) older than STEPWISE_WEBHOOK_LOG_DAYS,
with their attempts; this index finds them by age without reading the pending ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "04d30a38ffa8"
down_revision: str | None = "55113c6df3d0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_deliveries_settled",
            ["created_at"],
            unique=False,
            postgresql_where=sa.text("NOT (status = 'PENDING')"),
            sqlite_where=sa.text("NOT (status = 'PENDING')"),
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_webhook_deliveries_settled",
            postgresql_where=sa.text("NOT (status = 'PENDING')"),
            sqlite_where=sa.text("NOT (status = 'PENDING')"),
        )
