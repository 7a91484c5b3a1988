"""Table definitions. Alembic migrations are generated from and checked against this metadata. The base
and the column types are in :mod:`engine.storage.columns`, the tables of what the worker sends out
(webhooks, callbacks, email) in :mod:`engine.storage.outbound_models`; this module re-exports both.

The hot paths (transitions, inbox queries) use Core statements on these tables, not ORM units of
work; the declarative classes exist to describe the schema once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from engine.storage.columns import NAMING_CONVENTION as NAMING_CONVENTION
from engine.storage.columns import Base as Base
from engine.storage.columns import EventId as EventId
from engine.storage.columns import JsonType as JsonType
from engine.storage.columns import UTCDateTime as UTCDateTime
from engine.storage.outbound_models import approval_callbacks as approval_callbacks
from engine.storage.outbound_models import email_action_uses as email_action_uses
from engine.storage.outbound_models import event_cursors as event_cursors
from engine.storage.outbound_models import webhook_attempts as webhook_attempts
from engine.storage.outbound_models import webhook_deliveries as webhook_deliveries
from engine.storage.outbound_models import webhooks as webhooks


class UserRow(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RoleRow(Base):
    __tablename__ = "roles"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))


class GroupRow(Base):
    __tablename__ = "groups"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))


class UserRoleRow(Base):
    __tablename__ = "user_roles"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role_key: Mapped[str] = mapped_column(ForeignKey("roles.key", ondelete="CASCADE"), primary_key=True)


class UserGroupRow(Base):
    __tablename__ = "user_groups"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    group_key: Mapped[str] = mapped_column(ForeignKey("groups.key", ondelete="CASCADE"), primary_key=True)


class DefinitionRow(Base):
    __tablename__ = "workflow_definitions"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    document: Mapped[dict[str, Any]] = mapped_column(JsonType)
    deployed_by: Mapped[str | None] = mapped_column(String(64))
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class InstanceRow(Base):
    __tablename__ = "workflow_instances"
    __table_args__ = (
        # A business key is unique per definition when set (a second start with it finds the first).
        Index("ux_workflow_instances_correlation", "definition_key", "correlation_key", unique=True,
              postgresql_where=text("correlation_key IS NOT NULL"), sqlite_where=text("correlation_key IS NOT NULL")),
    )  # fmt: skip
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    definition_key: Mapped[str] = mapped_column(String(128))
    definition_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JsonType)
    tokens: Mapped[list[Any]] = mapped_column(JsonType)
    started_by: Mapped[str] = mapped_column(String(64), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revision: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    correlation_key: Mapped[str | None] = mapped_column(String(255))
    # The nodes with a signal held for them (held_signals): a transition reads a held signal only for these.
    held_signals: Mapped[list[str]] = mapped_column(JsonType, server_default=text("'[]'"))


class StepInstanceRow(Base):
    __tablename__ = "step_instances"
    __table_args__ = (UniqueConstraint("workflow_instance_id", "step_key"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workflow_instance_id: Mapped[str] = mapped_column(ForeignKey("workflow_instances.id", ondelete="CASCADE"))
    milestone_key: Mapped[str] = mapped_column(String(128))
    step_key: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# The inbox's default filter: tasks not finished (failed and expired ones still need someone).
# Partial indexes carry it, and queries must send it as literal SQL: a planner uses a partial index
# only when it can prove the query's WHERE implies the index's, which bound parameters defeat
# (PostgreSQL's generic plans, SQLite always).
FINISHED_TASK_STATUSES = ("COMPLETED", "CANCELLED")
UNFINISHED_TASKS_SQL = "status NOT IN ({})".format(", ".join(f"'{s}'" for s in FINISHED_TASK_STATUSES))


def _inbox_index(name: str, assignee_column: str) -> Index:
    """An inbox by status in creation order. Tasks without this kind of assignee (most have only one
    of role, user and group; system tasks none) are left out: every index a task is in costs each
    insert and update of it, and a lookup ``column = value`` implies ``column IS NOT NULL``."""
    where = text(f"{assignee_column} IS NOT NULL")
    return Index(name, assignee_column, "status", "created_at", postgresql_where=where, sqlite_where=where)


def _unfinished_inbox_index(name: str, assignee_column: str) -> Index:
    """An inbox page of unfinished tasks in creation order, without reading or sorting finished ones
    (nor tasks without this kind of assignee, as :func:`_inbox_index`)."""
    where = text(f"{UNFINISHED_TASKS_SQL} AND {assignee_column} IS NOT NULL")
    return Index(name, assignee_column, "created_at", "id", postgresql_where=where, sqlite_where=where)


# The worker's claim names the kind as literal SQL for the same reason as the unfinished statuses.
SYSTEM_TASK_KIND = "SYSTEM"
SYSTEM_TASKS_SQL = f"kind = '{SYSTEM_TASK_KIND}'"


class TaskRow(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        # Idempotent creation: one task per token (a token id is fresh at every hop).
        UniqueConstraint("workflow_instance_id", "token_id"),
        _inbox_index("ix_tasks_role_inbox", "assigned_role"),
        _inbox_index("ix_tasks_user_inbox", "assigned_user_id"),
        _inbox_index("ix_tasks_group_inbox", "assigned_group"),
        _unfinished_inbox_index("ix_tasks_role_unfinished", "assigned_role"),
        _unfinished_inbox_index("ix_tasks_user_unfinished", "assigned_user_id"),
        _unfinished_inbox_index("ix_tasks_group_unfinished", "assigned_group"),
        Index("ix_tasks_step", "step_instance_id", "status"),
        # "Assigned to me" is the assignee's or the delegate's (docs/approvals.md, delegation); few tasks are delegated.
        Index(
            "ix_tasks_delegated",
            "delegated_to",
            "created_at",
            "id",
            postgresql_where=text("delegated_to IS NOT NULL"),
            sqlite_where=text("delegated_to IS NOT NULL"),
        ),
        # System tasks only (what the worker claims), and user tasks with an expiry only.
        Index(
            "ix_tasks_runnable",
            "status",
            "next_run_at",
            postgresql_where=text(SYSTEM_TASKS_SQL),
            sqlite_where=text(SYSTEM_TASKS_SQL),
        ),
        Index(
            "ix_tasks_expiry",
            "expires_at",
            postgresql_where=text("expires_at IS NOT NULL"),
            sqlite_where=text("expires_at IS NOT NULL"),
        ),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workflow_instance_id: Mapped[str] = mapped_column(ForeignKey("workflow_instances.id", ondelete="CASCADE"))
    step_instance_id: Mapped[str] = mapped_column(ForeignKey("step_instances.id", ondelete="CASCADE"))
    token_id: Mapped[str] = mapped_column(String(36))
    node_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(32))
    schema_type: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    signal_name: Mapped[str | None] = mapped_column(String(128))
    assigned_role: Mapped[str | None] = mapped_column(String(64))
    assigned_user_id: Mapped[str | None] = mapped_column(String(64))
    assigned_group: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(SmallInteger)
    input: Mapped[dict[str, Any]] = mapped_column(JsonType)
    output: Mapped[Any] = mapped_column(JsonType)
    draft: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    revision: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set only where the node says onDue: "expire", so the expiry scan never revisits other tasks.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_by: Mapped[str | None] = mapped_column(String(64))
    attempt_count: Mapped[int] = mapped_column(Integer)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    # Issue #22: approval policies, separation of duties, delegation (engine.tasks.policies).
    policy: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    # Named approvers as ",alice,bob,": the inbox's visibility finds a user's with one LIKE on both databases.
    candidate_users: Mapped[str | None] = mapped_column(Text)
    delegated_to: Mapped[str | None] = mapped_column(String(64))
    blocked_reason: Mapped[str | None] = mapped_column(Text)


class TaskEventRow(Base):
    __tablename__ = "task_events"
    __table_args__ = (
        # Readers' cursors are positions (engine.events.numbering); the sequencer finds what it has yet to number.
        Index("ux_task_events_position", "position", unique=True, postgresql_where=text("position IS NOT NULL"),
              sqlite_where=text("position IS NOT NULL")),
        Index("ix_task_events_unnumbered", "id", postgresql_where=text("position IS NULL"),
              sqlite_where=text("position IS NULL")),
    )  # fmt: skip
    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    position: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    step_instance_id: Mapped[str] = mapped_column(String(36))
    workflow_instance_id: Mapped[str] = mapped_column(String(36), index=True)
    actor_id: Mapped[str | None] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    data: Mapped[dict[str, Any] | None] = mapped_column(JsonType)


class TaskMessageRow(Base):
    __tablename__ = "task_messages"
    __table_args__ = (Index("ix_task_messages_thread", "task_id", "posted_at"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    author_id: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DocumentRow(Base):
    __tablename__ = "documents"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    requirement_key: Mapped[str] = mapped_column(String(128))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_by: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TaskAttemptRow(Base):
    __tablename__ = "task_attempts"
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    request: Mapped[Any] = mapped_column(JsonType)
    response: Mapped[Any] = mapped_column(JsonType)
    error: Mapped[str | None] = mapped_column(Text)


class HeldSignalRow(Base):
    """A signal sent to a node its instance had not reached (Transition.hold_signal): applied once
    when a token arrives there (``applied_at``, ``task_id``); never applied, it is reported unused."""

    __tablename__ = "held_signals"
    __table_args__ = (
        # One waiting signal per node: a second early signal is refused.
        Index("ux_held_signals_waiting", "workflow_instance_id", "node_id", unique=True,
              postgresql_where=text("applied_at IS NULL"), sqlite_where=text("applied_at IS NULL")),
    )  # fmt: skip
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workflow_instance_id: Mapped[str] = mapped_column(ForeignKey("workflow_instances.id", ondelete="CASCADE"))
    node_id: Mapped[str] = mapped_column(String(128))
    payload: Mapped[Any] = mapped_column(JsonType)
    sent_by: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    task_id: Mapped[str | None] = mapped_column(String(36))
    revision: Mapped[int] = mapped_column(Integer)


class IdempotencyKeyRow(Base):
    """A mutation's idempotency key (engine.idempotency): written in the transaction of the change it
    guards, with what that change returned, so a repeat returns it instead of running again."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_expires_at", "expires_at"),)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    operation: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64))
    response: Mapped[Any] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TaskEscalationRow(Base):
    """One step of a user task's escalation ladder (engine.workers.escalations): scheduled when the task is
    created, fired once by a worker that leases it like a system task, or cancelled by the task's end."""

    __tablename__ = "task_escalations"
    __table_args__ = (
        UniqueConstraint("task_id", "step"),
        # What the worker claims: scheduled steps by due time, and reminders whose email is yet to go.
        Index("ix_task_escalations_due", "due_at", postgresql_where=text("status = 'SCHEDULED'"),
              sqlite_where=text("status = 'SCHEDULED'")),
        Index("ix_task_escalations_unsent", "lease_expires_at", postgresql_where=text("notify_pending"),
              sqlite_where=text("notify_pending")),
    )  # fmt: skip
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    workflow_instance_id: Mapped[str] = mapped_column(String(36))
    step: Mapped[int] = mapped_column(SmallInteger)
    action: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    detail: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    """What the step did: the recipients a reminder went to, whom a task was reassigned to."""
    notify_pending: Mapped[bool] = mapped_column(Boolean)
    """A fired reminder whose email has not been sent yet (sent after the step's transition commits)."""
    notify_attempts: Mapped[int] = mapped_column(SmallInteger)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revision: Mapped[int] = mapped_column(Integer)


users = cast(Table, UserRow.__table__)
roles = cast(Table, RoleRow.__table__)
groups = cast(Table, GroupRow.__table__)
user_roles = cast(Table, UserRoleRow.__table__)
user_groups = cast(Table, UserGroupRow.__table__)
definitions = cast(Table, DefinitionRow.__table__)
instances = cast(Table, InstanceRow.__table__)
step_instances = cast(Table, StepInstanceRow.__table__)
tasks = cast(Table, TaskRow.__table__)
task_events = cast(Table, TaskEventRow.__table__)
task_messages = cast(Table, TaskMessageRow.__table__)
documents = cast(Table, DocumentRow.__table__)
task_attempts = cast(Table, TaskAttemptRow.__table__)
idempotency_keys = cast(Table, IdempotencyKeyRow.__table__)
task_escalations = cast(Table, TaskEscalationRow.__table__)
held_signals = cast(Table, HeldSignalRow.__table__)
