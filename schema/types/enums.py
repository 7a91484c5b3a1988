"""GraphQL enums, reusing the engine's ``StrEnum`` states (registered with Strawberry in place)."""

from __future__ import annotations

from enum import Enum
from typing import cast

import strawberry

from engine import EscalationAction, Priority, state

strawberry.enum(state.TaskKind, name="TaskKind")
strawberry.enum(state.TaskStatus, name="TaskStatus")
strawberry.enum(state.TaskDisplayStatus, name="TaskDisplayStatus")
strawberry.enum(Priority, name="TaskPriority")
strawberry.enum(state.InstanceStatus, name="WorkflowStatus")
strawberry.enum(state.TaskEventKind, name="TaskEventKind")
strawberry.enum(state.EscalationStatus, name="EscalationStatus")
strawberry.enum(EscalationAction, name="EscalationAction")

TaskKind = state.TaskKind
TaskStatus = state.TaskStatus
TaskDisplayStatus = state.TaskDisplayStatus
TaskPriority = Priority
WorkflowStatus = state.InstanceStatus
TaskEventKind = state.TaskEventKind
EscalationStatus = state.EscalationStatus


@strawberry.enum
class TaskType(Enum):
    FORM = "FORM"
    APPROVAL = "APPROVAL"
    DOCUMENT_UPLOAD = "DOCUMENT_UPLOAD"
    ACTION_APPROVAL = "ACTION_APPROVAL"
    HTTP = "HTTP"
    GRAPHQL = "GRAPHQL"
    JAVASCRIPT = "JAVASCRIPT"
    EMAIL = "EMAIL"
    DELAY = "DELAY"
    ECHO = "ECHO"
    CUSTOM = "CUSTOM"

    @classmethod
    def of(cls, value: str) -> TaskType:
        # ``_value2member_map_`` is the enum's own lookup table (``__members__`` builds a view per call)
        return cast(TaskType, cls._value2member_map_.get(value, cls.CUSTOM))
