"""Repositories for definitions, workflow instances and step instances."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import bindparam, func, insert, select, text
from sqlalchemy.engine import CursorResult

from engine.errors import ConcurrentUpdateError
from engine.state import (
    OPEN_TASK_STATUSES,
    DeployedDefinition,
    InstanceStatus,
    StepInstance,
    Task,
    Token,
    WorkflowInstance,
)
from engine.storage.database import Executor
from engine.storage.deferred import TransitionConnection, revision_checked_update
from engine.storage.lists import any_of
from engine.storage.models import definitions, instances, step_instances, tasks
from engine.storage.tasks import task_from_row

# Statements every transition runs, built once (building one per call costs more CPU than running it).
_LATEST_VERSION = select(func.max(definitions.c.version)).where(definitions.c.key == bindparam("key"))
_INSERT_INSTANCE = insert(instances)
_INSTANCE = select(instances).where(instances.c.id == bindparam("instance_id"))
_UPDATE_INSTANCE = revision_checked_update(instances)
_INSERT_STEP = insert(step_instances)
# What a transition starts from, in one round trip: the locked instance, each of its steps, and the
# open tasks in each (one row per step and open task; a step without one comes once, with NULLs).
_STEP_LABELS = [column.label(f"s_{column.key}") for column in step_instances.c]
_TASK_LABELS = [column.label(f"t_{column.key}") for column in tasks.c]
OPEN_TASKS_SQL = "tasks.status IN ({})".format(", ".join(sorted(f"'{s.value}'" for s in OPEN_TASK_STATUSES)))
_READ_FOR_TRANSITION = (
    select(instances, *_STEP_LABELS, *_TASK_LABELS)
    .select_from(
        instances.outerjoin(step_instances, step_instances.c.workflow_instance_id == instances.c.id).outerjoin(
            tasks, (tasks.c.step_instance_id == step_instances.c.id) & text(OPEN_TASKS_SQL)
        )
    )
    .where(instances.c.id == bindparam("instance_id"))
)
_LOCK_FOR_TRANSITION = _READ_FOR_TRANSITION.with_for_update(of=instances)
_STEP = select(step_instances).where(step_instances.c.id == bindparam("step_id"))
# Batches the pages' DataLoaders read on every request; "ids" is the batch's keys, bound as one list.
_INSTANCES = select(instances).where(any_of(instances.c.id, "ids"))
# Without ``data`` (every stored input and output of the instance): for readers that only need who started
# it, its status or its definition, as most of a page's relations do.
_SUMMARY_COLUMNS = tuple(column for column in instances.c if column.name != "data")
_INSTANCE_SUMMARY = select(*_SUMMARY_COLUMNS).where(instances.c.id == bindparam("instance_id"))
_INSTANCE_SUMMARIES = select(*_SUMMARY_COLUMNS).where(any_of(instances.c.id, "ids"))
_STEPS = select(step_instances).where(any_of(step_instances.c.id, "ids"))
_STEPS_WITH_DEFINITIONS = (
    select(step_instances, instances.c.definition_key, instances.c.definition_version)
    .join(instances, instances.c.id == step_instances.c.workflow_instance_id)
    .where(any_of(step_instances.c.id, "ids"))
)
_STEPS_OF_INSTANCES = (
    select(step_instances)
    .where(any_of(step_instances.c.workflow_instance_id, "ids"))
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


@dataclass(frozen=True)
class LockedInstance:
    """A workflow instance locked for a transition, with what the transition would otherwise read."""

    instance: WorkflowInstance
    steps: dict[str, StepInstance]
    """Every step instance it has, by step key."""
    open_tasks: list[Task]


class InstanceRepository:
    def __init__(self, session: Executor) -> None:
        self.session = session

    async def insert(self, instance: WorkflowInstance) -> None:
        await self.session.execute(_INSERT_INSTANCE, instance_values(instance))

    async def lock_for_transition(self, instance_id: str) -> LockedInstance | None:
        """The instance, locked (``FOR UPDATE``) until the transaction ends, with its steps and open
        tasks. The lock keeps them current: every writer of steps takes it first. Outside a
        transaction (autocommit) nothing is locked: they are as one snapshot saw them, and the
        transition's last statement checks that the instance is still at the revision read."""
        connection = self.session
        assert isinstance(connection, TransitionConnection), "a transition reads on its own connection"
        statement = _LOCK_FOR_TRANSITION if connection.in_transaction else _READ_FOR_TRANSITION
        rows = await connection.read_all(statement, {"instance_id": instance_id})
        if not rows:
            return None
        steps: dict[str, StepInstance] = {}
        open_tasks = []
        for row in rows:
            if row.s_id is not None and row.s_step_key not in steps:
                steps[row.s_step_key] = StepInstance(
                    row.s_id, row.s_workflow_instance_id, row.s_milestone_key, row.s_step_key, row.s_created_at
                )
            if row.t_id is not None:
                open_tasks.append(task_from_row(row, "t_"))
        open_tasks.sort(key=lambda task: (task.created_at, task.id))
        return LockedInstance(_instance(rows[0]), steps, open_tasks)

    async def get(self, instance_id: str, *, summary: bool = False) -> WorkflowInstance | None:
        """The instance; ``summary``: without its data (read as ``{}``), for a reader that never shows it."""
        statement = _INSTANCE_SUMMARY if summary else _INSTANCE
        row = (await self.session.execute(statement, {"instance_id": instance_id})).first()
        return _instance(row, summary) if row else None

    async def find_by_correlation(self, definition_key: str, correlation_key: str) -> WorkflowInstance | None:
        """The instance of ``definition_key`` started with ``correlation_key`` (unique when set)."""
        statement = select(instances).where(
            instances.c.definition_key == definition_key, instances.c.correlation_key == correlation_key
        )
        row = (await self.session.execute(statement)).first()
        return _instance(row) if row else None

    async def get_many(self, ids: Iterable[str], *, summary: bool = False) -> dict[str, WorkflowInstance]:
        """The instances by id; ``summary`` as for :meth:`get`."""
        rows = await self.session.execute(_INSTANCE_SUMMARIES if summary else _INSTANCES, {"ids": list(ids)})
        return {row.id: _instance(row, summary) for row in rows}

    async def update(self, instance: WorkflowInstance, expected_revision: int) -> None:
        """Write ``instance`` if nobody changed it since ``expected_revision``."""
        result = await self.session.execute(_UPDATE_INSTANCE, update_values(instance, expected_revision))
        if cast(CursorResult[Any], result).rowcount != 1:  # an UPDATE's result: a CursorResult
            raise changed_concurrently(instance)

    async def insert_step(self, step: StepInstance) -> None:
        await self.session.execute(_INSERT_STEP, step_values(step))

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
    values = instance_values(instance)
    del values["id"]
    values.update(b_id=instance.id, b_revision=expected_revision)
    return values


def changed_concurrently(instance: WorkflowInstance) -> ConcurrentUpdateError:
    return ConcurrentUpdateError(f"workflow instance {instance.id} changed concurrently")


def step_values(step: StepInstance) -> dict[str, Any]:
    return {"id": step.id, "workflow_instance_id": step.workflow_instance_id, "milestone_key": step.milestone_key,
            "step_key": step.step_key, "created_at": step.created_at}  # fmt: skip


def instance_values(instance: WorkflowInstance) -> dict[str, Any]:
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
        "correlation_key": instance.correlation_key,
        "held_signals": list(instance.held_signals),
    }


def _instance(row: Any, summary: bool = False) -> WorkflowInstance:
    return WorkflowInstance(
        id=row.id,
        definition_key=row.definition_key,
        definition_version=row.definition_version,
        status=InstanceStatus(row.status),
        data={} if summary else row.data,
        tokens=tuple(Token.from_json(doc) for doc in row.tokens),
        started_by=row.started_by,
        started_at=row.started_at,
        updated_at=row.updated_at,
        completed_at=row.completed_at,
        revision=row.revision,
        error=row.error,
        correlation_key=row.correlation_key,
        held_signals=tuple(row.held_signals),
    )


def _step(row: Any) -> StepInstance:
    return StepInstance(
        id=row.id,
        workflow_instance_id=row.workflow_instance_id,
        milestone_key=row.milestone_key,
        step_key=row.step_key,
        created_at=row.created_at,
    )
