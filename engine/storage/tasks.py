"""The task repository: tasks as engine dataclasses, and how a task is stored."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Integer, and_, bindparam, case, func, insert, literal_column, or_, select
from sqlalchemy.engine import CursorResult

from engine.state import (
    ACTIVE_TASK_STATUSES,
    BLOCKED_TASK_STATUSES,
    OPEN_TASK_STATUSES,
    PRIORITY_BY_RANK,
    PRIORITY_RANK,
    StepMetrics,
    Task,
    TaskKind,
    TaskStatus,
)
from engine.storage.database import Executor
from engine.storage.deferred import revision_checked_update
from engine.storage.lists import any_of, sql_literals
from engine.storage.models import tasks
from engine.tasks.policy_state import TaskPolicy

_INSERT_FIELDS = (
    "id", "workflow_instance_id", "step_instance_id", "token_id", "node_id", "schema_type", "name", "title",
    "description", "signal_name", "assigned_role", "assigned_user_id", "assigned_group", "input", "output",
    "draft", "revision", "created_at", "updated_at", "due_at", "completed_at", "completed_by", "attempt_count",
    "next_run_at", "error", "type", "expires_at", "policy", "delegated_to", "blocked_reason",
)  # fmt: skip


def stored_candidates(user_ids: Collection[str]) -> str | None:
    """``candidate_users`` as stored: ``",alice,bob,"``, so ``LIKE '%,alice,%'`` finds alice's."""
    return f",{','.join(user_ids)}," if user_ids else None


def candidate_pattern(user_id: str) -> str:
    """The LIKE pattern of ``user_id`` in a stored ``candidate_users`` (``_`` and ``%`` escaped with ``\\``)."""
    escaped = user_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%,{escaped},%"


def task_values(task: Task) -> dict[str, Any]:
    values = {name: getattr(task, name) for name in _INSERT_FIELDS}
    values.update(kind=task.kind.value, status=task.status.value, priority=PRIORITY_RANK[task.priority])
    values["input"] = dict(task.input)
    values["draft"] = dict(task.draft) if task.draft is not None else None
    values["policy"] = task.policy.to_json() if task.policy is not None else None
    values["candidate_users"] = stored_candidates(task.candidate_users)
    return values


def stored_changes(values: Mapping[str, Any], expected_revision: int) -> dict[str, Any]:
    """A task update's columns as stored: enums as their values, and the next revision."""
    stored = dict(values)
    for key in ("status", "kind"):
        if key in stored and stored[key] is not None:
            stored[key] = str(stored[key])
    if "candidate_users" in stored:
        stored["candidate_users"] = stored_candidates(stored["candidate_users"])
    if stored.get("policy") is not None:
        stored["policy"] = stored["policy"].to_json()
    stored["revision"] = expected_revision + 1
    return stored


_TASK_FIELDS = tuple(field.name for field in fields(Task))  # each a column of the same name
# The JSON a task carries (its input, result and saved draft), up to the size limit each: a page or list
# that shows none of them reads the rest of the row only (``summary``).
TASK_VALUE_COLUMNS = ("input", "output", "draft")
_SUMMARY_FIELDS = tuple(name for name in _TASK_FIELDS if name not in TASK_VALUE_COLUMNS)
TASK_SUMMARY_COLUMNS = tuple(column for column in tasks.c if column.name not in TASK_VALUE_COLUMNS)


def _candidates(stored: str | None) -> tuple[str, ...]:
    """A stored ``candidate_users`` read back; most tasks have none, and a page reads fifty rows."""
    return tuple(user for user in stored.split(",") if user) if stored else ()


def task_from_row(row: Any, prefix: str = "", *, summary: bool = False) -> Task:
    """The task in ``row`` (a SQLAlchemy row or a :class:`~engine.storage.postgres.driver.DriverRow`), whose
    task columns are named ``prefix`` + column (a joined read labels them so).

    A ``summary`` row has no :data:`TASK_VALUE_COLUMNS`: its task's ``input`` is empty and its ``output``
    and ``draft`` None, which only a reader that never shows them may ask for."""
    mapping = row._mapping  # by key, not by attribute: a driver row's attributes cost a Python call each
    if summary:
        values = {name: mapping[prefix + name] for name in _SUMMARY_FIELDS}
        values.update(input={}, output=None, draft=None)
    else:
        values = {name: mapping[prefix + name] for name in _TASK_FIELDS}
    values.update(
        kind=TaskKind(values["kind"]),
        status=TaskStatus(values["status"]),
        priority=PRIORITY_BY_RANK[values["priority"]],
        candidate_users=_candidates(values["candidate_users"]),
        policy=TaskPolicy.from_json(values["policy"]) if values["policy"] is not None else None,
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
# Batches the pages' DataLoaders read on every request; "ids" is the batch's keys, bound as one list.
_BY_IDS = select(tasks).where(any_of(tasks.c.id, "ids"))
_BY_INSTANCES = (
    select(tasks).where(any_of(tasks.c.workflow_instance_id, "ids")).order_by(tasks.c.created_at, tasks.c.id)
)
_SUMMARIES_BY_INSTANCES = (
    select(*TASK_SUMMARY_COLUMNS)
    .where(any_of(tasks.c.workflow_instance_id, "ids"))
    .order_by(tasks.c.created_at, tasks.c.id)
)


def _count_of(statuses: Collection[TaskStatus], *, or_where: ColumnElement[bool] | None = None) -> Any:
    one, zero = literal_column("1", Integer()), literal_column("0", Integer())
    condition: ColumnElement[bool] = tasks.c.status.in_(sql_literals(s.value for s in statuses))
    if or_where is not None:
        condition = or_(condition, or_where)
    return func.sum(case((condition, one), else_=zero))


# Open but flagged blocked: separation of duties left no one eligible (engine.tasks.approvals).
_FLAGGED_BLOCKED = and_(
    tasks.c.blocked_reason.is_not(None), tasks.c.status.in_(sql_literals(s.value for s in OPEN_TASK_STATUSES))
)
_STEP_METRICS = (
    select(
        tasks.c.step_instance_id,
        func.count().label("total"),
        _count_of(ACTIVE_TASK_STATUSES).label("active"),
        _count_of([TaskStatus.COMPLETED]).label("completed"),
        _count_of(BLOCKED_TASK_STATUSES, or_where=_FLAGGED_BLOCKED).label("blocked"),
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

    async def find_by_instances(self, workflow_instance_ids: Collection[str], *, summary: bool = False) -> list[Task]:
        """The instances' tasks, oldest first; ``summary``: without their values (:func:`task_from_row`)."""
        statement = _SUMMARIES_BY_INSTANCES if summary else _BY_INSTANCES
        rows = await self.session.execute(statement, {"ids": list(workflow_instance_ids)})
        return [task_from_row(row, summary=summary) for row in rows]

    async def update(self, task_id: str, expected_revision: int, values: Mapping[str, Any]) -> bool:
        """Apply ``values`` and bump the revision, only if the task is still at ``expected_revision``."""
        stored = {**stored_changes(values, expected_revision), "b_id": task_id, "b_revision": expected_revision}
        result = await self.session.execute(_UPDATE, stored)
        return cast(CursorResult[Any], result).rowcount == 1  # an UPDATE's result: a CursorResult

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

    async def step_metrics(self, step_ids: Collection[str]) -> dict[str, StepMetrics]:
        """docs/design.md §1: active = CLAIMED/RUNNING/WAITING, blocked = FAILED/EXPIRED or open but flagged
        ``blocked`` (no one may work on it), total = every task."""
        metrics = {step_id: StepMetrics() for step_id in step_ids}
        for row in await self.session.execute(_STEP_METRICS, {"ids": list(step_ids)}):
            metrics[row.step_instance_id] = StepMetrics(
                total=int(row.total), active=int(row.active), completed=int(row.completed), blocked=int(row.blocked)
            )
        return metrics
