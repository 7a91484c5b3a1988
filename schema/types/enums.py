"""GraphQL enums, reusing the engine's ``StrEnum`` states."""

from __future__ import annotations

from enum import Enum

import strawberry

from engine import definitions, state

TaskKind = strawberry.enum(state.TaskKind, name="TaskKind")
TaskStatus = strawberry.enum(state.TaskStatus, name="TaskStatus")
TaskDisplayStatus = strawberry.enum(state.TaskDisplayStatus, name="TaskDisplayStatus")
TaskPriority = strawberry.enum(definitions.Priority, name="TaskPriority")
WorkflowStatus = strawberry.enum(state.InstanceStatus, name="WorkflowStatus")
TaskEventKind = strawberry.enum(state.TaskEventKind, name="TaskEventKind")


@strawberry.enum
class TaskType(Enum):
    FORM = "FORM"
    APPROVAL = "APPROVAL"
    DOCUMENT_UPLOAD = "DOCUMENT_UPLOAD"
    HTTP = "HTTP"
    GRAPHQL = "GRAPHQL"
    JAVASCRIPT = "JAVASCRIPT"
    EMAIL = "EMAIL"
    DELAY = "DELAY"
    ECHO = "ECHO"
    CUSTOM = "CUSTOM"

    @classmethod
    def of(cls, value: str) -> TaskType:
        return cls.__members__.get(value, cls.CUSTOM)
