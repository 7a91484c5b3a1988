"""approval callbacks

Revision ID: 3a7c9e1b5d20
Revises: 04d30a38ffa8
Create Date: 2026-12-03 16:45:00.000000

``requestApproval(callbackUrl:)``: the decision of an action approval is POSTed, signed, to
the caller's URL by the worker, retried until the receiver answers 2xx; one row per task.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.storage.models

revision: str = "3a7c9e1b5d20"
down_revision: str | None = "04d30a38ffa8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = "status = 'PENDING'"


def upgrade() -> None:
    op.create_table(
        "approval_callbacks",
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", engine.storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_expires_at", engine.storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", engine.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", engine.storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_approval_callbacks_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_approval_callbacks")),
    )
    op.create_index(
        "ix_approval_callbacks_pending", "approval_callbacks", ["next_attempt_at"], unique=False,
        postgresql_where=sa.text(PENDING), sqlite_where=sa.text(PENDING),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_approval_callbacks_pending", table_name="approval_callbacks")
    op.drop_table("approval_callbacks")
