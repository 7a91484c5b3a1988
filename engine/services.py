"""Services: the engine's operations with the permission rules applied.

Every entry point (GraphQL, CLI, tests) goes through these, so the rules live in one place. They
raise :mod:`engine.errors` exceptions; the schema turns them into typed error results.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine import permissions
from engine.errors import FieldError, ForbiddenError, NotFoundError, ValidationError
from engine.runner import Engine
from engine.state import DeployedDefinition, Task, User, WorkflowInstance
from engine.storage.database import ReadSessions
from engine.storage.instances import DefinitionRepository, InstanceRepository
from engine.storage.tasks import TaskRepository


class WorkflowService:
    """Starting, signalling, cancelling and deploying, as a given user."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def start(self, user: User, definition_key: str, input: Any) -> WorkflowInstance:
        if input is not None and not isinstance(input, Mapping):
            raise ValidationError("input must be a JSON object", [FieldError("input", "must be a JSON object")])
        definition = await self.engine.definition(definition_key)
        if not permissions.can_start(user, definition.start_roles):
            raise ForbiddenError(f"starting {definition_key!r} needs one of the roles {list(definition.start_roles)}")
        return await self.engine.start(definition_key, input, user.id)

    async def deploy(self, user: User, document: Any) -> tuple[DeployedDefinition, bool]:
        if not permissions.can_administer(user):
            raise ForbiddenError("only an admin may deploy workflow definitions")
        if not isinstance(document, Mapping):
            raise ValidationError(
                "definition must be a JSON object", [FieldError("definition", "must be a JSON object")]
            )
        return await self.engine.deploy(document, user.id)

    async def send_signal(self, user: User, workflow_instance_id: str, node_id: str, payload: Any) -> WorkflowInstance:
        if not permissions.can_administer(user):
            await self.visible_instance(user, workflow_instance_id)  # NotFound for those who can't see it
            raise ForbiddenError("only an admin may send a raw signal; complete the task instead")
        return await self.engine.send_signal(workflow_instance_id, node_id, payload, user.id)

    async def cancel(self, user: User, workflow_instance_id: str, reason: str | None) -> WorkflowInstance:
        instance = await self.visible_instance(user, workflow_instance_id)
        if not (permissions.is_supervisor(user) or instance.started_by == user.id):
            raise ForbiddenError("only the starter, a manager or an admin may cancel a workflow")
        return await self.engine.cancel(workflow_instance_id, user.id, reason)

    async def visible_instance(
        self, user: User, workflow_instance_id: str, read: ReadSessions | None = None, *, summary: bool = False
    ) -> WorkflowInstance:
        """The instance if ``user`` may see it (starter, supervisor, or can see one of its tasks);
        read in ``read``'s session (by default one of its own); ``summary``: without its data."""
        async with (read or self.engine.db.read)() as session:  # NotFound after it: a shared one rolls back on errors
            instance = await InstanceRepository(session).get(workflow_instance_id, summary=summary)
            tasks: list[Task] = []
            if instance is not None and not permissions.can_see_instance(user, instance, ()):
                tasks = await TaskRepository(session).find_by_instances([workflow_instance_id], summary=True)
        if instance is not None and permissions.can_see_instance(user, instance, tasks):
            return instance
        raise NotFoundError(f"no workflow instance {workflow_instance_id}")

    async def definitions(self, read: ReadSessions | None = None) -> list[DeployedDefinition]:
        async with (read or self.engine.db.read)() as session:
            return await DefinitionRepository(session).latest_of_each()


async def visible_task(engine: Engine, user: User, task_id: str, read: ReadSessions | None = None) -> Task:
    """The task if ``user`` may see it; otherwise ``NotFoundError``, so existence does not leak.
    Read in ``read``'s session (by default one of its own)."""
    async with (read or engine.db.read)() as session:
        task = await TaskRepository(session).get_by_id(task_id)
        instances = InstanceRepository(session)
        instance = await instances.get(task.workflow_instance_id, summary=True) if task else None
    if task is None or instance is None or not permissions.can_see_task(user, task, instance.started_by):
        raise NotFoundError(f"no task {task_id}")
    return task
