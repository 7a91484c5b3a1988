"""What a webhook subscription is, and the record of delivering one event to it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from engine.state import Task, TaskEvent, TaskEventKind


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"
    """To be sent (again) at ``next_attempt_at``; later events of its task wait for it."""
    DELIVERED = "DELIVERED"
    """The receiver answered 2xx."""
    FAILED = "FAILED"
    """Given up (every attempt used, or the host policy refuses the URL): ``redeliverWebhook`` sends it again."""


@dataclass(frozen=True)
class WebhookFilter:
    """Which tasks' events a webhook wants; an unset field matches every task."""

    definition_key: str | None = None
    node_id: str | None = None
    role: str | None = None

    def matches(self, task: Task, definition_key: str) -> bool:
        return (
            (self.definition_key is None or self.definition_key == definition_key)
            and (self.node_id is None or self.node_id == task.node_id)
            and (self.role is None or self.role == task.assigned_role)
        )

    def to_json(self) -> dict[str, str]:
        values = {"definitionKey": self.definition_key, "nodeId": self.node_id, "role": self.role}
        return {key: value for key, value in values.items() if value is not None}

    @classmethod
    def from_json(cls, document: Mapping[str, Any] | None) -> WebhookFilter:
        document = document or {}
        return cls(document.get("definitionKey"), document.get("nodeId"), document.get("role"))


@dataclass(frozen=True)
class Webhook:
    id: str
    url: str
    events: tuple[TaskEventKind, ...]
    """The kinds delivered, sorted; empty: every kind."""
    filter: WebhookFilter
    enabled: bool
    created_by: str
    created_at: datetime
    updated_at: datetime
    secret: str = field(repr=False)
    previous_secret: str | None = field(default=None, repr=False)
    previous_secret_until: datetime | None = None
    """Until then the previous secret signs too (the rotation's grace period)."""
    cursor: int = 0
    """The event log position this webhook has been matched against (its deliveries are queued up to it)."""

    def wants(self, event: TaskEvent, task: Task, definition_key: str) -> bool:
        return (not self.events or event.kind in self.events) and self.filter.matches(task, definition_key)

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets that sign a delivery sent ``now``: the current one, and the previous during its grace."""
        if self.previous_secret and self.previous_secret_until is not None and now < self.previous_secret_until:
            return [self.secret, self.previous_secret]
        return [self.secret]


@dataclass(frozen=True)
class WebhookAttempt:
    number: int
    started_at: datetime
    finished_at: datetime
    status_code: int | None
    error: str | None


@dataclass(frozen=True)
class WebhookDelivery:
    """One event for one webhook. ``position`` is the event's place in the log, sent as the delivery id:
    every attempt and redelivery of it carries the same id, so a receiver drops the duplicates."""

    id: str
    webhook_id: str
    position: int
    task_id: str
    event_kind: TaskEventKind
    payload: Mapping[str, Any]
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
