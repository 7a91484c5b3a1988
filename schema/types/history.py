"""Task and instance history: the event log's entries for one task or one instance, with what each
changed as it was recorded when it happened (``Task.history``, ``WorkflowInstance.history``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.scalars import JSON

from engine import HistoryPage, TaskStatus, ValidationError, encode_history_cursor, state
from schema.context import Info
from schema.inbox import bad_user_input
from schema.types.enums import TaskEventKind
from schema.types.paging import PageInfo
from schema.types.user import User, load_user

if TYPE_CHECKING:
    from schema.types.tasks import Task

# Recorded as their own fields; whatever else an event recorded is in ``details``.
_TYPED_KEYS = frozenset({"status", "assignee", "revision", "decision", "comment"})


@strawberry.type(description="A status change; `from` is null on a task's creation.")
class StatusChange:
    from_: TaskStatus | None = strawberry.field(name="from")
    to: TaskStatus


@strawberry.type(description="An assignee change; null on either side is unassigned.")
class AssigneeChange:
    from_id: strawberry.Private[str | None]
    to_id: strawberry.Private[str | None]

    @strawberry.field(name="from")
    async def from_(self, info: Info) -> User | None:
        return await load_user(info, self.from_id)

    @strawberry.field
    async def to(self, info: Info) -> User | None:
        return await load_user(info, self.to_id)


@strawberry.type(description="One event of the audit log, as recorded when it happened (the log is append-only).")
class HistoryEntry:
    kind: TaskEventKind
    occurred_at: datetime
    task_id: strawberry.ID
    status_change: StatusChange | None
    assignee_change: AssigneeChange | None
    revision: int | None = strawberry.field(
        description="The task's revision after the change (for PROGRESS_SAVED, the saved draft's); null on "
        "events recorded before history was kept."
    )
    decision: str | None = strawberry.field(description="An approval's decision (`approved` or `rejected`).")
    comment: str | None = strawberry.field(description="An approval decision's comment.")
    details: JSON | None = strawberry.field(
        description="What else the event recorded (e.g. `documentsAdded`, `messageId`)."
    )
    source: strawberry.Private[state.TaskEvent]
    load_task: strawberry.Private[Callable[[str], Awaitable[Task]]]

    @classmethod
    def from_domain(cls, event: state.TaskEvent, load_task: Callable[[str], Awaitable[Task]]) -> HistoryEntry:
        data: dict[str, Any] = dict(event.data)
        status, assignee = data.get("status"), data.get("assignee")
        extra = {key: value for key, value in data.items() if key not in _TYPED_KEYS}
        return cls(
            kind=event.kind, occurred_at=event.occurred_at, task_id=strawberry.ID(event.task_id),
            status_change=StatusChange(from_=_status(status.get("from")), to=TaskStatus(status["to"]))
            if isinstance(status, dict) else None,
            assignee_change=AssigneeChange(from_id=assignee.get("from"), to_id=assignee.get("to"))
            if isinstance(assignee, dict) else None,
            revision=data.get("revision"), decision=data.get("decision"), comment=data.get("comment"),
            details=JSON(extra) if extra else None, source=event, load_task=load_task,
        )  # fmt: skip

    @strawberry.field(description="Who made the change; null for the engine itself.")
    async def actor(self, info: Info) -> User | None:
        return await load_user(info, self.source.actor_id)

    @strawberry.field(description="The task as it is now.")
    async def task(self) -> Annotated[Task, strawberry.lazy("schema.types.tasks")]:
        return await self.load_task(self.source.task_id)


def _status(value: str | None) -> TaskStatus | None:
    return None if value is None else TaskStatus(value)


@strawberry.type
class HistoryEdge:
    cursor: str
    node: HistoryEntry


@strawberry.type(description="History, oldest first.")
class HistoryConnection:
    edges: list[HistoryEdge]
    page_info: PageInfo

    @classmethod
    def of(cls, page: HistoryPage, load_task: Callable[[str], Awaitable[Task]]) -> HistoryConnection:
        edges = [
            HistoryEdge(cursor=encode_history_cursor(e), node=HistoryEntry.from_domain(e, load_task))
            for e in page.events
        ]
        end = edges[-1].cursor if edges else None
        return cls(edges=edges, page_info=PageInfo(has_next_page=page.has_next, end_cursor=end))


async def task_history(info: Info, task_id: str, first: int, after: str | None) -> HistoryPage:
    """A page of the task's history; bad paging arguments are BAD_USER_INPUT."""
    try:
        return await info.context.visibility.task_history(info.context.user, task_id, first, after, info.context.read)
    except ValidationError as exc:
        raise bad_user_input(exc) from exc


async def instance_history(info: Info, instance_id: str, first: int, after: str | None) -> HistoryPage:
    """A page of the instance's history (of the tasks the viewer may see); bad paging arguments are BAD_USER_INPUT."""
    visibility, user = info.context.visibility, info.context.user
    try:
        return await visibility.instance_history(user, instance_id, first, after, info.context.read)
    except ValidationError as exc:
        raise bad_user_input(exc) from exc
