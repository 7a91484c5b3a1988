"""Repositories for definitions, workflow instances and step instances."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update

from engine.errors import ConcurrentUpdateError
from engine.state import DeployedDefinition, InstanceStatus, StepInstance, Token, WorkflowInstance, new_id
from engine.storage.database import Executor, insert_unless_exists
from engine.storage.models import definitions, instances, step_instances

# Statements every transition runs, built once (building one per call costs more CPU than running it).
_LATEST_VERSION = select(func.max(definitions.c.version)).where(definitions.c.key == bindparam("key"))
_INSERT_INSTANCE = insert(instances)
_INSTANCE = select(instances).where(instances.c.id == bindparam("instance_id"))
_INSTANCE_FOR_UPDATE = _INSTANCE.with_for_update()
# SET comes from the parameters' column names; the WHERE's names must differ from every column's.
_UPDATE_INSTANCE = update(instances).where(
    instances.c.id == bindparam("b_id"), instances.c.revision == bindparam("b_revision")
)
_INSERT_NEW_STEP = insert_unless_exists(  # once per step: the unique (workflow_instance_id, step_key)
    step_instances,
    ("id", "workflow_instance_id", "milestone_key", "step_key", "created_at"),
    (step_instances.c.workflow_instance_id, step_instances.c.step_key),
)
_STEP_BY_KEY = select(step_instances).where(
    step_instances.c.workflow_instance_id == bindparam("instance_id"), step_instances.c.step_key == bindparam("key")
)
_STEP = select(step_instances).where(step_instances.c.id == bindparam("step_id"))
# Batches the pages' DataLoaders read on every request; "ids" expands to the batch's keys.
_INSTANCES = select(instances).where(instances.c.id.in_(bindparam("ids", expanding=True)))
_STEPS = select(step_instances).where(step_instances.c.id.in_(bindparam("ids", expanding=True)))
_STEPS_WITH_DEFINITIONS = (
    select(step_instances, instances.c.definition_key, instances.c.definition_version)
    .join(instances, instances.c.id == step_instances.c.workflow_instance_id)
    .where(step_instances.c.id.in_(bindparam("ids", expanding=True)))
)
_STEPS_OF_INSTANCES = (
    select(step_instances)
    .where(step_instances.c.workflow_instance_id.in_(bindparam("ids", expanding=True)))
    .order_by(step_instances.c.created_at, step_instances.c.id)
)


class DefinitionRepository:
    def __init__(self, session: Executor) -> None:
        self.session = session

    async def latest_version(self, key: str) -> int | None:
        """The latest deployed version of ``key`` (None when it was never deployed)."""
        current = await self.session.scalar(_LATEST_VERSION, {"key": key})
        return int(current) if current is not None else None

    async def next_version(self, key: str) -> int:
        return (await self.latest_version(key) or 0) + 1

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
    def __init__(self, session: Executor) -> None:
        self.session = session

    async def insert(self, instance: WorkflowInstance) -> None:
        await self.session.execute(_INSERT_INSTANCE, _instance_values(instance))

    async def get(self, instance_id: str, *, for_update: bool = False) -> WorkflowInstance | None:
        query = _INSTANCE_FOR_UPDATE if for_update else _INSTANCE
        row = (await self.session.execute(query, {"instance_id": instance_id})).first()
        return _instance(row) if row else None

    async def get_many(self, ids: Iterable[str]) -> dict[str, WorkflowInstance]:
        rows = await self.session.execute(_INSTANCES, {"ids": list(ids)})
        return {row.id: _instance(row) for row in rows}

    async def update(self, instance: WorkflowInstance, expected_revision: int) -> None:
        """Write ``instance`` if nobody changed it since ``expected_revision``."""
        result = await self.session.execute(_UPDATE_INSTANCE, update_values(instance, expected_revision))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise changed_concurrently(instance)

    async def get_or_create_step(
        self, workflow_instance_id: str, milestone_key: str, step_key: str, now: datetime, *, exists: bool = False
    ) -> StepInstance:
        """The instance's step ``step_key``, created on first use. ``exists`` says the caller expects
        it to be there already, so looking first saves the insert that would hit the constraint."""
        if exists and (found := await self._step_by_key(workflow_instance_id, step_key)) is not None:
            return found
        step = StepInstance(new_id(), workflow_instance_id, milestone_key, step_key, now)
        values = {"id": step.id, "workflow_instance_id": workflow_instance_id, "milestone_key": milestone_key,
                  "step_key": step_key, "created_at": now}  # fmt: skip
        if (await self.session.execute(_INSERT_NEW_STEP, values)).rowcount == 1:  # type: ignore[attr-defined]
            return step
        found = await self._step_by_key(workflow_instance_id, step_key)
        assert found is not None, "the insert conflicted, so the step exists"
        return found

    async def _step_by_key(self, workflow_instance_id: str, step_key: str) -> StepInstance | None:
        parameters = {"instance_id": workflow_instance_id, "key": step_key}
        row = (await self.session.execute(_STEP_BY_KEY, parameters)).first()
        return _step(row) if row else None

    async def get_step(self, step_id: str) -> StepInstance | None:
        row = (await self.session.execute(_STEP, {"step_id": step_id})).first()
        return _step(row) if row else None

    async def get_steps(self, step_ids: Iterable[str]) -> dict[str, StepInstance]:
        rows = await self.session.execute(_STEPS, {"ids": list(step_ids)})
        return {row.id: _step(row) for row in rows}

    async def get_steps_with_definitions(self, step_ids: Iterable[str]) -> dict[str, tuple[StepInstance, str, int]]:
        """Steps with their instance's definition key and version: what a step's title needs, in one
        statement and without reading the instances' data."""
        rows = await self.session.execute(_STEPS_WITH_DEFINITIONS, {"ids": list(step_ids)})
        return {row.id: (_step(row), row.definition_key, row.definition_version) for row in rows}

    async def steps_of(self, workflow_instance_ids: Sequence[str]) -> list[StepInstance]:
        rows = await self.session.execute(_STEPS_OF_INSTANCES, {"ids": list(workflow_instance_ids)})
        return [_step(row) for row in rows]


def update_values(instance: WorkflowInstance, expected_revision: int) -> dict[str, Any]:
    """Parameters of an instance UPDATE: every column but ``id`` to SET, ``b_id``/``b_revision`` to match."""
    values = _instance_values(instance)
    del values["id"]
    values.update(b_id=instance.id, b_revision=expected_revision)
    return values


def changed_concurrently(instance: WorkflowInstance) -> ConcurrentUpdateError:
    return ConcurrentUpdateError(f"workflow instance {instance.id} changed concurrently")


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
