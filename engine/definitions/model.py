"""Workflow definitions: immutable once deployed, so every class here is a frozen dataclass.

A definition is milestones → steps → node ids, plus the nodes and the edges between them. The JSON
format of docs/design.md §2 is read by :mod:`engine.definitions.parsing` and produced by
:mod:`engine.definitions.builder`; ``to_json`` writes the same format back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any

from engine.definitions.approval import ApprovalPolicy
from engine.definitions.durations import Span, format_duration, span_to_json
from engine.definitions.escalations import EscalationStep


class NodeType(StrEnum):
    """Built-in node types; registered custom types are plain strings."""

    USER_TASK = "userTask"
    HTTP = "http"
    GRAPHQL = "graphql"
    JAVASCRIPT = "javascript"
    EMAIL = "email"
    DELAY = "delay"
    ECHO = "echo"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class OnDue(StrEnum):
    NONE = "none"
    EXPIRE = "expire"


FORM_SCHEMA_TYPE = "userTask.form"
APPROVAL_SCHEMA_TYPE = "userTask.approval"
DOCUMENT_UPLOAD_SCHEMA_TYPE = "userTask.documentUpload"
ACTION_APPROVAL_SCHEMA_TYPE = "userTask.actionApproval"
DECIDED_SCHEMA_TYPES = frozenset({APPROVAL_SCHEMA_TYPE, ACTION_APPROVAL_SCHEMA_TYPE})
"""User tasks decided (approved or rejected) rather than submitted: the ones approval policies apply to."""

FIELD_TYPES = frozenset({"text", "number", "date", "checkbox", "dropdown", "multiselect"})
FIELD_TYPES_WITH_OPTIONS = frozenset({"dropdown", "multiselect"})


@dataclass(frozen=True)
class FormField:
    key: str
    type: str
    label: str
    required: bool = False
    options: tuple[str, ...] | None = None
    mask: str | None = None
    multiline: bool | None = None
    min: float | None = None
    max: float | None = None
    max_length: int | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"key": self.key, "type": self.type, "label": self.label}
        if self.required:
            doc["required"] = True
        optional = {
            "options": list(self.options) if self.options is not None else None,
            "mask": self.mask,
            "multiline": self.multiline,
            "min": self.min,
            "max": self.max,
            "maxLength": self.max_length,
        }
        doc.update({k: v for k, v in optional.items() if v is not None})
        return doc


@dataclass(frozen=True)
class Form:
    fields: tuple[FormField, ...] = ()

    def field(self, key: str) -> FormField | None:
        return next((f for f in self.fields if f.key == key), None)

    def to_json(self) -> dict[str, Any]:
        return {"fields": [f.to_json() for f in self.fields]}


@dataclass(frozen=True)
class DocumentRequirement:
    key: str
    label: str
    accept: tuple[str, ...] = ("*/*",)
    min_files: int = 1
    max_files: int | None = None
    max_bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "key": self.key,
            "label": self.label,
            "accept": list(self.accept),
            "minFiles": self.min_files,
        }
        if self.max_files is not None:
            doc["maxFiles"] = self.max_files
        if self.max_bytes is not None:
            doc["maxBytes"] = self.max_bytes
        return doc


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed system task is retried; validated on construction like Temporal's ``RetryPolicy``."""

    max_attempts: int = 3
    initial_interval: timedelta = timedelta(seconds=1)
    backoff_coefficient: float = 2.0
    maximum_interval: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("maxAttempts must be at least 1")
        if self.initial_interval <= timedelta(0):
            raise ValueError("initialInterval must be positive")
        if self.backoff_coefficient < 1:
            raise ValueError("backoffCoefficient must be at least 1")
        if self.maximum_interval < self.initial_interval:
            raise ValueError("maximumInterval must not be shorter than initialInterval")

    def delay_before(self, attempt: int) -> timedelta:
        """The back-off before attempt number ``attempt`` (the first retry is attempt 2)."""
        seconds = self.initial_interval.total_seconds() * self.backoff_coefficient ** max(attempt - 2, 0)
        return min(timedelta(seconds=seconds), self.maximum_interval)

    def to_json(self) -> dict[str, Any]:
        return {
            "maxAttempts": self.max_attempts,
            "initialInterval": format_duration(self.initial_interval),
            "backoffCoefficient": self.backoff_coefficient,
            "maximumInterval": format_duration(self.maximum_interval),
        }


@dataclass(frozen=True)
class NotifyPolicy:
    """``"notify"`` on a user task: whom the engine tells when the task is created (or assigned).

    ``email``: the assignee gets a message with Approve / Reject / Open links (approval tasks; Open for
    others) that act as them, once; ``candidates``: on a task for a role or group nobody holds yet, its
    members do."""

    email: bool = False
    candidates: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"email": self.email, **({"candidates": True} if self.candidates else {})}


@dataclass(frozen=True)
class Node:
    """One node of the graph. User-task keys are set for ``userTask`` nodes, ``config`` for system ones."""

    id: str
    type: str
    name: str = ""
    schema_type: str | None = None
    title: str | None = None
    description: str | None = None
    signal: str | None = None
    assign_to_role: str | None = None
    assign_to_user: str | None = None
    assign_to_group: str | None = None
    assign_with: str | None = None
    store_as: str | None = None
    priority: Priority = Priority.NORMAL
    due_in: Span | None = None
    due_at: str | None = None
    on_due: OnDue = OnDue.NONE
    form: Form | None = None
    documents: tuple[DocumentRequirement, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)
    retry: RetryPolicy | None = None
    join: str | None = None
    approval: ApprovalPolicy | None = None
    excludes: tuple[str, ...] = ()
    escalation: tuple[EscalationStep, ...] = ()
    notify: NotifyPolicy | None = None

    @property
    def is_user_task(self) -> bool:
        return self.type == NodeType.USER_TASK

    @property
    def display_name(self) -> str:
        return self.name or self.title or self.id

    @property
    def signal_name(self) -> str:
        return self.signal or f"{self.id}_signal"

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": self.id, "type": self.type}
        optional: dict[str, Any] = {
            "name": self.name or None,
            "schemaType": self.schema_type,
            "title": self.title,
            "description": self.description,
            "signal": self.signal,
            "assignToRole": self.assign_to_role,
            "assignToUser": self.assign_to_user,
            "assignToGroup": self.assign_to_group,
            "assignWith": self.assign_with,
            "storeAs": self.store_as,
            "dueIn": span_to_json(self.due_in) if self.due_in is not None else None,
            "dueAt": self.due_at,
            "form": self.form.to_json() if self.form is not None else None,
            "documents": [d.to_json() for d in self.documents] or None,
            "config": dict(self.config) or None,
            "retry": self.retry.to_json() if self.retry is not None else None,
            "join": self.join,
            "approval": self.approval.to_json() if self.approval is not None else None,
            "excludes": list(self.excludes) or None,
            "escalation": [step.to_json() for step in self.escalation] or None,
            "notify": self.notify.to_json() if self.notify is not None else None,
        }
        if self.is_user_task:
            optional["priority"] = self.priority.value
            optional["onDue"] = self.on_due.value if self.on_due is not OnDue.NONE else None
        doc.update({k: v for k, v in optional.items() if v is not None})
        return doc


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    when: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"from": self.source, "to": self.target}
        if self.when is not None:
            doc["when"] = self.when
        return doc


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    nodes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "nodes": list(self.nodes)}


@dataclass(frozen=True)
class Milestone:
    key: str
    title: str
    steps: tuple[Step, ...]

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "steps": [s.to_json() for s in self.steps]}


@dataclass(frozen=True)
class WorkflowDefinition:
    """A whole workflow. ``version`` is 0 until deployed; deploying assigns it."""

    key: str
    title: str
    start: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...] = ()
    milestones: tuple[Milestone, ...] = ()
    version: int = 0
    start_roles: tuple[str, ...] = ()
    searchable: tuple[str, ...] = ()
    """Data paths (``amount``, ``customer.id``) searched often enough to be indexed on PostgreSQL, in
    instance data and task input (:mod:`engine.storage.postgres.search_indexes`)."""

    @cached_property
    def _nodes_by_id(self) -> dict[str, Node]:
        return {node.id: node for node in self.nodes}

    @cached_property
    def _edges_by_source(self) -> dict[str, tuple[Edge, ...]]:
        return {n.id: tuple(e for e in self.edges if e.source == n.id) for n in self.nodes}

    @cached_property
    def _edges_by_target(self) -> dict[str, tuple[Edge, ...]]:
        return {n.id: tuple(e for e in self.edges if e.target == n.id) for n in self.nodes}

    @cached_property
    def _steps_by_node(self) -> dict[str, tuple[Milestone, Step]]:
        return {node_id: (m, s) for m in self.milestones for s in m.steps for node_id in s.nodes}

    @cached_property
    def _step_titles(self) -> dict[str, str]:
        return {s.key: s.title for m in self.milestones for s in m.steps}

    def node(self, node_id: str) -> Node:
        return self._nodes_by_id[node_id]

    def step_title(self, step_key: str) -> str:
        """The title of the step ``step_key``, or the key itself where the definition names no such step."""
        return self._step_titles.get(step_key, step_key)

    def has_node(self, node_id: str) -> bool:
        return node_id in self._nodes_by_id

    def outgoing(self, node_id: str) -> tuple[Edge, ...]:
        return self._edges_by_source.get(node_id, ())

    def incoming(self, node_id: str) -> tuple[Edge, ...]:
        return self._edges_by_target.get(node_id, ())

    def step_of(self, node_id: str) -> tuple[Milestone, Step] | None:
        return self._steps_by_node.get(node_id)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "key": self.key,
            "title": self.title,
            "milestones": [m.to_json() for m in self.milestones],
            "start": self.start,
            "nodes": [n.to_json() for n in self.nodes],
            "edges": [e.to_json() for e in self.edges],
        }
        if self.start_roles:
            doc["startRoles"] = list(self.start_roles)
        if self.searchable:
            doc["searchable"] = list(self.searchable)
        return doc
