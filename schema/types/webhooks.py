"""Webhooks in the API: subscriptions, their delivery log, and the queries that read them (admins only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from engine import (
    DeliveryStatus,
    StepwiseError,
    ValidationError,
    decode_event_cursor,
    encode_event_cursor,
)
from engine import (
    FieldError as DomainFieldError,
)
from engine import (
    Webhook as DomainWebhook,
)
from engine import (
    WebhookAttempt as DomainAttempt,
)
from engine import (
    WebhookDelivery as DomainDelivery,
)
from schema.context import Info
from schema.errors import Forbidden, NotFound, narrowed
from schema.inbox import bad_user_input
from schema.permissions import IsAuthenticated
from schema.types.enums import TaskEventKind
from schema.types.paging import PageInfo

strawberry.enum(DeliveryStatus, name="WebhookDeliveryStatus")


@strawberry.type(description="Which tasks' events a webhook receives; an unset field matches every task.")
class WebhookFilter:
    definition_key: str | None
    node_id: str | None
    role: str | None


@strawberry.type
class Webhook:
    id: strawberry.ID
    url: str
    events: list[TaskEventKind] = strawberry.field(description="The kinds delivered; empty: every kind.")
    filter: WebhookFilter
    enabled: bool
    created_by: strawberry.ID
    created_at: datetime
    updated_at: datetime
    previous_secret_expires_at: datetime | None = strawberry.field(
        description="Until then the secret replaced by the last rotation signs deliveries too."
    )

    @classmethod
    def from_domain(cls, webhook: DomainWebhook) -> Webhook:
        rotating = webhook.previous_secret_until if webhook.previous_secret else None
        return cls(
            id=strawberry.ID(webhook.id), url=webhook.url, events=sorted(webhook.events), enabled=webhook.enabled,
            filter=WebhookFilter(definition_key=webhook.filter.definition_key, node_id=webhook.filter.node_id,
                                 role=webhook.filter.role),
            created_by=strawberry.ID(webhook.created_by), created_at=webhook.created_at,
            updated_at=webhook.updated_at, previous_secret_expires_at=rotating,
        )  # fmt: skip


@strawberry.type
class WebhookAttempt:
    number: int
    started_at: datetime
    finished_at: datetime
    status_code: int | None = strawberry.field(description="The receiver's answer; null if there was none.")
    error: str | None

    @classmethod
    def from_domain(cls, attempt: DomainAttempt) -> WebhookAttempt:
        return cls(number=attempt.number, started_at=attempt.started_at, finished_at=attempt.finished_at,
                   status_code=attempt.status_code, error=attempt.error)  # fmt: skip


@strawberry.type
class WebhookDelivery:
    id: strawberry.ID = strawberry.field(description="Pass to `redeliverWebhook`.")
    delivery_id: str = strawberry.field(
        description="The event's cursor: the `Stepwise-Delivery` header and the body's `id`, the same on every "
        "attempt and redelivery."
    )
    webhook_id: strawberry.ID
    task_id: strawberry.ID
    event_kind: TaskEventKind
    status: DeliveryStatus
    attempt_count: int = strawberry.field(description="Attempts since it was queued or last redelivered.")
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: JSON = strawberry.field(description="The JSON body sent.")
    attempts: list[WebhookAttempt] = strawberry.field(description="Every attempt, oldest first.")

    @classmethod
    def from_domain(cls, delivery: DomainDelivery, attempts: list[DomainAttempt]) -> WebhookDelivery:
        return cls(
            id=strawberry.ID(delivery.id), delivery_id=encode_event_cursor(delivery.position),
            webhook_id=strawberry.ID(delivery.webhook_id), task_id=strawberry.ID(delivery.task_id),
            event_kind=delivery.event_kind, status=delivery.status, attempt_count=delivery.attempt_count,
            next_attempt_at=delivery.next_attempt_at, last_status_code=delivery.last_status_code,
            last_error=delivery.last_error, created_at=delivery.created_at, delivered_at=delivery.delivered_at,
            payload=JSON(dict(delivery.payload)), attempts=[WebhookAttempt.from_domain(a) for a in attempts],
        )  # fmt: skip


@strawberry.type
class WebhookDeliveryEdge:
    cursor: str
    node: WebhookDelivery


@strawberry.type(description="A webhook's deliveries, newest event first.")
class WebhookDeliveryConnection:
    edges: list[WebhookDeliveryEdge]
    page_info: PageInfo


@strawberry.type
class WebhookList:
    webhooks: list[Webhook]


WebhooksResult = Annotated[WebhookList | Forbidden, strawberry.union("WebhooksResult")]
WebhookDeliveriesResult = Annotated[
    WebhookDeliveryConnection | Forbidden | NotFound, strawberry.union("WebhookDeliveriesResult")
]


@strawberry.type
class WebhookQueries:
    @strawberry.field(permission_classes=[IsAuthenticated], description="Admin only: every webhook.")
    async def webhooks(self, info: Info) -> WebhooksResult:
        try:
            found = await info.context.services.webhooks.webhooks(info.context.user)
        except StepwiseError as exc:
            return narrowed(exc, Forbidden)
        return WebhookList(webhooks=[Webhook.from_domain(webhook) for webhook in found])

    @strawberry.field(permission_classes=[IsAuthenticated], description="Admin only: a webhook's delivery log.")
    async def webhook_deliveries(
        self, info: Info, webhook_id: strawberry.ID, first: int = 20, after: str | None = None
    ) -> WebhookDeliveriesResult:
        before = None if after is None else decode_event_cursor(after)
        try:
            if after is not None and before is None:
                problem = DomainFieldError("after", "not a cursor of this query", "INVALID_CURSOR")
                raise ValidationError("after is not a cursor of this query", [problem])
            page, more, attempts = await info.context.services.webhooks.deliveries(
                info.context.user, webhook_id, first, before
            )
        except ValidationError as exc:  # paging arguments, as on every connection
            raise bad_user_input(exc) from exc
        except StepwiseError as exc:
            return narrowed(exc, Forbidden, NotFound)
        edges = [
            WebhookDeliveryEdge(cursor=encode_event_cursor(d.position),
                                node=WebhookDelivery.from_domain(d, attempts[d.id]))
            for d in page
        ]  # fmt: skip
        end = edges[-1].cursor if edges else None
        return WebhookDeliveryConnection(edges=edges, page_info=PageInfo(has_next_page=more, end_cursor=end))
