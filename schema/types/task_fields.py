"""A task on its own: its columns, the people named on it, its approval state and what hangs off it
alone (form, document requirements, documents, attempts, escalations, messages).

:class:`TaskFields` is the base of ``schema.types.tasks.Task``, which adds what relates a task to the
workflow around it (its step, its instance, its history) and the viewer's permissions. Those types
refer back to ``Task`` (a step lists its tasks, an instance its tasks and steps), so they live in one
module; what here refers to none of them is split off as a base class, which keeps the import graph
acyclic without deferred imports. The base is a Strawberry type only so that its fields are
collected; no field returns it, so it is not part of the served schema. Its fields come first in
``Task``'s SDL, in this order, and ``Task``'s own follow."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import ClassVar, Self

import strawberry
from strawberry.scalars import JSON

from engine import Node, WorkflowDefinition, policies, state
from schema.context import Info
from schema.sharing import same_for_every_viewer
from schema.types.approvals import (
    ApprovalDecision,
    ApprovalPolicy,
    Eligibility,
    approval_policy,
    decisions,
    eligibility,
)
from schema.types.details import (
    Document,
    DocumentRequirement,
    Form,
    TaskAttempt,
    TaskEscalation,
    TaskMessage,
)
from schema.types.enums import TaskDisplayStatus, TaskKind, TaskPriority, TaskStatus, TaskType
from schema.types.user import User, load_user


async def definition_of(info: Info, workflow_instance_id: str) -> WorkflowDefinition:
    instance = await info.context.loaders.instances.load(workflow_instance_id)
    assert instance is not None, "a task's instance always exists (foreign key)"
    return await info.context.loaders.definitions.load((instance.definition_key, instance.definition_version))


@strawberry.type
class TaskFields:
    id: strawberry.ID
    kind: TaskKind
    type: TaskType
    schema_type: str
    node_id: str
    name: str
    title: str
    description: str | None
    status: TaskStatus
    display_status: TaskDisplayStatus
    priority: TaskPriority
    revision: int
    assigned_role: str | None
    assigned_group: str | None
    input: JSON
    output: JSON | None
    draft: JSON | None
    created_at: datetime
    updated_at: datetime
    due_at: datetime | None
    completed_at: datetime | None
    blocked_reason: str | None = strawberry.field(
        description="Why no one may work on the task: separation of duties left no eligible user. Null if none."
    )
    source: strawberry.Private[state.Task]
    prefetched: strawberry.Private[dict[str, object]] = dataclasses.field(default_factory=dict)
    """Relations its page loaded for every task at once (see ``TaskConnection.page``), by field name."""
    PREFETCHABLE: ClassVar[frozenset[str]] = frozenset({"assignee", "step"})

    @classmethod
    def from_domain(cls, task: state.Task) -> Self:
        return cls(
            id=strawberry.ID(task.id), kind=task.kind, type=TaskType.of(task.type), schema_type=task.schema_type,
            node_id=task.node_id, name=task.name, title=task.title, description=task.description,
            status=task.status, display_status=state.display_status(task.status), priority=task.priority,
            revision=task.revision, assigned_role=task.assigned_role, assigned_group=task.assigned_group,
            input=JSON(dict(task.input)), output=task.output,
            draft=JSON(dict(task.draft)) if task.draft is not None else None,
            created_at=task.created_at, updated_at=task.updated_at, due_at=task.due_at,
            completed_at=task.completed_at, blocked_reason=task.blocked_reason, source=task,
        )  # fmt: skip

    async def _node(self, info: Info) -> Node:
        definition = await definition_of(info, self.source.workflow_instance_id)
        return definition.node(self.source.node_id)

    # A page answers these from ``prefetched`` without calling them (schema.execution.serve_prefetched).
    @strawberry.field
    @same_for_every_viewer
    async def assignee(self, info: Info) -> User | None:
        return await load_user(info, self.source.assigned_user_id)

    @strawberry.field
    @same_for_every_viewer
    async def completed_by(self, info: Info) -> User | None:
        return await load_user(info, self.source.completed_by)

    @strawberry.field(description="True while separation of duties leaves no one eligible (see blockedReason).")
    @same_for_every_viewer
    def blocked(self) -> bool:
        return self.source.blocked_reason is not None

    @strawberry.field(description="What the task requires: approval levels and exclusions; null if neither.")
    @same_for_every_viewer
    def approval_policy(self) -> ApprovalPolicy | None:
        return approval_policy(self.source)

    @strawberry.field(description="Every decision so far, oldest first.")
    @same_for_every_viewer
    def decisions(self) -> list[ApprovalDecision]:
        return decisions(self.source)

    @strawberry.field(description="`approved` or `rejected` once an approval task is settled, else null.")
    @same_for_every_viewer
    def outcome(self) -> str | None:
        return policies.outcome(self.source)

    @strawberry.field(description="Whether the viewer may approve or reject it now, and why not.")
    def eligible_to_decide(self, info: Info) -> Eligibility:
        return eligibility(info.context.user, self.source)

    @strawberry.field(description="While delegated: the delegate, who works on it and resolves it back.")
    @same_for_every_viewer
    async def delegated_to(self, info: Info) -> User | None:
        return await load_user(info, self.source.delegated_to)

    @strawberry.field(description="Who completes it: its assignee, also while it is delegated.")
    @same_for_every_viewer
    async def owner(self, info: Info) -> User | None:
        return await load_user(info, self.source.assigned_user_id)

    @strawberry.field(description="The form's field definitions (form and approval tasks).")
    @same_for_every_viewer
    async def form(self, info: Info) -> Form | None:
        return Form.of(await self._node(info))

    @strawberry.field
    @same_for_every_viewer
    async def document_requirements(self, info: Info) -> list[DocumentRequirement]:
        return DocumentRequirement.all_of(await self._node(info))

    @strawberry.field
    @same_for_every_viewer
    async def documents(self, info: Info) -> list[Document]:
        return [Document.from_domain(d) for d in await info.context.loaders.documents.load(self.source.id)]

    @strawberry.field(description="Every attempt of a system task, secrets redacted.")
    @same_for_every_viewer
    async def attempts(self, info: Info) -> list[TaskAttempt]:
        return [TaskAttempt.from_domain(a) for a in await info.context.loaders.attempts.load(self.source.id)]

    @strawberry.field(description="The steps of its escalation ladder, fired and scheduled, in ladder order.")
    async def escalations(self, info: Info) -> list[TaskEscalation]:
        found = await info.context.loaders.escalations.load(self.source.id)
        return [TaskEscalation.from_domain(e, self.source) for e in found]

    @strawberry.field(description="The discussion, oldest first.")
    @same_for_every_viewer
    async def messages(self, info: Info) -> list[TaskMessage]:
        return [TaskMessage.from_domain(m) for m in await info.context.loaders.messages.load(self.source.id)]
