"""task escalations: the steps of user tasks' escalation ladders, scheduled and fired

Revision ID: 2d07238054f2
Revises: 7c1d2e3f4a5b
Create Date: 2026-12-03 15:12:41.380414
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import engine.storage.models

revision: str = "2d07238054f2"
down_revision: str | None = "7c1d2e3f4a5b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "task_escalations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("workflow_instance_id", sa.String(length=36), nullable=False),
        sa.Column("step", sa.SmallInteger(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("due_at", engine.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("fired_at", engine.storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "detail", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True
        ),
        sa.Column("notify_pending", sa.Boolean(), nullable=False),
        sa.Column("notify_attempts", sa.SmallInteger(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", engine.storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_task_escalations_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_escalations")),
        sa.UniqueConstraint("task_id", "step", name=op.f("uq_task_escalations_task_id_step")),
    )
    with op.batch_alter_table("task_escalations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_task_escalations_due",
            ["due_at"],
            unique=False,
            postgresql_where=sa.text("status = 'SCHEDULED'"),
            sqlite_where=sa.text("status = 'SCHEDULED'"),
        )
        batch_op.create_index(
            "ix_task_escalations_unsent",
            ["lease_expires_at"],
            unique=False,
            postgresql_where=sa.text("notify_pending"),
            sqlite_where=sa.text("notify_pending"),
        )


def downgrade() -> None:
    with op.batch_alter_table("task_escalations", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_task_escalations_unsent",
            postgresql_where=sa.text("notify_pending"),
            sqlite_where=sa.text("notify_pending"),
        )
        batch_op.drop_index(
            "ix_task_escalations_due",
            postgresql_where=sa.text("status = 'SCHEDULED'"),
            sqlite_where=sa.text("status = 'SCHEDULED'"),
        )

    op.drop_table("task_escalations")
