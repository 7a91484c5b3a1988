"""Queries: the viewer, one task, the inbox, step pages, instances and definitions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

import strawberry
from graphql import GraphQLError
from strawberry.scalars import JSON

from engine import permissions, state
from engine.errors import NotFoundError, ValidationError
from engine.services import visible_task
from engine.storage.inbox import TaskOrderField as EngineOrderField
from engine.storage.inbox import TaskQuery, count_beside, page_of_tasks, task_search
from schema.context import Info
from schema.permissions import IsAuthenticated
from schema.types.enums import TaskKind, TaskPriority, TaskStatus
from schema.types.tasks import StepInstance, Task, TaskConnection, WorkflowInstance, selected_names, shows_task_values
from schema.types.user import User

TaskOrderField = strawberry.enum(EngineOrderField, name="TaskOrderField")
T = TypeVar("T")


@strawberry.enum
class OrderDirection(Enum):
    ASC = "ASC"
    DESC = "DESC"


@strawberry.input
class TaskFilter:
    role: str | None = None
    user_id: strawberry.ID | None = None
    group_id: str | None = None
    status: list[TaskStatus] | None = None
    priority: list[TaskPriority] | None = None
    kind: TaskKind | None = None
    assigned_to_me: bool | None = None
    include_completed: bool | None = None
    workflow_instance_id: strawberry.ID | None = None
    step_instance_id: strawberry.ID | None = None
    due_before: datetime | None = None


@strawberry.input
class TaskOrder:
    field: TaskOrderField  # type: ignore[valid-type]
    direction: OrderDirection


@strawberry.type
class WorkflowDefinition:
    key: str
    version: int
    title: str
    definition: JSON

    @classmethod
    def from_domain(cls, deployed: state.DeployedDefinition) -> WorkflowDefinition:
        return cls(
            key=deployed.key, version=deployed.version, title=deployed.title, definition=JSON(dict(deployed.document))
        )


def task_query(filter: TaskFilter | None, order: TaskOrder | None) -> TaskQuery:
    f = filter or TaskFilter()
    return TaskQuery(
        role=f.role, user_id=f.user_id, group=f.group_id, statuses=f.status, priorities=f.priority, kind=f.kind,
        assigned_to_me=bool(f.assigned_to_me), include_completed=bool(f.include_completed),
        workflow_instance_id=f.workflow_instance_id, step_instance_id=f.step_instance_id, due_before=f.due_before,
        order_by=EngineOrderField(order.field) if order else EngineOrderField.CREATED_AT,
        descending=bool(order and order.direction is OrderDirection.DESC),
    )  # fmt: skip


def bad_user_input(exc: ValidationError) -> GraphQLError:
    """A query's bad argument: a top-level error (queries have no result union) the client must fix.

    ``extensions.code`` is ``BAD_USER_INPUT`` (so it is not masked as a bug) and ``fieldErrors``
    names each offending argument, like ``ValidationFailed`` does for mutations.
    """
    field_errors = [{"field": f.field, "message": f.message, "code": f.code} for f in exc.field_errors]
    return GraphQLError(exc.message, extensions={"code": "BAD_USER_INPUT", "fieldErrors": field_errors})


async def task_connection(info: Info, query: TaskQuery, first: int, after: str | None) -> TaskConnection:
    """A page of the tasks the viewer may see that match ``query``; bad paging arguments are BAD_USER_INPUT.

    The tasks' values (``input``, ``output``, ``draft``) are read only when selected: each may be as large
    as the size limit, and an inbox page shows none of them. ``totalCount`` is counted only when selected,
    and on a connection of its own while the page is
    read and built when the pool has one to spare (else after the page, on the query's): the count
    scans the index entries of every matching task (at a million tasks, a role's 11,000 open ones:
    3-4 ms of PostgreSQL's time, bench.inbox_scaling), the page 51 rows.
    """
    try:
        search = task_search(info.context.user, query, first, after)
    except ValidationError as exc:
        raise bad_user_input(exc) from exc
    selections = info.selected_fields[0].selections
    counted = "totalCount" in selected_names(selections, ())
    summary = not shows_task_values(selections, ("edges", "node"))
    async with running(count_beside(info.context.engine.db, search, info.context.read) if counted else None) as total:
        async with info.context.read() as session:
            tasks, has_next = await page_of_tasks(session, search, summary=summary)
        return await TaskConnection.page(info, selections, tasks, has_next, search.order_by, total)


@asynccontextmanager
async def running(work: Coroutine[Any, Any, T] | None) -> AsyncIterator[asyncio.Task[T] | None]:
    """``work`` running as a task while the block runs (the block awaits it for its result). A block
    that ends early still waits for it to end: a read is not cut off mid-statement, and its error is
    taken (the block's own error is the one to report)."""
    if work is None:
        yield None
        return
    task = asyncio.create_task(work)
    try:
        yield task
    finally:
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()


async def visible_step_tasks(
    info: Info, step: state.StepInstance, assigned_to_me: bool, show_completed: bool, first: int, after: str | None
) -> TaskConnection:
    query = TaskQuery(step_instance_id=step.id, assigned_to_me=assigned_to_me, include_completed=show_completed)
    return await task_connection(info, query, first, after)


@strawberry.type
class Query:
    @strawberry.field(permission_classes=[IsAuthenticated], description="The signed-in user.")
    def me(self, info: Info) -> User:
        return User.from_domain(info.context.user)

    @strawberry.field(permission_classes=[IsAuthenticated], description="A task the viewer may see, else null.")
    async def task(self, info: Info, id: strawberry.ID) -> Task | None:
        try:
            return Task.from_domain(await visible_task(info.context.engine, info.context.user, id, info.context.read))
        except NotFoundError:
            return None

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="Tasks the viewer may see; the filter narrows, never widens. Open tasks unless "
        "`includeCompleted` or an explicit `status` list.",
    )
    async def tasks(
        self, info: Info, filter: TaskFilter | None = None, order_by: TaskOrder | None = None, first: int = 50,
        after: str | None = None,
    ) -> TaskConnection:  # fmt: skip
        return await task_connection(info, task_query(filter, order_by), first, after)

    @strawberry.field(permission_classes=[IsAuthenticated], description="A step page: metrics and tasks.")
    async def step_instance(self, info: Info, id: strawberry.ID) -> StepInstance | None:
        loaders, user = info.context.loaders, info.context.user
        step = await loaders.steps.load(id)
        if step is None:
            return None
        instance = await loaders.instances.load(step.workflow_instance_id)
        assert instance is not None, "a step's instance always exists (foreign key)"
        if not permissions.can_see_instance(user, instance, ()):
            tasks = await loaders.instance_task_summaries.load(instance.id)
            if not permissions.can_see_instance(user, instance, tasks):
                return None
        return await StepInstance.from_domain(info, step)

    @strawberry.field(permission_classes=[IsAuthenticated])
    async def workflow_instance(self, info: Info, id: strawberry.ID) -> WorkflowInstance | None:
        try:
            summary = "data" not in selected_names(info.selected_fields[0].selections, ())
            workflows = info.context.workflows
            found = await workflows.visible_instance(info.context.user, id, info.context.read, summary=summary)
            return WorkflowInstance.from_domain(found, summary=summary)
        except NotFoundError:
            return None

    @strawberry.field(permission_classes=[IsAuthenticated], description="The latest version of each definition.")
    async def workflow_definitions(self, info: Info) -> list[WorkflowDefinition]:
        return [WorkflowDefinition.from_domain(d) for d in await info.context.workflows.definitions(info.context.read)]
