"""Bulk task mutations: ``claimTasks``, ``assignTasks``, ``decideTasks`` (engine.tasks.bulk). Each item is
answered on its own, as the single mutation would answer it; only a bad list as a whole (empty, too long,
a task twice) or a bad key is the mutation's own ``ValidationFailed``."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import strawberry

from engine import MAX_BULK_TASKS, BulkItem, StepwiseError, UnavailableError
from schema.context import Info
from schema.errors import Conflict, Forbidden, InvalidState, NotFound, Unavailable, ValidationFailed, to_error
from schema.idempotency import KEY_DESCRIPTION
from schema.mutations.tasks import TaskSuccess
from schema.permissions import IsAuthenticated
from schema.types.tasks import Task

IDS = f"Up to {MAX_BULK_TASKS} tasks, each named once."
DRY_RUN = "Check every item as the action would, and report what would happen; nothing is written."
BULK_KEY = (
    "Each item is exactly-once under this key (see the single mutations' idempotencyKey): a repeat answers "
    "every item as its first run did. " + KEY_DESCRIPTION.split(";")[0] + "."
)


@strawberry.enum
class TaskDecision(Enum):
    APPROVED = "approved"
    REJECTED = "rejected"


@strawberry.input
class ClaimTasksInput:
    task_ids: list[strawberry.ID] = strawberry.field(description=IDS)
    dry_run: bool = strawberry.field(default=False, description=DRY_RUN)
    idempotency_key: str | None = strawberry.field(default=None, description=BULK_KEY)


@strawberry.input
class AssignTasksInput:
    task_ids: list[strawberry.ID] = strawberry.field(description=IDS)
    user_id: strawberry.ID | None = strawberry.field(default=None, description="null unassigns")
    dry_run: bool = strawberry.field(default=False, description=DRY_RUN)
    idempotency_key: str | None = strawberry.field(default=None, description=BULK_KEY)


@strawberry.input
class DecideTasksInput:
    task_ids: list[strawberry.ID] = strawberry.field(description=IDS)
    decision: TaskDecision
    comment: str | None = None
    dry_run: bool = strawberry.field(default=False, description=DRY_RUN)
    idempotency_key: str | None = strawberry.field(default=None, description=BULK_KEY)


BulkTaskItemResult = Annotated[
    TaskSuccess | NotFound | Forbidden | Conflict | InvalidState | ValidationFailed | Unavailable,
    strawberry.union("BulkTaskItemResult"),
]


@strawberry.type(
    description="One task's outcome: what the single mutation would have answered for it, or `Unavailable` "
    "where an outage (which the single mutation answers as a top-level UNAVAILABLE) stopped this item alone."
)
class BulkTaskItem:
    task_id: strawberry.ID
    result: BulkTaskItemResult


@strawberry.type
class BulkTasksSuccess:
    items: list[BulkTaskItem] = strawberry.field(description="One per task, in the order they were named.")
    dry_run: bool
    succeeded: int
    failed: int


BulkTasksResult = Annotated[BulkTasksSuccess | ValidationFailed, strawberry.union("BulkTasksResult")]


def _item(item: BulkItem) -> BulkTaskItem:
    result: BulkTaskItemResult
    if isinstance(item.error, UnavailableError):
        # Per item: the others may have committed, and a top-level error would not say which.
        result = Unavailable(message=item.error.message, code=item.error.code)
    elif item.error is not None:
        result = to_error(item.error)
    else:
        assert item.task is not None
        result = TaskSuccess(task=Task.from_domain(item.task))
    return BulkTaskItem(task_id=strawberry.ID(item.task_id), result=result)


def _success(items: list[BulkItem], dry_run: bool) -> BulkTasksSuccess:
    failed = sum(1 for item in items if item.error is not None)
    return BulkTasksSuccess(items=[_item(i) for i in items], dry_run=dry_run, succeeded=len(items) - failed,
                            failed=failed)  # fmt: skip


@strawberry.type
class BulkTaskMutations:
    @strawberry.mutation(permission_classes=[IsAuthenticated], description="Claim each task, as claimTask would.")
    async def claim_tasks(self, info: Info, input: ClaimTasksInput) -> BulkTasksResult:
        try:
            items = await info.context.bulk.claim(
                info.context.user, list(input.task_ids), dry_run=input.dry_run, idempotency_key=input.idempotency_key
            )
        except StepwiseError as exc:
            return _validation(exc)
        return _success(items, input.dry_run)

    @strawberry.mutation(permission_classes=[IsAuthenticated], description="(Re)assign each task, as assignTask would.")
    async def assign_tasks(self, info: Info, input: AssignTasksInput) -> BulkTasksResult:
        try:
            items = await info.context.bulk.assign(
                info.context.user, list(input.task_ids), input.user_id, dry_run=input.dry_run,
                idempotency_key=input.idempotency_key,
            )  # fmt: skip
        except StepwiseError as exc:
            return _validation(exc)
        return _success(items, input.dry_run)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Approve or reject each task, as approveTask/rejectTask would.",
    )
    async def decide_tasks(self, info: Info, input: DecideTasksInput) -> BulkTasksResult:
        try:
            items = await info.context.bulk.decide(
                info.context.user, list(input.task_ids), input.decision.value, input.comment, dry_run=input.dry_run,
                idempotency_key=input.idempotency_key,
            )  # fmt: skip
        except StepwiseError as exc:
            return _validation(exc)
        return _success(items, input.dry_run)


def _validation(exc: StepwiseError) -> ValidationFailed:
    error = to_error(exc)
    if not isinstance(error, ValidationFailed):  # the list as a whole is all the mutation itself refuses
        raise exc
    return error
