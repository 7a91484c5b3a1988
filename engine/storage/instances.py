"""Repositories for definitions, workflow instances and step instances."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from engine.errors import ConcurrentUpdateError
from engine.state import DeployedDefinition, InstanceStatus, StepInstance, Token, WorkflowInstance, new_id
from engine.storage.models import definitions, instances, step_instances


class DefinitionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def next_version(self, key: str) -> int:
        current = await self.session.scalar(select(func.max(definitions.c.version)).where(definitions.c.key == key))
        return int(current or 0) + 1

    async def insert(self, definition: DeployedDefinition) -> None:
        await self.session.execute(
            definitions.insert().values(
                key=definition.key,
                version=definition.version,
                title=definition.title,
                document=dict(definition.document),
                deployed_by=definition.deployed_by,
                deployed_at=definition.deployed_at,
            )
        )

    async def get(self, key: str, version: int | None = None) -> DeployedDefinition | None:
        query = select(definitions).where(definitions.c.key == key)
        query = (
            query.where(definitions.c.version == version)
            if version is not None
            else query.order_by(definitions.c.version.desc()).limit(1)
        )
        row = (await self.session.execute(query)).first()
        return _definition(row) if row else None

    async def latest_of_each(self) -> list[DeployedDefinition]:
        latest = (
            select(definitions.c.key, func.max(definitions.c.version).label("version"))
            .group_by(definitions.c.key)
            .subquery()
        )
        query = (
            select(definitions)
            .join(latest, (definitions.c.key == latest.c.key) & (definitions.c.version == latest.c.version))
            .order_by(definitions.c.key)
        )
        return [_definition(row) for row in await self.session.execute(query)]


def _definition(row: Any) -> DeployedDefinition:
    return DeployedDefinition(
        key=row.key,
        version=row.version,
        title=row.title,
        document=row.document,
        deployed_at=row.deployed_at,
        deployed_by=row.deployed_by,
    )


class InstanceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, instance: WorkflowInstance) -> None:
        await self.session.execute(instances.insert().values(**_instance_values(instance)))

    async def get(self, instance_id: str, *, for_update: bool = False) -> WorkflowInstance | None:
        query = select(instances).where(instances.c.id == instance_id)
        if for_update:
            query = query.with_for_update()
        row = (await self.session.execute(query)).first()
        return _instance(row) if row else None

    async def get_many(self, ids: Iterable[str]) -> dict[str, WorkflowInstance]:
        rows = await self.session.execute(select(instances).where(instances.c.id.in_(list(ids))))
        return {row.id: _instance(row) for row in rows}

    async def update(self, instance: WorkflowInstance, expected_revision: int) -> None:
        """Write ``instance`` if nobody changed it since ``expected_revision``."""
        values = _instance_values(instance)
        del values["id"]
        result = await self.session.execute(
            update(instances)
            .where(instances.c.id == instance.id, instances.c.revision == expected_revision)
            .values(**values)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise ConcurrentUpdateError(f"workflow instance {instance.id} changed concurrently")

    async def get_or_create_step(
        self, workflow_instance_id: str, milestone_key: str, step_key: str, now: datetime
    ) -> StepInstance:
        query = select(step_instances).where(
            step_instances.c.workflow_instance_id == workflow_instance_id, step_instances.c.step_key == step_key
        )
        row = (await self.session.execute(query)).first()
        if row:
            return _step(row)
        step = StepInstance(new_id(), workflow_instance_id, milestone_key, step_key, now)
        await self.session.execute(
            step_instances.insert().values(
                id=step.id,
                workflow_instance_id=workflow_instance_id,
                milestone_key=milestone_key,
                step_key=step_key,
                created_at=now,
            )
        )
        return step

    async def get_step(self, step_id: str) -> StepInstance | None:
        row = (await self.session.execute(select(step_instances).where(step_instances.c.id == step_id))).first()
        return _step(row) if row else None

    async def get_steps(self, step_ids: Iterable[str]) -> dict[str, StepInstance]:
        rows = await self.session.execute(select(step_instances).where(step_instances.c.id.in_(list(step_ids))))
        return {row.id: _step(row) for row in rows}

    async def steps_of(self, workflow_instance_ids: Sequence[str]) -> list[StepInstance]:
        query = (
            select(step_instances)
            .where(step_instances.c.workflow_instance_id.in_(list(workflow_instance_ids)))
            .order_by(step_instances.c.created_at, step_instances.c.id)
        )
        return [_step(row) for row in await self.session.execute(query)]


def _instance_values(instance: WorkflowInstance) -> dict[str, Any]:
    return {
        "id": instance.id,
        "definition_key": instance.definition_key,
        "definition_version": instance.definition_version,
        "status": instance.status.value,
        "data": dict(instance.data),
        "tokens": [token.to_json() for token in instance.tokens],
        "started_by": instance.started_by,
        "started_at": instance.started_at,
        "updated_at": instance.updated_at,
        "completed_at": instance.completed_at,
        "revision": instance.revision,
        "error": instance.error,
    }


def _instance(row: Any) -> WorkflowInstance:
    return WorkflowInstance(
        id=row.id,
        definition_key=row.definition_key,
        definition_version=row.definition_version,
        status=InstanceStatus(row.status),
        data=row.data,
        tokens=tuple(Token.from_json(doc) for doc in row.tokens),
        started_by=row.started_by,
        started_at=row.started_at,
        updated_at=row.updated_at,
        completed_at=row.completed_at,
        revision=row.revision,
        error=row.error,
    )


def _step(row: Any) -> StepInstance:
    return StepInstance(
        id=row.id,
        workflow_instance_id=row.workflow_instance_id,
        milestone_key=row.milestone_key,
        step_key=row.step_key,
        created_at=row.created_at,
    )
