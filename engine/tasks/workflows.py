"""Workflows as a user starts, signals, cancels and deploys them, with the permission rules applied.

Every entry point (GraphQL, CLI, tests) goes through these, so the rules live in one place. They
raise :mod:`engine.errors` exceptions; the schema turns them into typed error results.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.errors import ConflictError, FieldError, ForbiddenError, NotFoundError, ValidationError
from engine.state import DeployedDefinition, User, WorkflowInstance
from engine.storage.database import ReadSessions
from engine.storage.instances import DefinitionRepository
from engine.tasks import permissions
from engine.tasks.visibility import VisibilityService
from engine.transitions.engine import Engine


class WorkflowService:
    """Starting, signalling, cancelling and deploying, as a given user."""

    def __init__(self, engine: Engine, visibility: VisibilityService | None = None) -> None:
        self.engine = engine
        self.visibility = visibility or VisibilityService(engine)

    async def start(
        self, user: User, definition_key: str, input: Any, correlation_key: str | None = None
    ) -> WorkflowInstance:
        """A ``correlation_key`` another instance of the definition has returns that instance, if
        ``user`` may see it (else ``ConflictError``: the key is taken)."""
        if input is not None and not isinstance(input, Mapping):
            raise ValidationError("input must be a JSON object", [FieldError("input", "must be a JSON object")])
        definition = await self.engine.definition(definition_key)
        if not permissions.can_start(user, definition.start_roles):
            raise ForbiddenError(f"starting {definition_key!r} needs one of the roles {list(definition.start_roles)}")
        instance = await self.engine.start(definition_key, input, user.id, correlation_key)
        if correlation_key is not None and instance.started_by != user.id:
            try:
                await self.visible_instance(user, instance.id, summary=True)
            except NotFoundError:
                raise ConflictError(f"correlation key {correlation_key!r} is taken for {definition_key!r}") from None
        return instance

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
            await self.visible_instance(user, workflow_instance_id, summary=True)  # NotFound for those who can't see it
            raise ForbiddenError("only an admin may send a raw signal; complete the task instead")
        return await self.engine.send_signal(workflow_instance_id, node_id, payload, user.id)

    async def correlate(
        self, user: User, definition_key: str, correlation_key: str, node_id: str, payload: Any
    ) -> WorkflowInstance:
        """``send_signal`` to the instance of ``definition_key`` with ``correlation_key`` (its business
        key); the same rules, and an early signal is held the same way."""
        instance = await self.engine.correlated(definition_key, correlation_key)
        if instance is None:
            raise NotFoundError(f"no instance of {definition_key!r} with correlation key {correlation_key!r}")
        return await self.send_signal(user, instance.id, node_id, payload)

    async def cancel(self, user: User, workflow_instance_id: str, reason: str | None) -> WorkflowInstance:
        instance = await self.visible_instance(user, workflow_instance_id, summary=True)
        if not (permissions.is_supervisor(user) or instance.started_by == user.id):
            raise ForbiddenError("only the starter, a manager or an admin may cancel a workflow")
        return await self.engine.cancel(workflow_instance_id, user.id, reason)

    async def visible_instance(
        self, user: User, workflow_instance_id: str, read: ReadSessions | None = None, *, summary: bool = False
    ) -> WorkflowInstance:
        """The instance if ``user`` may see it (see :class:`~engine.tasks.visibility.VisibilityService`)."""
        return await self.visibility.instance(user, workflow_instance_id, read, summary=summary)

    async def definitions(self, read: ReadSessions | None = None) -> list[DeployedDefinition]:
        async with (read or self.engine.db.read)() as session:
            return await DefinitionRepository(session).latest_of_each()
