"""The task-event repository: the rows of the event log (:mod:`engine.events`)."""

from __future__ import annotations

import base64
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select

from engine.errors import FieldError, ValidationError
from engine.paging import check_first
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

    async def history(
        self, *, task_ids: Collection[str] | None = None, workflow_instance_id: str | None = None,
        after_id: int | None = None, limit: int = 50,
    ) -> tuple[list[TaskEvent], bool]:  # fmt: skip
        """A page of events of ``task_ids`` and/or one instance, oldest first (by id: an instance's
        transitions commit one at a time, so its events' ids are in commit order), and whether more follow."""
        query = select(task_events)
        if task_ids is not None:
            query = query.where(task_events.c.task_id.in_(sorted(task_ids)))
        if workflow_instance_id is not None:
            query = query.where(task_events.c.workflow_instance_id == workflow_instance_id)
        if after_id is not None:
            query = query.where(task_events.c.id > after_id)
        rows = (await self.session.execute(query.order_by(task_events.c.id).limit(limit + 1))).all()
        return [_event(row) for row in rows[:limit]], len(rows) > limit

    async def for_instance(self, workflow_instance_id: str) -> list[TaskEvent]:
        query = (
            select(task_events)
            .where(task_events.c.workflow_instance_id == workflow_instance_id)
            .order_by(task_events.c.id)
        )
        return [_event(row) for row in await self.session.execute(query)]


@dataclass(frozen=True)
class HistoryPage:
    """A page of a task's or an instance's history: its events, oldest first."""

    events: list[TaskEvent]
    has_next: bool


def encode_history_cursor(event: TaskEvent) -> str:
    return base64.urlsafe_b64encode(f"event:{event.id}".encode()).decode()


def history_page_start(first: int, after: str | None) -> int | None:
    """The event id a history page starts after; bad paging arguments raise :class:`ValidationError`."""
    check_first(first)
    if after is None:
        return None
    try:
        kind, _, number = base64.urlsafe_b64decode(after.encode()).decode().partition(":")
        if kind != "event" or not number.isdigit():
            raise ValueError("it is not a history cursor")
        return int(number)
    except ValueError as exc:  # binascii and Unicode decoding errors are ValueErrors
        # Nothing more: what the decoder said about the bytes is no help to the client and shows internals.
        raise ValidationError(
            "after is not a cursor of this query", [FieldError("after", "not a cursor of this query", "INVALID_CURSOR")]
        ) from exc


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
