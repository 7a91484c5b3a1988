"""held signals and correlation keys

Revision ID: f1b2c4d6e8a0
Revises: 2d07238054f2
Create Date: 2026-12-03 15:40:00.000000

A signal to a node its instance has not reached is held (``held_signals``) and applied when a token
arrives; the instance lists the nodes with one (``held_signals``), so transitions of other instances
never look. An instance may carry a business key, unique per definition when set.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import engine.storage.models

revision: str = "f1b2c4d6e8a0"
down_revision: str | None = "2d07238054f2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
HAS_KEY = "correlation_key IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("workflow_instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("correlation_key", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("held_signals", JSON, server_default=sa.text("'[]'"), nullable=False))
        batch_op.create_index(
            "ux_workflow_instances_correlation", ["definition_key", "correlation_key"], unique=True,
            postgresql_where=sa.text(HAS_KEY), sqlite_where=sa.text(HAS_KEY),
        )  # fmt: skip
    op.create_table(
        "held_signals",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workflow_instance_id", sa.String(length=36), nullable=False),
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("sent_by", sa.String(length=64), nullable=True),
        sa.Column("sent_at", engine.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("applied_at", engine.storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("task_id", sa.String(length=36), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_instance_id"], ["workflow_instances.id"],
            name=op.f("fk_held_signals_workflow_instance_id_workflow_instances"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_held_signals")),
    )  # fmt: skip
    op.create_index(
        "ux_held_signals_waiting", "held_signals", ["workflow_instance_id", "node_id"], unique=True,
        postgresql_where=sa.text("applied_at IS NULL"), sqlite_where=sa.text("applied_at IS NULL"),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ux_held_signals_waiting", table_name="held_signals")
    op.drop_table("held_signals")
    with op.batch_alter_table("workflow_instances", schema=None) as batch_op:
        batch_op.drop_index("ux_workflow_instances_correlation")
        batch_op.drop_column("held_signals")
        batch_op.drop_column("correlation_key")
