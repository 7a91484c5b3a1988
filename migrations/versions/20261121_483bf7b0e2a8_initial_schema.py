"""initial schema

Revision ID: 483bf7b0e2a8
Revises:
Create Date: 2026-11-21 13:07:03.419942
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import engine.storage.models

revision: str = "483bf7b0e2a8"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "groups",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_groups")),
    )
    op.create_table(
        "roles",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_roles")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("created_at", engine.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )
    op.create_table(
        "workflow_definitions",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column(
            "document", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("deployed_by", sa.String(length=64), nullable=True),
        sa.Column("deployed_at", engine.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", "version", name=op.f("pk_workflow_definitions")),
    )
    op.create_table(
        "workflow_instances",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("definition_key", sa.String(length=128), nullable=False),
        sa.Column("definition_version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column(
            "data", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column(
            "tokens", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("started_by", sa.String(length=64), nullable=False),
        sa.Column("started_at", engine.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", engine.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", engine.storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_instances")),
    )
    with op.batch_alter_table("workflow_instances", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_workflow_instances_started_by"), ["started_by"], unique=False)

    op.create_table(
        "step_instances",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workflow_instance_id", sa.String(length=36), nullable=False),
        sa.Column("milestone_key", sa.String(length=128), nullable=False),
        sa.Column("step_key", sa.String(length=128), nullable=False),
        sa.Column("created_at", engine.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_instance_id"],
            ["workflow_instances.id"],
            name=op.f("fk_step_instances_workflow_instance_id_workflow_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_instances")),
        sa.UniqueConstraint(
            "workflow_instance_id", "step_key", name=op.f("uq_step_instances_workflow_instance_id_step_key")
        ),
    )
    op.create_table(
        "user_groups",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("group_key", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_key"], ["groups.key"], name=op.f("fk_user_groups_group_key_groups"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_groups_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "group_key", name=op.f("pk_user_groups")),
    )
    op.create_table(
        "user_roles",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("role_key", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["role_key"], ["roles.key"], name=op.f("fk_user_roles_role_key_roles"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_roles_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "role_key", name=op.f("pk_user_roles")),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workflow_instance_id", sa.String(length=36), nullable=False),
        sa.Column("step_instance_id", sa.String(length=36), nullable=False),
        sa.Column("token_id", sa.String(length=36), nullable=False),
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("schema_type", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("signal_name", sa.String(length=128), nullable=True),
        sa.Column("assigned_role", sa.String(length=64), nullable=True),
        sa.Column("assigned_user_id", sa.String(length=64), nullable=True),
        sa.Column("assigned_group", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column(
            "input", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column(
            "output", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column(
            "draft", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True
        ),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", engine.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", engine.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("due_at", engine.storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", engine.storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_by", sa.String(length=64), nullable=True),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("next_run_at", engine.storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", engine.storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["step_instance_id"],
            ["step_instances.id"],
            name=op.f("fk_tasks_step_instance_id_step_instances"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workflow_instance_id"],
            ["workflow_instances.id"],
            name=op.f("fk_tasks_workflow_instance_id_workflow_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        sa.UniqueConstraint("workflow_instance_id", "token_id", name=op.f("uq_tasks_workflow_instance_id_token_id")),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index("ix_tasks_group_inbox", ["assigned_group", "status", "created_at"], unique=False)
        batch_op.create_index("ix_tasks_role_inbox", ["assigned_role", "status", "created_at"], unique=False)
        batch_op.create_index("ix_tasks_runnable", ["kind", "status", "next_run_at"], unique=False)
        batch_op.create_index("ix_tasks_step", ["step_instance_id", "status"], unique=False)
        batch_op.create_index("ix_tasks_user_inbox", ["assigned_user_id", "status", "created_at"], unique=False)

    op.create_table(
        "documents",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("requirement_key", sa.String(length=128), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("uploaded_by", sa.String(length=64), nullable=False),
        sa.Column("uploaded_at", engine.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_documents_task_id_tasks"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_documents")),
    )
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_documents_task_id"), ["task_id"], unique=False)

    op.create_table(
        "task_attempts",
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", engine.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", engine.storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "request", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column(
            "response", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_task_attempts_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("task_id", "number", name=op.f("pk_task_attempts")),
    )
    op.create_table(
        "task_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("step_instance_id", sa.String(length=36), nullable=False),
        sa.Column("workflow_instance_id", sa.String(length=36), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=True),
        sa.Column("occurred_at", engine.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_task_events_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_events")),
    )
    with op.batch_alter_table("task_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_events_task_id"), ["task_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_task_events_workflow_instance_id"), ["workflow_instance_id"], unique=False)

    op.create_table(
        "task_messages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("author_id", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("posted_at", engine.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_task_messages_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_messages")),
    )
    with op.batch_alter_table("task_messages", schema=None) as batch_op:
        batch_op.create_index("ix_task_messages_thread", ["task_id", "posted_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("task_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_task_messages_thread")

    op.drop_table("task_messages")
    with op.batch_alter_table("task_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_events_workflow_instance_id"))
        batch_op.drop_index(batch_op.f("ix_task_events_task_id"))

    op.drop_table("task_events")
    op.drop_table("task_attempts")
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_documents_task_id"))

    op.drop_table("documents")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_user_inbox")
        batch_op.drop_index("ix_tasks_step")
        batch_op.drop_index("ix_tasks_runnable")
        batch_op.drop_index("ix_tasks_role_inbox")
        batch_op.drop_index("ix_tasks_group_inbox")

    op.drop_table("tasks")
    op.drop_table("user_roles")
    op.drop_table("user_groups")
    op.drop_table("step_instances")
    with op.batch_alter_table("workflow_instances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workflow_instances_started_by"))

    op.drop_table("workflow_instances")
    op.drop_table("workflow_definitions")
    op.drop_table("users")
    op.drop_table("roles")
    op.drop_table("groups")
