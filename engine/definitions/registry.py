"""What node types the engine knows: user-task executors by ``schemaType``, dynamic assignment
executors by ``assignWith`` name and system-task executors by node ``type``.

The seed's ``TypeDescriptor``/``WorkflowDescriptor`` idea: everything is registered by name, custom
types included, and a definition is validated against what is registered when it is deployed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.definitions.model import Node, Priority


@dataclass(frozen=True)
class Assignment:
    """Who a user task goes to; at most one of the three is usually set."""

    role: str | None = None
    user_id: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class UserTaskConfig:
    """What a user-task executor hands the engine for the task it is about to create."""

    title: str
    description: str | None
    assignment: Assignment
    priority: Priority
    input: Mapping[str, Any]


@dataclass(frozen=True)
class NodeContext:
    """What an executor may read while a token is at its node: the template variables and the node."""

    node: Node
    workflow_instance_id: str
    variables: Mapping[str, Any]


class UserTaskExecutor(Protocol):
    """Turns a user-task node into a task; one per ``schemaType``."""

    @property
    def schema_type(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def task_type(self) -> str:
        """The API's TaskType: FORM, APPROVAL, DOCUMENT_UPLOAD or CUSTOM."""
        ...

    def validate(self, node: Node) -> list[str]:
        """Deploy-time problems with the node, as messages (the caller adds the node's name)."""
        ...

    async def configure(self, context: NodeContext) -> UserTaskConfig:
        """The task to create when a token reaches the node."""
        ...


class AssignmentExecutor(Protocol):
    """Chooses an assignee at run time (``assignWith``), e.g. the requester's manager."""

    @property
    def name(self) -> str: ...

    async def assign(self, context: NodeContext) -> Assignment: ...


class SystemTaskValidator(Protocol):
    """The deploy-time half of a system-task executor: which node type it runs, and config checks."""

    @property
    def type(self) -> str: ...

    @property
    def task_type(self) -> str: ...

    def validate(self, node: Node) -> list[str]: ...


@dataclass
class Registry:
    """Executors by name. ``system_tasks`` holds objects that at least validate their node type."""

    user_tasks: dict[str, UserTaskExecutor] = field(default_factory=dict)
    assigners: dict[str, AssignmentExecutor] = field(default_factory=dict)
    system_tasks: dict[str, SystemTaskValidator] = field(default_factory=dict)

    def register_user_task(self, executor: UserTaskExecutor) -> None:
        self.user_tasks[executor.schema_type] = executor

    def register_assigner(self, executor: AssignmentExecutor) -> None:
        self.assigners[executor.name] = executor

    def register_system_task(self, executor: SystemTaskValidator) -> None:
        self.system_tasks[executor.type] = executor

    def user_task_executor(self, node: Node) -> UserTaskExecutor:
        return self.user_tasks[node.schema_type or default_schema_type(node)]

    def task_type(self, node: Node) -> str:
        if node.is_user_task:
            executor = self.user_tasks.get(node.schema_type or default_schema_type(node))
            return executor.task_type if executor else "CUSTOM"
        system = self.system_tasks.get(node.type)
        return system.task_type if system else "CUSTOM"


def default_schema_type(node: Node) -> str:
    """A user task without ``schemaType`` is a document upload if it lists documents, else a form."""
    return "userTask.documentUpload" if node.documents else "userTask.form"
