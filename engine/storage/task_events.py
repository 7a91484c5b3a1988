"""The task-event repository: the rows of the event log (:mod:`engine.events`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select

from engine.state import Task, TaskEvent, TaskEventKind
from engine.storage.database import Executor
from engine.storage.models import task_events

_INSERT_EVENTS = insert(task_events).returning(task_events.c.id)


@dataclass(frozen=True)
class NewTaskEvent:
    """An event a transition recorded and has not written yet (see :mod:`engine.storage.writer`)."""

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
    """Task events. Writers go through :mod:`engine.events.numbering`, which gives committed events their
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
