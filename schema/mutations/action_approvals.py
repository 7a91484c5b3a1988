"""Action approvals (docs/approvals.md): automated callers ask (``requestApproval``), people decide
(``decideActionApproval``), callers wait (``awaitDecision``, or the ``taskEvents`` subscription)."""

from __future__ import annotations

import asyncio
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from engine import MAX_WAIT_SECONDS, ActionDecision, ApprovalRequest, Priority, StepwiseError, UnavailableError
from schema.context import Info
from schema.errors import Conflict, Forbidden, InvalidState, NotFound, ValidationFailed, to_error
from schema.idempotency import idempotency_key_field, idempotent
from schema.mutations.tasks import TaskResult, TaskSuccess
from schema.permissions import IsAuthenticated
from schema.types.tasks import Task

strawberry.enum(ActionDecision, name="ActionDecision")


@strawberry.input
class DecideActionApprovalInput:
    task_id: strawberry.ID
    decision: ActionDecision
    arguments: JSON | None = strawberry.field(
        default=None, description="EDITED only: the arguments to run instead, checked against the action's schema."
    )
    feedback: str | None = strawberry.field(default=None, description="Why (REJECTED), or the answer (RESPONDED).")
    expected_revision: int | None = None
    idempotency_key: str | None = idempotency_key_field()


@strawberry.input(description="Who decides: exactly one of the three.")
class AssignToInput:
    role: str | None = None
    user: strawberry.ID | None = None
    group: str | None = None


@strawberry.input
class RequestApprovalInput:
    action: str = strawberry.field(description="The action's name, e.g. the tool an agent wants to call.")
    arguments: JSON = strawberry.field(description="A JSON object: what the action would run with.")
    assign_to: AssignToInput
    arguments_schema: JSON | None = strawberry.field(
        default=None, description="A JSON Schema (2020-12) the arguments, and any edit of them, must match."
    )
    summary: str | None = None
    priority: Priority = Priority.NORMAL
    due_in: str | None = strawberry.field(default=None, description="An ISO 8601 duration, e.g. PT4H.")
    callback_url: str | None = strawberry.field(
        default=None, description="Sent the decision, signed like a webhook, until it answers 2xx."
    )
    idempotency_key: str | None = strawberry.field(
        default=None,
        description="Names the request: asked again with the same key (after a crash, say), the same request "
        "and its task come back, never a second one.",
    )


@strawberry.type
class RequestApprovalSuccess:
    task: Task
    callback_secret: str | None = strawberry.field(
        description="With a callbackUrl: the secret its Stepwise-Signature is made with (HMAC-SHA256 over "
        "`<t>.<body>`, as webhooks'); the same on every repeat of the request."
    )


RequestApprovalResult = Annotated[
    RequestApprovalSuccess | Forbidden | Conflict | ValidationFailed, strawberry.union("RequestApprovalResult")
]


@strawberry.enum
class DecisionStatus(Enum):
    PENDING = "PENDING"
    """Not decided yet (the wait timed out)."""
    DECIDED = "DECIDED"
    CLOSED = "CLOSED"
    """Cancelled or expired without a decision."""


@strawberry.type
class AwaitDecisionSuccess:
    status: DecisionStatus
    task: Task
    outcome: JSON | None = strawberry.field(
        description="{decision, arguments, feedback, decidedBy, decidedAt} once DECIDED; run `arguments`."
    )


AwaitDecisionResult = Annotated[
    AwaitDecisionSuccess | NotFound | InvalidState | ValidationFailed, strawberry.union("AwaitDecisionResult")
]


@strawberry.type
class ActionApprovalMutations:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Ask a person to approve an action (an automated caller without a workflow): a one-node "
        "instance holding an ACTION_APPROVAL task.",
    )
    async def request_approval(self, info: Info, input: RequestApprovalInput) -> RequestApprovalResult:
        service = info.context.services.approval_requests
        request = ApprovalRequest(
            action=input.action, arguments=input.arguments, arguments_schema=input.arguments_schema,
            summary=input.summary, assign_role=input.assign_to.role, assign_user=input.assign_to.user,
            assign_group=input.assign_to.group, priority=input.priority, due_in=input.due_in,
            idempotency_key=input.idempotency_key, callback_url=input.callback_url,
        )  # fmt: skip
        try:
            await service.ensure_definition()
            requested = await idempotent(
                info, "requestApproval", input, lambda: service.request(info.context.user, request)
            )
        except StepwiseError as exc:
            error = to_error(exc)
            if isinstance(error, NotFound | InvalidState):  # a new request reads nothing and has no state
                raise
            return error
        return RequestApprovalSuccess(task=Task.from_domain(requested.task), callback_secret=requested.callback_secret)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Approve, edit and approve, reject or answer an action approval. People only: a service "
        "account is Forbidden (SERVICE_ACCOUNT).",
    )
    async def decide_action_approval(self, info: Info, input: DecideActionApprovalInput) -> TaskResult:
        service = info.context.tasks
        try:
            task = await idempotent(info, "decideActionApproval", input, lambda: service.decide_action(
                info.context.user, input.task_id, input.decision, input.arguments, input.feedback,
                input.expected_revision,
            ))  # fmt: skip
        except StepwiseError as exc:
            return to_error(exc)
        return TaskSuccess(task=Task.from_domain(task))


@strawberry.type
class ActionApprovalQueries:
    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description=f"Wait (at most {MAX_WAIT_SECONDS} s) for an action approval's decision: answers the "
        "moment it is decided, or PENDING when the time is up. Ask again to wait longer.",
    )
    async def await_decision(
        self, info: Info, task_id: strawberry.ID, timeout_seconds: int = 30
    ) -> AwaitDecisionResult:
        context = info.context
        if context.events is None:  # not the task's state: what the wait needs is not here (an outage's answer)
            raise UnavailableError("waiting needs the event hub, which this endpoint does not run")
        if context.reads is not None:  # not held open while waiting; later fields read afresh
            await context.reads.close()
        # A long poll answers PENDING a second before the request timeout would cut it off with a 503.
        answer_within = None if context.deadline is None else context.deadline - asyncio.get_running_loop().time() - 1.0
        try:
            awaited = await context.services.approval_requests.await_decision(
                context.user, context.events, task_id, timeout_seconds, answer_within
            )
        except StepwiseError as exc:
            error = to_error(exc)
            if isinstance(error, Forbidden | Conflict):
                raise
            return error
        task = awaited.task
        if awaited.pending:
            status = DecisionStatus.PENDING
        elif task.output is not None:
            status = DecisionStatus.DECIDED
        else:
            status = DecisionStatus.CLOSED
        outcome = JSON(dict(task.output)) if status is DecisionStatus.DECIDED and task.output is not None else None
        return AwaitDecisionSuccess(status=status, task=Task.from_domain(task), outcome=outcome)
