"""Workflow mutations: start, cancel, raw signal, deploy."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from engine import StepwiseError
from schema.context import Info
from schema.errors import Conflict, Forbidden, InvalidState, NotFound, ValidationFailed, narrowed, to_error
from schema.idempotency import idempotency_key_field, idempotent
from schema.permissions import IsAuthenticated
from schema.queries import WorkflowDefinition
from schema.types.tasks import WorkflowInstance


@strawberry.input
class StartWorkflowInput:
    definition_key: str
    input: JSON | None = None
    correlation_key: str | None = strawberry.field(
        default=None,
        description="A business key, unique per definition: a start with one an instance already has returns "
        "that instance (correlate addresses it by the key).",
    )
    idempotency_key: str | None = idempotency_key_field()


@strawberry.input
class CancelWorkflowInput:
    workflow_instance_id: strawberry.ID
    reason: str | None = None
    idempotency_key: str | None = idempotency_key_field()


@strawberry.input
class SendSignalInput:
    workflow_instance_id: strawberry.ID
    node_id: str
    payload: JSON | None = None
    idempotency_key: str | None = idempotency_key_field()


@strawberry.input
class CorrelateInput:
    definition_key: str
    correlation_key: str
    node_id: str
    payload: JSON | None = None
    idempotency_key: str | None = idempotency_key_field()


@strawberry.input
class DeployWorkflowDefinitionInput:
    definition: JSON
    idempotency_key: str | None = idempotency_key_field()


@strawberry.type
class StartWorkflowSuccess:
    workflow_instance: WorkflowInstance


@strawberry.type
class WorkflowSuccess:
    workflow_instance: WorkflowInstance


@strawberry.type
class DeploySuccess:
    definition: WorkflowDefinition
    created: bool = strawberry.field(description="False when an identical document was already the latest version.")


# Conflict: a start or a deploy gives up after losing its race a few times in a row (the definition
# kept being redeployed; other deploys kept taking the next version): the client may try again.
StartWorkflowResult = Annotated[
    StartWorkflowSuccess | NotFound | Forbidden | Conflict | ValidationFailed, strawberry.union("StartWorkflowResult")
]
WorkflowResult = Annotated[
    WorkflowSuccess | NotFound | Forbidden | Conflict | InvalidState | ValidationFailed,
    strawberry.union("WorkflowResult"),
]
DeployResult = Annotated[DeploySuccess | Forbidden | Conflict | ValidationFailed, strawberry.union("DeployResult")]


@strawberry.type
class WorkflowMutations:
    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def start_workflow(self, info: Info, input: StartWorkflowInput) -> StartWorkflowResult:
        try:
            service = info.context.workflows
            instance = await idempotent(
                info,
                "startWorkflow",
                input,
                lambda: service.start(info.context.user, input.definition_key, input.input, input.correlation_key),
            )
        except StepwiseError as exc:
            # a new instance is in no state yet: InvalidState would be a bug
            return narrowed(exc, Forbidden, NotFound, Conflict, ValidationFailed)
        return StartWorkflowSuccess(workflow_instance=WorkflowInstance.from_domain(instance))

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def cancel_workflow(self, info: Info, input: CancelWorkflowInput) -> WorkflowResult:
        try:
            service = info.context.workflows
            instance = await idempotent(
                info, "cancelWorkflow", input,
                lambda: service.cancel(info.context.user, input.workflow_instance_id, input.reason),
            )  # fmt: skip
        except StepwiseError as exc:
            return to_error(exc)
        return WorkflowSuccess(workflow_instance=WorkflowInstance.from_domain(instance))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Admin only: signal a node directly; a node not reached yet holds it until a token arrives.",
    )
    async def send_signal(self, info: Info, input: SendSignalInput) -> WorkflowResult:
        try:
            service = info.context.workflows
            instance = await idempotent(info, "sendSignal", input, lambda: service.send_signal(
                info.context.user, input.workflow_instance_id, input.node_id, input.payload
            ))  # fmt: skip
        except StepwiseError as exc:
            return to_error(exc)
        return WorkflowSuccess(workflow_instance=WorkflowInstance.from_domain(instance))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Admin only: signal a node of the instance with this business key (as sendSignal; a signal "
        "to a node not reached yet is held until a token arrives).",
    )
    async def correlate(self, info: Info, input: CorrelateInput) -> WorkflowResult:
        try:
            service = info.context.workflows
            instance = await idempotent(info, "correlate", input, lambda: service.correlate(
                info.context.user, input.definition_key, input.correlation_key, input.node_id, input.payload
            ))  # fmt: skip
        except StepwiseError as exc:
            return to_error(exc)
        return WorkflowSuccess(workflow_instance=WorkflowInstance.from_domain(instance))

    @strawberry.mutation(permission_classes=[IsAuthenticated], description="Admin only: deploy the next version.")
    async def deploy_workflow_definition(self, info: Info, input: DeployWorkflowDefinitionInput) -> DeployResult:
        try:
            service = info.context.workflows
            deployed, created = await idempotent(
                info, "deployWorkflowDefinition", input, lambda: service.deploy(info.context.user, input.definition)
            )
        except StepwiseError as exc:
            # a deploy reads no object and has no state: NotFound or InvalidState would be a bug
            return narrowed(exc, Forbidden, Conflict, ValidationFailed)
        return DeploySuccess(definition=WorkflowDefinition.from_domain(deployed), created=created)
