"""Runtime state: workflow instances, tokens, step instances, tasks, events, messages, documents.

These are what repositories return and what the schema maps; ORM rows never leave storage.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from engine.definitions.model import Priority
from engine.tasks.policy_state import TaskPolicy


class InstanceStatus(StrEnum):
    RUNNING = "RUNNING"
    WAITING_FOR_SIGNAL = "WAITING_FOR_SIGNAL"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self in (InstanceStatus.COMPLETED, InstanceStatus.FAILED, InstanceStatus.CANCELLED)


class TaskKind(StrEnum):
    USER = "USER"
    SYSTEM = "SYSTEM"


class TaskStatus(StrEnum):
    PENDING = "PENDING"
    CLAIMED = "CLAIMED"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"

    @property
    def is_open(self) -> bool:
        return self in OPEN_TASK_STATUSES


OPEN_TASK_STATUSES = frozenset({TaskStatus.PENDING, TaskStatus.CLAIMED, TaskStatus.RUNNING, TaskStatus.WAITING})
ACTIVE_TASK_STATUSES = frozenset({TaskStatus.CLAIMED, TaskStatus.RUNNING, TaskStatus.WAITING})
BLOCKED_TASK_STATUSES = frozenset({TaskStatus.FAILED, TaskStatus.EXPIRED})


class TaskDisplayStatus(StrEnum):
    TO_DO = "TO_DO"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


def display_status(status: TaskStatus) -> TaskDisplayStatus:
    """The badge of docs/design.md §1's table."""
    if status is TaskStatus.PENDING:
        return TaskDisplayStatus.TO_DO
    if status in ACTIVE_TASK_STATUSES:
        return TaskDisplayStatus.IN_PROGRESS
    if status is TaskStatus.COMPLETED:
        return TaskDisplayStatus.COMPLETED
    return TaskDisplayStatus.FAILED


class TaskEventKind(StrEnum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    CLAIMED = "CLAIMED"
    ASSIGNED = "ASSIGNED"
    PROGRESS_SAVED = "PROGRESS_SAVED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    RETRIED = "RETRIED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    MESSAGE_POSTED = "MESSAGE_POSTED"
    DECIDED = "DECIDED"
    """One approver's decision on a task with an approval policy that did not settle its outcome."""
    DELEGATED = "DELEGATED"
    RESOLVED = "RESOLVED"
    ESCALATED = "ESCALATED"
    """An escalation step reassigned or completed the task (the step is in the event's data)."""
    REMINDED = "REMINDED"
    """An escalation step reminded the assignee or the candidates (its recipients in the event's data)."""


PRIORITY_RANK: Mapping[Priority, int] = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.URGENT: 3}
PRIORITY_BY_RANK: Mapping[int, Priority] = {rank: priority for priority, rank in PRIORITY_RANK.items()}


_RANDOM_BITS = 74  # a UUIDv7's rand_a (12 bits) and rand_b (62 bits)
_last_id_payload = 0
_id_lock = threading.Lock()


def new_id() -> str:
    """A time-ordered UUID (version 7 layout): inserts land at the end of B-tree indexes.

    Monotonic within the process (RFC 9562 §6.2, method 3): an id made in the same millisecond as
    the previous one is that one plus one, so ids sort in the order they were made; tasks created
    together in one transition (same ``created_at``) list in creation order.
    """
    global _last_id_payload
    fresh = (time.time_ns() // 1_000_000) << _RANDOM_BITS | int.from_bytes(os.urandom(10), "big") >> 6
    with _id_lock:
        payload = _last_id_payload = max(fresh, _last_id_payload + 1)
    rand_a, rand_b = (payload >> 62) & 0xFFF, payload & ((1 << 62) - 1)
    value = (payload >> _RANDOM_BITS) << 80 | 0x7 << 76 | rand_a << 64 | 0x2 << 62 | rand_b
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@dataclass(frozen=True)
class Token:
    """A position in the graph. ``task_id`` is set while it waits at a task; ``arrived_from`` at a join."""

    id: str
    node_id: str
    task_id: str | None = None
    arrived_from: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": self.id, "node": self.node_id}
        if self.task_id is not None:
            doc["task"] = self.task_id
        if self.arrived_from is not None:
            doc["from"] = self.arrived_from
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Token:
        return cls(id=doc["id"], node_id=doc["node"], task_id=doc.get("task"), arrived_from=doc.get("from"))


@dataclass(frozen=True)
class WorkflowInstance:
    id: str
    definition_key: str
    definition_version: int
    status: InstanceStatus
    data: Mapping[str, Any]
    tokens: tuple[Token, ...]
    started_by: str
    started_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    revision: int = 0
    error: str | None = None
    correlation_key: str | None = None
    """A business key, unique per definition when set (``correlate`` finds the instance by it)."""
    held_signals: tuple[str, ...] = ()
    """Nodes a signal was sent to before a token reached them (``Transition.hold_signal``)."""


@dataclass(frozen=True)
class StepInstance:
    id: str
    workflow_instance_id: str
    milestone_key: str
    step_key: str
    created_at: datetime


@dataclass(frozen=True)
class StepMetrics:
    total: int = 0
    active: int = 0
    completed: int = 0
    blocked: int = 0


@dataclass(frozen=True)
class Task:
    """One node visit. User-task fields follow the seed's ``UserTaskInstance``."""

    id: str
    workflow_instance_id: str
    step_instance_id: str
    token_id: str
    node_id: str
    kind: TaskKind
    type: str
    schema_type: str
    name: str
    title: str
    description: str | None
    signal_name: str | None
    assigned_role: str | None
    assigned_user_id: str | None
    assigned_group: str | None
    status: TaskStatus
    priority: Priority
    input: Mapping[str, Any]
    output: Any
    draft: Mapping[str, Any] | None
    revision: int
    created_at: datetime
    updated_at: datetime
    due_at: datetime | None = None
    completed_at: datetime | None = None
    completed_by: str | None = None
    attempt_count: int = 0
    next_run_at: datetime | None = None
    error: str | None = None
    expires_at: datetime | None = None
    policy: TaskPolicy | None = None
    """The rules the task is decided by (engine.tasks.policies): its approval levels and decisions so far,
    and the users its ``excludes`` shut out; None for a task with neither."""
    candidate_users: tuple[str, ...] = ()
    """Approvers named one by one (an approval level's ``users``), who see and decide it like a role's holders."""
    delegated_to: str | None = None
    """While delegated: the delegate, who works on it and resolves it back to the assignee (its owner)."""
    blocked_reason: str | None = None
    """Why no one may work on it (separation of duties left no eligible user), or None."""


class EscalationStatus(StrEnum):
    SCHEDULED = "SCHEDULED"
    FIRED = "FIRED"
    CANCELLED = "CANCELLED"
    """The task ended (or an earlier step completed it) before the step's time."""


@dataclass(frozen=True)
class TaskEscalation:
    """One step of a task's escalation ladder, past or scheduled."""

    id: str
    task_id: str
    workflow_instance_id: str
    step: int
    action: str
    status: EscalationStatus
    due_at: datetime
    fired_at: datetime | None = None
    detail: Mapping[str, Any] | None = None

    def status_with(self, task: Task) -> EscalationStatus:
        """As the API shows it: a step still scheduled on a task that is no longer open will never fire
        (the worker marks it ``CANCELLED`` once its time comes)."""
        if self.status is EscalationStatus.SCHEDULED and task.status not in (TaskStatus.PENDING, TaskStatus.CLAIMED):
            return EscalationStatus.CANCELLED
        return self.status


@dataclass(frozen=True)
class TaskEvent:
    id: int
    position: int | None
    """Its place in the event log, which readers' cursors name (:mod:`engine.events.numbering`); None until
    numbered, for a moment after its commit on PostgreSQL."""
    kind: TaskEventKind
    task_id: str
    step_instance_id: str
    workflow_instance_id: str
    actor_id: str | None
    occurred_at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HeldSignal:
    """A signal sent to a node before a token reached it: applied once when one does (``applied_at``,
    the ``task_id`` it completed); an instance that ends without reaching it reports it unused."""

    id: str
    workflow_instance_id: str
    node_id: str
    payload: Any
    sent_by: str | None
    sent_at: datetime
    applied_at: datetime | None = None
    task_id: str | None = None
    revision: int = 0


@dataclass(frozen=True)
class TaskMessage:
    id: str
    task_id: str
    author_id: str
    body: str
    posted_at: datetime


@dataclass(frozen=True)
class Document:
    id: str
    task_id: str
    requirement_key: str
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_by: str
    uploaded_at: datetime


@dataclass(frozen=True)
class TaskAttempt:
    task_id: str
    number: int
    started_at: datetime
    finished_at: datetime | None
    request: Any
    response: Any
    error: str | None


SERVICE_ROLE = "service"
"""The directory role that marks a user as a service account."""


@dataclass(frozen=True)
class User:
    """A directory user; ``id`` is the username (``alice``)."""

    id: str
    name: str
    email: str | None = None
    roles: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def is_manager(self) -> bool:
        return "manager" in self.roles

    @property
    def is_service(self) -> bool:
        """A service account (``stepwise service-account create``): an automated caller, not a person."""
        return SERVICE_ROLE in self.roles

    def to_template(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "email": self.email, "roles": sorted(self.roles),
                "groups": sorted(self.groups)}  # fmt: skip


@dataclass(frozen=True)
class DeployedDefinition:
    key: str
    version: int
    title: str
    document: Mapping[str, Any]
    deployed_at: datetime
    deployed_by: str | None
