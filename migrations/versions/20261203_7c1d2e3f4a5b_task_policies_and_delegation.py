"""task approval policies, separation of duties and delegation

Revision ID: 7c1d2e3f4a5b
Revises: b8e41f07a6d2
Create Date: 2026-12-03 15:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "7c1d2e3f4a5b"
down_revision: str | None = "b8e41f07a6d2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "policy", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True
            )  # fmt: skip
        )
        batch_op.add_column(sa.Column("candidate_users", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("delegated_to", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("blocked_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("blocked_reason")
        batch_op.drop_column("delegated_to")
        batch_op.drop_column("candidate_users")
        batch_op.drop_column("policy")
