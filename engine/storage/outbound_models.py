"""Tables of what the engine sends out, each drained by the worker: webhooks and their deliveries and
attempts, action-approval callbacks, how far the email notifier has read the event log, and the
approve-by-email links that were used.

:mod:`engine.storage.models` imports this module, so ``Base.metadata`` always holds these tables, and
re-exports the table objects.
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
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from engine.storage.columns import Base, JsonType, UTCDateTime


class WebhookRow(Base):
    __tablename__ = "webhooks"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JsonType)
    filter: Mapped[dict[str, Any]] = mapped_column(JsonType)
    enabled: Mapped[bool] = mapped_column(Boolean)
    secret: Mapped[str] = mapped_column(String(128))
    previous_secret: Mapped[str | None] = mapped_column(String(128))
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The event log position matched so far: the worker queues deliveries for the events after it.
    cursor: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


PENDING_DELIVERIES_SQL = "status = 'PENDING'"


class WebhookDeliveryRow(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # One delivery per webhook and event, however many workers queue it.
        UniqueConstraint("webhook_id", "position"),
        # What the worker sends next, and the earlier pending event of the same task it must wait for.
        Index("ix_webhook_deliveries_due", "next_attempt_at", postgresql_where=text(PENDING_DELIVERIES_SQL),
              sqlite_where=text(PENDING_DELIVERIES_SQL)),
        Index("ix_webhook_deliveries_task", "webhook_id", "task_id", "position",
              postgresql_where=text(PENDING_DELIVERIES_SQL), sqlite_where=text(PENDING_DELIVERIES_SQL)),
        # The worker's purge of the log: settled deliveries by age.
        Index("ix_webhook_deliveries_settled", "created_at", postgresql_where=text(f"NOT ({PENDING_DELIVERIES_SQL})"),
              sqlite_where=text(f"NOT ({PENDING_DELIVERIES_SQL})")),
    )  # fmt: skip
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(BigInteger)
    task_id: Mapped[str] = mapped_column(String(36))
    event_kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JsonType)
    status: Mapped[str] = mapped_column(String(16))
    attempt_count: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebhookAttemptRow(Base):
    __tablename__ = "webhook_attempts"
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
                                             primary_key=True)  # fmt: skip
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)


class EventCursorRow(Base):
    """How far a reader of the event log that runs in the worker (the email notifier) has got."""

    __tablename__ = "event_cursors"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)


class EmailActionUseRow(Base):
    """Approve-by-email links that were used: a link's token id is here once it decided its task."""

    __tablename__ = "email_action_uses"
    token_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(36))
    user_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    used_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ApprovalCallbackRow(Base):
    """Where an action approval's decision is sent (``requestApproval``'s ``callbackUrl``), until acknowledged."""

    __tablename__ = "approval_callbacks"
    __table_args__ = (
        Index("ix_approval_callbacks_pending", "next_attempt_at", postgresql_where=text("status = 'PENDING'"),
              sqlite_where=text("status = 'PENDING'")),
    )  # fmt: skip
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    attempt_count: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


webhooks = cast(Table, WebhookRow.__table__)
webhook_deliveries = cast(Table, WebhookDeliveryRow.__table__)
webhook_attempts = cast(Table, WebhookAttemptRow.__table__)
event_cursors = cast(Table, EventCursorRow.__table__)
email_action_uses = cast(Table, EmailActionUseRow.__table__)
approval_callbacks = cast(Table, ApprovalCallbackRow.__table__)
