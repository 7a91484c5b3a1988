"""Webhook mutations (admins only): create, update, delete, rotate a secret, redeliver."""

from __future__ import annotations

from typing import Annotated

import strawberry

from engine import StepwiseError
from engine import WebhookFilter as DomainFilter
from schema.context import Info
from schema.errors import Conflict, Forbidden, NotFound, ValidationFailed, narrowed
from schema.idempotency import idempotency_key_field, idempotent
from schema.permissions import IsAuthenticated
from schema.types.enums import TaskEventKind
from schema.types.webhooks import Webhook, WebhookDelivery


@strawberry.input(description="Which tasks' events to deliver; an unset field matches every task.")
class WebhookFilterInput:
    definition_key: str | None = None
    node_id: str | None = None
    role: str | None = None

    def to_domain(self) -> DomainFilter:
        return DomainFilter(self.definition_key, self.node_id, self.role)


@strawberry.input
class CreateWebhookInput:
    url: str
    events: list[TaskEventKind] = strawberry.field(
        default_factory=list, description="The event kinds to deliver; empty: every kind."
    )
    filter: WebhookFilterInput | None = None
    idempotency_key: str | None = idempotency_key_field()


@strawberry.input(description="Only the fields given change.")
class UpdateWebhookInput:
    id: strawberry.ID
    url: str | None = None
    events: list[TaskEventKind] | None = None
    filter: WebhookFilterInput | None = None
    enabled: bool | None = strawberry.field(
        default=None, description="A disabled webhook is paused: enabled again, it catches up on what it missed."
    )
    idempotency_key: str | None = idempotency_key_field()


@strawberry.input
class WebhookIdInput:
    id: strawberry.ID
    idempotency_key: str | None = idempotency_key_field()


@strawberry.input
class RedeliverWebhookInput:
    delivery_id: strawberry.ID = strawberry.field(description="A `WebhookDelivery.id`.")
    idempotency_key: str | None = idempotency_key_field()


@strawberry.type
class WebhookSecretSuccess:
    webhook: Webhook
    secret: str = strawberry.field(
        description="The signing secret, shown only here: verify `Stepwise-Signature` with it."
    )


@strawberry.type
class WebhookSuccess:
    webhook: Webhook


@strawberry.type
class DeleteWebhookSuccess:
    id: strawberry.ID


@strawberry.type
class WebhookDeliverySuccess:
    delivery: WebhookDelivery


CreateWebhookResult = Annotated[
    WebhookSecretSuccess | Forbidden | Conflict | ValidationFailed, strawberry.union("CreateWebhookResult")
]
UpdateWebhookResult = Annotated[
    WebhookSuccess | Forbidden | NotFound | Conflict | ValidationFailed, strawberry.union("UpdateWebhookResult")
]
DeleteWebhookResult = Annotated[
    DeleteWebhookSuccess | Forbidden | NotFound | Conflict | ValidationFailed, strawberry.union("DeleteWebhookResult")
]
RotateWebhookSecretResult = Annotated[
    WebhookSecretSuccess | Forbidden | NotFound | Conflict | ValidationFailed,
    strawberry.union("RotateWebhookSecretResult"),
]
RedeliverWebhookResult = Annotated[
    WebhookDeliverySuccess | Forbidden | NotFound | Conflict | ValidationFailed,
    strawberry.union("RedeliverWebhookResult"),
]


@strawberry.type
class WebhookMutations:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated], description="Admin only: subscribe a URL to task events."
    )
    async def create_webhook(self, info: Info, input: CreateWebhookInput) -> CreateWebhookResult:
        chosen = input.filter.to_domain() if input.filter else DomainFilter()
        service = info.context.services.webhooks
        try:
            webhook, secret = await idempotent(info, "createWebhook", input, lambda: service.create(
                info.context.user, input.url, input.events, chosen
            ))  # fmt: skip
        except StepwiseError as exc:
            return narrowed(exc, Forbidden, Conflict, ValidationFailed)
        return WebhookSecretSuccess(webhook=Webhook.from_domain(webhook), secret=secret)

    @strawberry.mutation(permission_classes=[IsAuthenticated], description="Admin only.")
    async def update_webhook(self, info: Info, input: UpdateWebhookInput) -> UpdateWebhookResult:
        service = info.context.services.webhooks
        try:
            webhook = await idempotent(info, "updateWebhook", input, lambda: service.update(
                info.context.user, input.id, url=input.url, events=input.events,
                filter=input.filter.to_domain() if input.filter else None, enabled=input.enabled,
            ))  # fmt: skip
        except StepwiseError as exc:
            return narrowed(exc, Forbidden, NotFound, Conflict, ValidationFailed)
        return WebhookSuccess(webhook=Webhook.from_domain(webhook))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated], description="Admin only: the webhook and its delivery log are deleted."
    )
    async def delete_webhook(self, info: Info, input: WebhookIdInput) -> DeleteWebhookResult:
        try:
            service = info.context.services.webhooks
            await idempotent(info, "deleteWebhook", input, lambda: service.delete(info.context.user, input.id))
        except StepwiseError as exc:
            return narrowed(exc, Forbidden, NotFound, Conflict, ValidationFailed)
        return DeleteWebhookSuccess(id=input.id)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Admin only: a new signing secret; the old one keeps signing beside it for the grace period.",
    )
    async def rotate_webhook_secret(self, info: Info, input: WebhookIdInput) -> RotateWebhookSecretResult:
        try:
            service = info.context.services.webhooks
            webhook, secret = await idempotent(
                info, "rotateWebhookSecret", input, lambda: service.rotate_secret(info.context.user, input.id)
            )
        except StepwiseError as exc:
            return narrowed(exc, Forbidden, NotFound, Conflict, ValidationFailed)
        return WebhookSecretSuccess(webhook=Webhook.from_domain(webhook), secret=secret)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated], description="Admin only: send a delivery again, with the same id."
    )
    async def redeliver_webhook(self, info: Info, input: RedeliverWebhookInput) -> RedeliverWebhookResult:
        try:
            service = info.context.services.webhooks
            delivery = await idempotent(
                info, "redeliverWebhook", input, lambda: service.redeliver(info.context.user, input.delivery_id)
            )
        except StepwiseError as exc:
            return narrowed(exc, Forbidden, NotFound, Conflict, ValidationFailed)
        return WebhookDeliverySuccess(delivery=WebhookDelivery.from_domain(delivery, []))
