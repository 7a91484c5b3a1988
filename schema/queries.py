"""Queries: the viewer, one task, the inbox, step pages, instances and definitions."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry
from strawberry.scalars import JSON

from engine import (
    DataCondition,
    DataOperator,
    DataSort,
    DataSource,
    NotFoundError,
    TaskOrderField,
    TaskQuery,
    permissions,
    state,
)
from schema.context import Info
from schema.permissions import IsAuthenticated
from schema.selections import selected_names
from schema.types.enums import TaskKind, TaskPriority, TaskStatus, TaskType
from schema.types.tasks import StepInstance, Task, TaskConnection, WorkflowInstance
from schema.types.user import User

strawberry.enum(TaskOrderField, name="TaskOrderField")  # registered in place, as schema.types.enums does
strawberry.enum(
    DataSource, name="DataSource", description="Where a data path points: the instance's data or the task's input."
)
strawberry.enum(DataOperator, name="DataOperator")


@strawberry.input(
    description="A condition on business data: the value at `path` (dotted: `customer.id`) in the instance's "
    "data (the default) or the task's input, compared as the type of `value` (numbers as numbers, ISO 8601 "
    "dates as instants, strings, booleans). `in` takes a list, `exists` true or false, `contains` a substring "
    "of a string or an element of an array."
)
class DataConditionInput:
    path: str
    op: DataOperator
    value: JSON | None = None
    source: DataSource = DataSource.INSTANCE_DATA

    def to_domain(self) -> DataCondition:
        return DataCondition(path=self.path, op=DataOperator(self.op), value=self.value, source=DataSource(self.source))


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
    type: list[TaskType] | None = strawberry.field(default=None, description="Tasks of any of these types.")
    assigned_to_me: bool | None = strawberry.field(
        default=None, description="Tasks the viewer is assigned (their owner, while delegated) or delegated."
    )
    include_completed: bool | None = None
    workflow_instance_id: strawberry.ID | None = None
    step_instance_id: strawberry.ID | None = None
    due_before: datetime | None = None
    data: list[DataConditionInput] | None = strawberry.field(
        default=None, description="Conditions on business data, all of which must hold."
    )


@strawberry.input
class TaskOrder:
    field: TaskOrderField
    direction: OrderDirection
    data_path: str | None = strawberry.field(
        default=None,
        description="With `field: DATA`: the data path to order by (tasks without a value come last, ascending).",
    )
    data_source: DataSource = DataSource.INSTANCE_DATA


@strawberry.type
class WorkflowDefinition:
    key: str
    version: int
    title: str
    definition: JSON
    start_roles: strawberry.Private[tuple[str, ...]] = ()

    @strawberry.field(
        description="Whether the viewer may start it: it names no `startRoles`, the viewer holds one, or is an admin "
        "(else `startWorkflow` answers Forbidden)."
    )
    def viewer_can_start(self, info: Info) -> bool:
        return permissions.can_start(info.context.user, self.start_roles)

    @classmethod
    def from_domain(cls, deployed: state.DeployedDefinition) -> WorkflowDefinition:
        # The document was checked when deployed (engine.definitions.parsing): startRoles is a list of names.
        roles = deployed.document.get("startRoles") or ()
        return cls(
            key=deployed.key, version=deployed.version, title=deployed.title, definition=JSON(dict(deployed.document)),
            start_roles=tuple(str(role) for role in roles),
        )  # fmt: skip


def task_query(filter: TaskFilter | None, order: TaskOrder | None) -> TaskQuery:
    f = filter or TaskFilter()
    return TaskQuery(
        role=f.role, user_id=f.user_id, group=f.group_id, statuses=f.status, priorities=f.priority, kind=f.kind,
        types=[t.value for t in f.type] if f.type else None,
        assigned_to_me=bool(f.assigned_to_me), include_completed=bool(f.include_completed),
        workflow_instance_id=f.workflow_instance_id, step_instance_id=f.step_instance_id, due_before=f.due_before,
        data=tuple(c.to_domain() for c in f.data or ()),
        order_by=TaskOrderField(order.field) if order else TaskOrderField.CREATED_AT,
        descending=bool(order and order.direction is OrderDirection.DESC),
        order_data=DataSort(order.data_path, DataSource(order.data_source))
        if order is not None and order.data_path is not None else None,
    )  # fmt: skip


@strawberry.type
class Query:
    @strawberry.field(permission_classes=[IsAuthenticated], description="The signed-in user.")
    def me(self, info: Info) -> User:
        return User.from_domain(info.context.user)

    @strawberry.field(permission_classes=[IsAuthenticated], description="A task the viewer may see, else null.")
    async def task(self, info: Info, id: strawberry.ID) -> Task | None:
        try:
            return Task.from_domain(await info.context.visibility.task(info.context.user, id, info.context.read))
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
        return await TaskConnection.search(info, task_query(filter, order_by), first, after)

    @strawberry.field(permission_classes=[IsAuthenticated], description="A step page: metrics and tasks.")
    async def step_instance(self, info: Info, id: strawberry.ID) -> StepInstance | None:
        try:
            step, instance = await info.context.visibility.step(info.context.user, id, info.context.read)
        except NotFoundError:
            return None
        info.context.loaders.instances.prime(instance.id, instance)  # its fields read the instance again
        return await StepInstance.from_domain(info, step)

    @strawberry.field(permission_classes=[IsAuthenticated])
    async def workflow_instance(self, info: Info, id: strawberry.ID) -> WorkflowInstance | None:
        try:
            summary = "data" not in selected_names(info.selected_fields[0].selections, ())
            visibility = info.context.visibility
            found = await visibility.instance(info.context.user, id, info.context.read, summary=summary)
            return WorkflowInstance.from_domain(found, summary=summary)
        except NotFoundError:
            return None

    @strawberry.field(permission_classes=[IsAuthenticated], description="The latest version of each definition.")
    async def workflow_definitions(self, info: Info) -> list[WorkflowDefinition]:
        return [WorkflowDefinition.from_domain(d) for d in await info.context.workflows.definitions(info.context.read)]
