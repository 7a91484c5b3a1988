"""The webhook repository: subscriptions, their queued deliveries, and the delivery log.

Deliveries are leased to one worker at a time like system tasks (:mod:`engine.storage.leases`): a worker
that dies mid-request stops holding its lease, and the next claim after it ran out sends the delivery again
with the same id. A delivery is only claimed once no earlier delivery of the same task to the same webhook
is still pending, so a receiver sees each task's events in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import bindparam, delete, exists, func, insert, or_, select, update
from sqlalchemy.engine import CursorResult

from engine.state import TaskEventKind
from engine.storage.database import Executor
from engine.storage.models import webhook_attempts, webhook_deliveries, webhooks
from engine.webhooks.model import DeliveryStatus, Webhook, WebhookAttempt, WebhookDelivery, WebhookFilter

_PENDING = DeliveryStatus.PENDING.value
_RECORD = (
    update(webhook_deliveries)
    .where(webhook_deliveries.c.id == bindparam("delivery"))
    .values(
        status=bindparam("status"), last_status_code=bindparam("last_status_code"),
        last_error=bindparam("last_error"), next_attempt_at=bindparam("next_attempt_at"),
        delivered_at=bindparam("delivered_at"), lease_owner=None, lease_expires_at=None,
    )
)  # fmt: skip


def _rowcount(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount  # an UPDATE's or DELETE's result: a CursorResult


class WebhookRepository:
    def __init__(self, session: Executor) -> None:
        self.session = session

    # -- subscriptions ---------------------------------------------------------------------

    async def add(self, webhook: Webhook) -> None:
        await self.session.execute(insert(webhooks).values(_webhook_values(webhook)))

    async def get(self, webhook_id: str) -> Webhook | None:
        row = (await self.session.execute(select(webhooks).where(webhooks.c.id == webhook_id))).first()
        return _webhook(row) if row else None

    async def all(self, *, enabled_only: bool = False) -> list[Webhook]:
        query = select(webhooks).order_by(webhooks.c.created_at, webhooks.c.id)
        if enabled_only:
            query = query.where(webhooks.c.enabled.is_(True))
        return [_webhook(row) for row in await self.session.execute(query)]

    async def save(self, webhook: Webhook) -> None:
        values = _webhook_values(webhook)
        del values["cursor"]  # moved only by the worker, as it queues (advance_cursor)
        await self.session.execute(update(webhooks).where(webhooks.c.id == webhook.id).values(values))

    async def delete(self, webhook_id: str) -> bool:
        return _rowcount(await self.session.execute(delete(webhooks).where(webhooks.c.id == webhook_id))) == 1

    async def advance_cursor(self, webhook_id: str, read_from: int, read_through: int) -> bool:
        """Move the webhook's cursor from ``read_from`` to ``read_through``; False if another worker moved it
        first (that worker queues these events: this one's transaction must roll back)."""
        result = await self.session.execute(
            update(webhooks)
            .where(webhooks.c.id == webhook_id, webhooks.c.cursor == read_from)
            .values(cursor=read_through)
        )
        return _rowcount(result) == 1

    # -- deliveries ------------------------------------------------------------------------

    async def queue(self, deliveries: Sequence[WebhookDelivery]) -> None:
        if deliveries:
            await self.session.execute(insert(webhook_deliveries), [_delivery_values(d) for d in deliveries])

    async def claim_due(
        self, now: datetime, worker_id: str, lease_until: datetime, limit: int
    ) -> list[tuple[WebhookDelivery, Webhook]]:
        """Lease up to ``limit`` pending deliveries that are due, each the earliest pending one of its task for
        its webhook, with their (enabled) webhooks. ``SKIP LOCKED`` on PostgreSQL; SQLite's write
        transaction serializes claims."""
        earlier = webhook_deliveries.alias("earlier")
        waits = exists().where(
            earlier.c.webhook_id == webhook_deliveries.c.webhook_id,
            earlier.c.task_id == webhook_deliveries.c.task_id,
            earlier.c.status == _PENDING,
            earlier.c.position < webhook_deliveries.c.position,
        )
        query = (
            select(webhook_deliveries)
            .join(webhooks, webhooks.c.id == webhook_deliveries.c.webhook_id)
            .where(
                webhook_deliveries.c.status == _PENDING,
                webhook_deliveries.c.next_attempt_at <= now,
                or_(webhook_deliveries.c.lease_expires_at.is_(None), webhook_deliveries.c.lease_expires_at < now),
                webhooks.c.enabled.is_(True),
                ~waits,
            )
            .order_by(webhook_deliveries.c.position)
            .limit(limit)
            .with_for_update(of=webhook_deliveries, skip_locked=True)
        )
        rows = (await self.session.execute(query)).all()
        if not rows:
            return []
        await self.session.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id.in_([row.id for row in rows]))
            .values(
                lease_owner=worker_id, lease_expires_at=lease_until,
                attempt_count=webhook_deliveries.c.attempt_count + 1,
            )
        )  # fmt: skip
        hooks = {hook.id: hook for hook in await self._get_many({row.webhook_id for row in rows})}
        claimed = []
        for row in rows:
            delivery = _delivery(row)
            claimed.append((replace(delivery, attempt_count=delivery.attempt_count + 1), hooks[row.webhook_id]))
        return claimed

    async def _get_many(self, ids: Iterable[str]) -> list[Webhook]:
        query = select(webhooks).where(webhooks.c.id.in_(list(ids)))
        return [_webhook(row) for row in await self.session.execute(query)]

    async def record_attempts(
        self, worker_id: str, outcomes: Sequence[tuple[WebhookDelivery, WebhookAttempt, Mapping[str, Any]]]
    ) -> list[str]:
        """Log one attempt of each delivery and set its outcome (the mapping of column values), for those this
        worker still holds the lease of, in four statements however many there are; returns the ids of the
        others (their leases ran out and another worker has them now)."""
        ids = [delivery.id for delivery, _, _ in outcomes]
        held = set(
            (await self.session.execute(
                select(webhook_deliveries.c.id)
                .where(webhook_deliveries.c.id.in_(ids), webhook_deliveries.c.lease_owner == worker_id)
                .with_for_update()
            )).scalars()
        )  # fmt: skip
        counted = await self.session.execute(
            select(webhook_attempts.c.delivery_id, func.max(webhook_attempts.c.number))
            .where(webhook_attempts.c.delivery_id.in_(list(held)))
            .group_by(webhook_attempts.c.delivery_id)
        )
        numbers: dict[str, int] = {delivery_id: int(number) for delivery_id, number in counted}
        kept = [(d, a, v) for d, a, v in outcomes if d.id in held]
        if kept:
            columns = ("status", "last_status_code", "last_error", "next_attempt_at", "delivered_at")
            await self.session.execute(
                _RECORD,
                [{"delivery": d.id, **{c: v.get(c) for c in columns}} for d, _, v in kept],
            )
            await self.session.execute(insert(webhook_attempts), [
                {"delivery_id": d.id, "number": numbers.get(d.id, 0) + 1, "started_at": a.started_at,
                 "finished_at": a.finished_at, "status_code": a.status_code, "error": a.error}
                for d, a, _ in kept
            ])  # fmt: skip
        return [delivery_id for delivery_id in ids if delivery_id not in held]

    async def purge_settled(self, before: datetime) -> int:
        """Delete the delivered and given-up deliveries queued before ``before`` (their attempts go with them)."""
        result = await self.session.execute(
            delete(webhook_deliveries).where(
                webhook_deliveries.c.status != _PENDING, webhook_deliveries.c.created_at < before
            )
        )
        return _rowcount(result)

    async def get_delivery(self, delivery_id: str) -> WebhookDelivery | None:
        query = select(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id)
        row = (await self.session.execute(query)).first()
        return _delivery(row) if row else None

    async def redeliver(self, delivery_id: str, now: datetime) -> None:
        """Queue a delivery again, whatever became of it: due now, attempts counted afresh (the log keeps the old)."""
        await self.session.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id == delivery_id)
            .values(status=_PENDING, next_attempt_at=now, attempt_count=0, lease_owner=None, lease_expires_at=None)
        )

    async def deliveries(self, webhook_id: str, before: int | None, limit: int) -> list[WebhookDelivery]:
        """The webhook's deliveries, newest event first, those before position ``before`` when given."""
        query = select(webhook_deliveries).where(webhook_deliveries.c.webhook_id == webhook_id)
        if before is not None:
            query = query.where(webhook_deliveries.c.position < before)
        query = query.order_by(webhook_deliveries.c.position.desc()).limit(limit)
        return [_delivery(row) for row in await self.session.execute(query)]

    async def attempts(self, delivery_ids: Iterable[str]) -> dict[str, list[WebhookAttempt]]:
        ids = list(delivery_ids)
        found: dict[str, list[WebhookAttempt]] = {delivery_id: [] for delivery_id in ids}
        query = (
            select(webhook_attempts)
            .where(webhook_attempts.c.delivery_id.in_(ids))
            .order_by(webhook_attempts.c.delivery_id, webhook_attempts.c.number)
        )
        for row in await self.session.execute(query):
            found[row.delivery_id].append(
                WebhookAttempt(row.number, row.started_at, row.finished_at, row.status_code, row.error)
            )
        return found


def _webhook_values(webhook: Webhook) -> dict[str, Any]:
    return {
        "id": webhook.id, "url": webhook.url, "events": sorted(kind.value for kind in webhook.events),
        "filter": webhook.filter.to_json(), "enabled": webhook.enabled, "secret": webhook.secret,
        "previous_secret": webhook.previous_secret, "previous_secret_until": webhook.previous_secret_until,
        "cursor": webhook.cursor, "created_by": webhook.created_by, "created_at": webhook.created_at,
        "updated_at": webhook.updated_at,
    }  # fmt: skip


def _webhook(row: Any) -> Webhook:
    return Webhook(
        id=row.id, url=row.url, events=tuple(sorted(TaskEventKind(kind) for kind in row.events)),
        filter=WebhookFilter.from_json(row.filter), enabled=bool(row.enabled), created_by=row.created_by,
        created_at=row.created_at, updated_at=row.updated_at, secret=row.secret, previous_secret=row.previous_secret,
        previous_secret_until=row.previous_secret_until, cursor=int(row.cursor),
    )  # fmt: skip


def _delivery_values(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id, "webhook_id": delivery.webhook_id, "position": delivery.position,
        "task_id": delivery.task_id, "event_kind": delivery.event_kind.value, "payload": dict(delivery.payload),
        "status": delivery.status.value, "attempt_count": delivery.attempt_count,
        "next_attempt_at": delivery.next_attempt_at, "created_at": delivery.created_at,
        "delivered_at": delivery.delivered_at, "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error, "lease_owner": None, "lease_expires_at": None,
    }  # fmt: skip


def _delivery(row: Any) -> WebhookDelivery:
    return WebhookDelivery(
        id=row.id, webhook_id=row.webhook_id, position=int(row.position), task_id=row.task_id,
        event_kind=TaskEventKind(row.event_kind), payload=row.payload, status=DeliveryStatus(row.status),
        attempt_count=row.attempt_count, next_attempt_at=row.next_attempt_at, created_at=row.created_at,
        delivered_at=row.delivered_at, last_status_code=row.last_status_code, last_error=row.last_error,
    )  # fmt: skip
