"""Task mutations: each takes one input and returns a result union (success or a typed error)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from engine import StepwiseError, state
from schema.context import Info
from schema.errors import Conflict, Forbidden, InvalidState, NotFound, ValidationFailed, narrowed, to_error
from schema.idempotency import idempotency_key_field, idempotent
from schema.permissions import IsAuthenticated
from schema.types.details import TaskMessage
from schema.types.tasks import Task


@strawberry.input
class SaveTaskProgressInput:
    task_id: strawberry.ID
    values: JSON
    expected_revision: int | None = None
    idempotency_key: str | None = idempotency_key_field()


@strawberry.input
class SubmitTaskInput:
    task_id: strawberry.ID
    values: JSON | None = None
    expected_revision: int | None = None
    idempotency_key: str | None = idempotency_key_field()


@strawberry.input
class DecideTaskInput:
    task_id: strawberry.ID
    comment: str | None = None
    values: JSON | None = None
    expected_revision: int | None = None
    idempotency_key: str | None = idempotency_key_field()


@strawberry.input
class ClaimTaskInput:
    task_id: strawberry.ID
    idempotency_key: str | None = idempotency_key_field()


@strawberry.input
class AssignTaskInput:
    task_id: strawberry.ID
    user_id: strawberry.ID | None = strawberry.field(default=None, description="null unassigns")
    idempotency_key: str | None = idempotency_key_field()


@strawberry.input
class DelegateTaskInput:
    task_id: strawberry.ID
    to: strawberry.ID = strawberry.field(description="The delegate: works on the task, then resolves it back.")
    idempotency_key: str | None = idempotency_key_field()


@strawberry.input
class ResolveTaskInput:
    task_id: strawberry.ID
    values: JSON | None = strawberry.field(default=None, description="Left as the owner's draft.")
    idempotency_key: str | None = idempotency_key_field()


@strawberry.input
class RetryTaskInput:
    task_id: strawberry.ID
    patch: JSON | None = strawberry.field(
        default=None,
        description='Fixes first: {"config": {...}, "data": {...}}, JSON Merge Patches over the task\'s rendered '
        "config (at each later attempt) and the instance's data. Taken literally; a secret is refused.",
    )
    idempotency_key: str | None = idempotency_key_field()


@strawberry.input
class PostTaskMessageInput:
    task_id: strawberry.ID
    body: str
    idempotency_key: str | None = idempotency_key_field()


@strawberry.type
class TaskSuccess:
    task: Task


@strawberry.type
class TaskMessageSuccess:
    message: TaskMessage
    task: Task


TaskResult = Annotated[
    TaskSuccess | NotFound | Forbidden | Conflict | InvalidState | ValidationFailed, strawberry.union("TaskResult")
]
# Conflict: the task's instance stayed too busy for the message's transition (it gave up retrying).
TaskMessageResult = Annotated[
    TaskMessageSuccess | NotFound | Forbidden | Conflict | ValidationFailed, strawberry.union("TaskMessageResult")
]


async def _task_result(work: Awaitable[state.Task]) -> TaskResult:
    try:
        return TaskSuccess(task=Task.from_domain(await work))
    except StepwiseError as exc:
        return to_error(exc)


@strawberry.type
class TaskMutations:
    @strawberry.mutation(permission_classes=[IsAuthenticated], description="Save a draft; the first save claims.")
    async def save_task_progress(self, info: Info, input: SaveTaskProgressInput) -> TaskResult:
        service = info.context.tasks
        return await _task_result(idempotent(info, "saveTaskProgress", input, lambda: service.save_progress(
            info.context.user, input.task_id, input.values, input.expected_revision
        )))  # fmt: skip

    @strawberry.mutation(permission_classes=[IsAuthenticated], description="Validate and complete a task.")
    async def submit_task(self, info: Info, input: SubmitTaskInput) -> TaskResult:
        service = info.context.tasks
        return await _task_result(idempotent(info, "submitTask", input, lambda: service.submit(
            info.context.user, input.task_id, input.values, input.expected_revision
        )))  # fmt: skip

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def approve_task(self, info: Info, input: DecideTaskInput) -> TaskResult:
        service = info.context.tasks
        return await _task_result(idempotent(info, "approveTask", input, lambda: service.decide(
            info.context.user, input.task_id, "approved", input.comment, input.values, input.expected_revision
        )))  # fmt: skip

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def reject_task(self, info: Info, input: DecideTaskInput) -> TaskResult:
        service = info.context.tasks
        return await _task_result(idempotent(info, "rejectTask", input, lambda: service.decide(
            info.context.user, input.task_id, "rejected", input.comment, input.values, input.expected_revision
        )))  # fmt: skip

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def claim_task(self, info: Info, input: ClaimTaskInput) -> TaskResult:
        service = info.context.tasks
        return await _task_result(
            idempotent(info, "claimTask", input, lambda: service.claim(info.context.user, input.task_id))
        )

    @strawberry.mutation(permission_classes=[IsAuthenticated], description="Managers and admins: (re)assign.")
    async def assign_task(self, info: Info, input: AssignTaskInput) -> TaskResult:
        service = info.context.tasks
        return await _task_result(
            idempotent(
                info, "assignTask", input, lambda: service.assign(info.context.user, input.task_id, input.user_id)
            )
        )

    @strawberry.mutation(permission_classes=[IsAuthenticated], description="The assignee hands the task to a delegate.")
    async def delegate_task(self, info: Info, input: DelegateTaskInput) -> TaskResult:
        service = info.context.tasks
        return await _task_result(
            idempotent(
                info, "delegateTask", input, lambda: service.delegate(info.context.user, input.task_id, input.to)
            )
        )

    @strawberry.mutation(permission_classes=[IsAuthenticated], description="The delegate hands it back to its owner.")
    async def resolve_task(self, info: Info, input: ResolveTaskInput) -> TaskResult:
        service = info.context.tasks
        return await _task_result(
            idempotent(
                info, "resolveTask", input, lambda: service.resolve(info.context.user, input.task_id, input.values)
            )
        )

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Admins: re-run a FAILED system task, optionally with a patch of its config or data.",
    )
    async def retry_task(self, info: Info, input: RetryTaskInput) -> TaskResult:
        service = info.context.tasks
        return await _task_result(
            idempotent(info, "retryTask", input, lambda: service.retry(info.context.user, input.task_id, input.patch))
        )

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def post_task_message(self, info: Info, input: PostTaskMessageInput) -> TaskMessageResult:
        try:
            service = info.context.tasks
            message, task = await idempotent(
                info,
                "postTaskMessage",
                input,
                lambda: service.post_message(info.context.user, input.task_id, input.body),
            )
        except StepwiseError as exc:
            # a message may be posted on a task in any state: InvalidState would be a bug
            return narrowed(exc, Forbidden, NotFound, Conflict, ValidationFailed)
        return TaskMessageSuccess(message=TaskMessage.from_domain(message), task=Task.from_domain(task))
