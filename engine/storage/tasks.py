"""Task and task-event repositories, with the seed's inbox queries."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, and_, bindparam, case, func, insert, literal_column, or_, select, update

from engine.state import (
    ACTIVE_TASK_STATUSES,
    BLOCKED_TASK_STATUSES,
    OPEN_TASK_STATUSES,
    PRIORITY_BY_RANK,
    PRIORITY_RANK,
    StepMetrics,
    Task,
    TaskEvent,
    TaskEventKind,
    TaskKind,
    TaskStatus,
)
from engine.storage.database import Executor
from engine.storage.deferred import revision_checked_update
from engine.storage.lists import any_of, sql_literals
from engine.storage.models import SYSTEM_TASK_KIND, task_attempts, task_events, tasks

_INSERT_FIELDS = (
    "id", "workflow_instance_id", "step_instance_id", "token_id", "node_id", "schema_type", "name", "title",
    "description", "signal_name", "assigned_role", "assigned_user_id", "assigned_group", "input", "output",
    "draft", "revision", "created_at", "updated_at", "due_at", "completed_at", "completed_by", "attempt_count",
    "next_run_at", "error", "type", "expires_at",
)  # fmt: skip


def task_values(task: Task) -> dict[str, Any]:
    values = {name: getattr(task, name) for name in _INSERT_FIELDS}
    values.update(kind=task.kind.value, status=task.status.value, priority=PRIORITY_RANK[task.priority])
    values["input"] = dict(task.input)
    values["draft"] = dict(task.draft) if task.draft is not None else None
    return values


def stored_changes(values: Mapping[str, Any], expected_revision: int) -> dict[str, Any]:
    """A task update's columns as stored: enums as their values, and the next revision."""
    stored = dict(values)
    for key in ("status", "kind"):
        if key in stored and stored[key] is not None:
            stored[key] = str(stored[key])
    stored["revision"] = expected_revision + 1
    return stored


_TASK_FIELDS = tuple(field.name for field in fields(Task))  # each a column of the same name


def task_from_row(row: Any, prefix: str = "") -> Task:
    """The task in ``row`` (a SQLAlchemy row or a :class:`~engine.storage.deferred.DriverRow`), whose
    task columns are named ``prefix`` + column (a joined read labels them so)."""
    mapping = row._mapping  # by key, not by attribute: a driver row's attributes cost a Python call each
    values = {name: mapping[prefix + name] for name in _TASK_FIELDS}
    values.update(
        kind=TaskKind(values["kind"]),
        status=TaskStatus(values["status"]),
        priority=PRIORITY_BY_RANK[values["priority"]],
    )
    return Task(**values)


# Transitions run these on every hop. Built once: building a statement per call costs more CPU than
# executing it (CHANGELOG.md, round 1); SQLAlchemy also caches the compiled form of a prebuilt one.
_INSERT = insert(tasks)
_BY_ID = select(tasks).where(tasks.c.id == bindparam("task_id"))
_BY_TOKEN = select(tasks).where(
    tasks.c.workflow_instance_id == bindparam("instance_id"), tasks.c.token_id == bindparam("token_id")
)
_UPDATE = revision_checked_update(tasks)
# A literal, so the planner can match the partial ``ix_tasks_runnable`` (models.SYSTEM_TASKS_SQL).
_SYSTEM_TASK = tasks.c.kind == sql_literals([SYSTEM_TASK_KIND])[0]
_LEASE_OWNER = select(tasks.c.lease_owner).where(tasks.c.id == bindparam("task_id"))
# Batches the pages' DataLoaders read on every request; "ids" is the batch's keys, bound as one list.
_BY_IDS = select(tasks).where(any_of(tasks.c.id, "ids"))
_BY_INSTANCES = (
    select(tasks).where(any_of(tasks.c.workflow_instance_id, "ids")).order_by(tasks.c.created_at, tasks.c.id)
)


def _count_of(statuses: Collection[TaskStatus]) -> Any:
    one, zero = literal_column("1", Integer()), literal_column("0", Integer())
    return func.sum(case((tasks.c.status.in_(sql_literals(s.value for s in statuses)), one), else_=zero))


_STEP_METRICS = (
    select(
        tasks.c.step_instance_id,
        func.count().label("total"),
        _count_of(ACTIVE_TASK_STATUSES).label("active"),
        _count_of([TaskStatus.COMPLETED]).label("completed"),
        _count_of(BLOCKED_TASK_STATUSES).label("blocked"),
    )
    .where(any_of(tasks.c.step_instance_id, "ids"))
    .group_by(tasks.c.step_instance_id)
)


class TaskRepository:
    def __init__(self, session: Executor) -> None:
        self.session = session

    async def insert(self, task: Task) -> None:
        await self.session.execute(_INSERT, task_values(task))

    async def get_by_id(self, task_id: str) -> Task | None:
        row = (await self.session.execute(_BY_ID, {"task_id": task_id})).first()
        return task_from_row(row) if row else None

    async def get_many(self, task_ids: Iterable[str]) -> dict[str, Task]:
        rows = await self.session.execute(_BY_IDS, {"ids": list(task_ids)})
        return {row.id: task_from_row(row) for row in rows}

    async def get_by_token(self, workflow_instance_id: str, token_id: str) -> Task | None:
        parameters = {"instance_id": workflow_instance_id, "token_id": token_id}
        row = (await self.session.execute(_BY_TOKEN, parameters)).first()
        return task_from_row(row) if row else None

    async def _find(self, *conditions: Any, statuses: Collection[TaskStatus] | None = None) -> list[Task]:
        query = select(tasks).where(*conditions)
        if statuses:
            query = query.where(tasks.c.status.in_([status.value for status in statuses]))
        query = query.order_by(tasks.c.created_at, tasks.c.id)
        return [task_from_row(row) for row in await self.session.execute(query)]

    async def find_by_role(self, role: str, statuses: Collection[TaskStatus] | None = None) -> list[Task]:
        return await self._find(tasks.c.assigned_role == role, statuses=statuses)

    async def find_by_user_id(self, user_id: str, statuses: Collection[TaskStatus] | None = None) -> list[Task]:
        return await self._find(tasks.c.assigned_user_id == user_id, statuses=statuses)

    async def find_by_group(self, group: str, statuses: Collection[TaskStatus] | None = None) -> list[Task]:
        return await self._find(tasks.c.assigned_group == group, statuses=statuses)

    async def find_by_status(self, status: TaskStatus) -> list[Task]:
        return await self._find(tasks.c.status == status.value)

    async def find_by_instance(self, workflow_instance_id: str, *, open_only: bool = False) -> list[Task]:
        return await self._find(
            tasks.c.workflow_instance_id == workflow_instance_id,
            statuses=OPEN_TASK_STATUSES if open_only else None,
        )

    async def find_by_instances(self, workflow_instance_ids: Collection[str]) -> list[Task]:
        rows = await self.session.execute(_BY_INSTANCES, {"ids": list(workflow_instance_ids)})
        return [task_from_row(row) for row in rows]

    async def update(self, task_id: str, expected_revision: int, values: Mapping[str, Any]) -> bool:
        """Apply ``values`` and bump the revision, only if the task is still at ``expected_revision``."""
        stored = {**stored_changes(values, expected_revision), "b_id": task_id, "b_revision": expected_revision}
        result = await self.session.execute(_UPDATE, stored)
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def claim_runnable(self, now: datetime, worker_id: str, lease_until: datetime, limit: int) -> list[Task]:
        """Lease up to ``limit`` system tasks that are due, or whose previous lease expired.

        ``FOR UPDATE SKIP LOCKED`` lets workers on PostgreSQL claim side by side without waiting on
        each other; on SQLite the write transaction's ``BEGIN IMMEDIATE`` serializes them instead.
        """
        due = and_(
            tasks.c.status.in_([TaskStatus.PENDING.value, TaskStatus.WAITING.value]),
            tasks.c.next_run_at <= now,
        )
        abandoned = and_(tasks.c.status == TaskStatus.RUNNING.value, tasks.c.lease_expires_at < now)
        query = (
            select(tasks)
            .where(_SYSTEM_TASK, or_(due, abandoned))
            .order_by(tasks.c.next_run_at, tasks.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claimed = []
        for row in (await self.session.execute(query)).all():
            task = task_from_row(row)
            if task.status is TaskStatus.RUNNING:
                await self._record_abandoned(task, row.lease_owner, row.lease_expires_at, now)
            values = {
                "status": TaskStatus.RUNNING.value,
                "lease_owner": worker_id,
                "lease_expires_at": lease_until,
                "attempt_count": task.attempt_count + 1,
                "updated_at": now,
            }
            if await self.update(task.id, task.revision, values):
                claimed.append(
                    replace(
                        task,
                        status=TaskStatus.RUNNING,
                        attempt_count=task.attempt_count + 1,
                        revision=task.revision + 1,
                        updated_at=now,
                    )  # fmt: skip
                )
        return claimed

    async def find_expiring(self, now: datetime, limit: int = 100) -> list[Task]:
        """Open user tasks whose node says ``onDue: "expire"`` and whose due time has passed."""
        query = (
            select(tasks)
            .where(
                tasks.c.expires_at <= now,
                tasks.c.kind == TaskKind.USER.value,
                tasks.c.status.in_([TaskStatus.PENDING.value, TaskStatus.CLAIMED.value]),
            )
            .order_by(tasks.c.expires_at)
            .limit(limit)
        )
        return [task_from_row(row) for row in await self.session.execute(query)]

    async def _record_abandoned(self, task: Task, owner: str | None, expired: datetime, now: datetime) -> None:
        """Keep a record of the attempt a dead worker never finished, so ``attempts`` shows every try."""
        number = await self.session.scalar(
            select(func.coalesce(func.max(task_attempts.c.number), 0) + 1).where(task_attempts.c.task_id == task.id)
        )
        error = f"abandoned: worker {owner} stopped renewing its lease (expired {expired.isoformat()})"
        await self.session.execute(
            task_attempts.insert().values(
                task_id=task.id, number=number, started_at=task.updated_at, finished_at=now, request=None,
                response=None, error=error,
            )
        )  # fmt: skip

    async def extend_lease(self, task_id: str, worker_id: str, until: datetime) -> bool:
        """Push out this worker's lease on a task it still runs; False once the lease is lost."""
        result = await self.session.execute(
            update(tasks)
            .where(tasks.c.id == task_id, tasks.c.lease_owner == worker_id, tasks.c.status == TaskStatus.RUNNING.value)
            .values(lease_expires_at=until)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def lease_owner(self, task_id: str) -> str | None:
        owner: str | None = await self.session.scalar(_LEASE_OWNER, {"task_id": task_id})
        return owner

    async def step_metrics(self, step_ids: Collection[str]) -> dict[str, StepMetrics]:
        """docs/design.md §1: active = CLAIMED/RUNNING/WAITING, blocked = FAILED/EXPIRED, total = every task."""
        metrics = {step_id: StepMetrics() for step_id in step_ids}
        for row in await self.session.execute(_STEP_METRICS, {"ids": list(step_ids)}):
            metrics[row.step_instance_id] = StepMetrics(
                total=int(row.total), active=int(row.active), completed=int(row.completed), blocked=int(row.blocked)
            )
        return metrics


_INSERT_EVENTS = insert(task_events).returning(task_events.c.id)


@dataclass(frozen=True)
class NewTaskEvent:
    """An event a transition recorded and has not written yet (see :mod:`engine.event_log`)."""

    kind: TaskEventKind
    task: Task
    actor_id: str | None
    at: datetime
    data: Mapping[str, Any] | None = None

    def row(self) -> dict[str, Any]:
        """The ``task_events`` columns it is written as (all but the id the database assigns)."""
        return {
            "kind": self.kind.value,
            "task_id": self.task.id,
            "step_instance_id": self.task.step_instance_id,
            "workflow_instance_id": self.task.workflow_instance_id,
            "actor_id": self.actor_id,
            "occurred_at": self.at,
            "data": dict(self.data) if self.data else None,
        }


class TaskEventRepository:
    """Task events. Writers go through :mod:`engine.event_log`, which gives committed events their
    positions in commit order (readers follow the log by position)."""

    def __init__(self, session: Executor) -> None:
        self.session = session

    async def add_many(self, events: Sequence[NewTaskEvent]) -> int:
        """Insert ``events`` in order with one statement; returns the highest id they got."""
        rows = [event.row() for event in events]
        # One INSERT … VALUES (…), (…) RETURNING id either way: SQLAlchemy batches a list of rows
        # ("insertmanyvalues") into the statement a per-call .values(rows) would have built.
        result = await self.session.execute(_INSERT_EVENTS, rows[0] if len(rows) == 1 else rows)
        return int(max(result.scalars()))

    async def latest_position(self) -> int:
        """The highest position given so far (0 when there is none)."""
        latest = await self.session.scalar(select(func.max(task_events.c.position)))
        return int(latest or 0)

    async def after(self, position: int, limit: int = 500) -> list[TaskEvent]:
        """The numbered events after ``position``, in log order."""
        query = (
            select(task_events).where(task_events.c.position > position).order_by(task_events.c.position).limit(limit)
        )
        return [_event(row) for row in await self.session.execute(query)]

    async def for_task(self, task_id: str) -> list[TaskEvent]:
        query = select(task_events).where(task_events.c.task_id == task_id).order_by(task_events.c.id)
        return [_event(row) for row in await self.session.execute(query)]

    async def for_instance(self, workflow_instance_id: str) -> list[TaskEvent]:
        query = (
            select(task_events)
            .where(task_events.c.workflow_instance_id == workflow_instance_id)
            .order_by(task_events.c.id)
        )
        return [_event(row) for row in await self.session.execute(query)]


def _event(row: Any) -> TaskEvent:
    return TaskEvent(
        id=row.id,
        position=row.position,
        kind=TaskEventKind(row.kind),
        task_id=row.task_id,
        step_instance_id=row.step_instance_id,
        workflow_instance_id=row.workflow_instance_id,
        actor_id=row.actor_id,
        occurred_at=row.occurred_at,
        data=row.data or {},
    )
