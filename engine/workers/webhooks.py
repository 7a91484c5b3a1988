"""Delivering webhooks: the worker's side of :mod:`engine.webhooks`.

Each round does two things:

1. **Queue.** For every enabled webhook, the events committed after its cursor are matched against it and a
   delivery is stored for each it wants, with the JSON body it will be sent (the event, and its task as it
   is at that moment), and the cursor moves past them, in one transaction. Two workers queueing the same
   events at once cannot both succeed: the cursor only moves from where it was read.
2. **Deliver.** Due deliveries are leased, the earliest pending one of each task per webhook only, and
   POSTed at once, each signed (:mod:`engine.signing`) and carrying the event's cursor as its id. A 2xx
   answer delivers it; anything else is retried with exponential back-off until the attempts run out. A
   URL the host policy refuses (it resolved somewhere else since it was registered) fails at once.

At-least-once: a worker that dies mid-request leaves its lease to run out, and the delivery is sent again,
with the same id. A task's next event is only sent once the one before it was acknowledged or given up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy.exc import IntegrityError

from engine.clock import Clock
from engine.errors import ExecutionFailedError
from engine.events.cursors import encode_event_cursor
from engine.signing import SIGNATURE_HEADER, signature_header
from engine.state import Task, TaskEvent, new_id
from engine.storage.database import Database
from engine.storage.instances import InstanceRepository
from engine.storage.task_events import TaskEventRepository
from engine.storage.tasks import TaskRepository
from engine.storage.webhooks import WebhookRepository
from engine.webhooks.model import DeliveryStatus, Webhook, WebhookAttempt, WebhookDelivery
from engine.workers.callbacks import ApprovalCallbackSender
from engine.workers.hostpolicy import HostPolicy, task_http_client
from engine.workers.webhook_http import DRAINED_ANSWER_BYTES, WebhookConnections

log = logging.getLogger(__name__)

DELIVERY_HEADER = "Stepwise-Delivery"
EVENT_HEADER = "Stepwise-Event"
WEBHOOK_HEADER = "Stepwise-Webhook"
USER_AGENT = "Stepwise-Webhooks/1"
# The answer's body is read (a connection is only kept alive for the next delivery once its answer was read
# to the end) but not kept; one larger than DRAINED_ANSWER_BYTES is dropped with its connection instead.
MAX_ANSWER_BYTES = 1 << 20
MAX_ERROR_LENGTH = 1000
PURGE_EVERY = timedelta(minutes=1)
MAX_WEBHOOK_ATTEMPTS = 100
"""With the back-off at its ceiling (an hour by default) this is days of trying: more is a mistake."""
KEPT_ALIVE = 20  # the connections httpx keeps open between requests (engine.workers.hostpolicy's pool)


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard the worker tries: ``max_attempts`` in all, waiting ``first_retry`` after the first failure and
    twice as long after each next one, at most ``max_retry``; each request may take ``timeout`` seconds."""

    max_attempts: int = 15
    first_retry: timedelta = timedelta(seconds=5)
    max_retry: timedelta = timedelta(hours=1)
    timeout: float = 10.0
    lease: timedelta = timedelta(seconds=60)
    log_retention: timedelta = timedelta(days=30)
    """How long a delivered or given-up delivery stays in the log (and can be redelivered)."""

    def delay_after(self, failed_attempts: int) -> timedelta:
        # Doubling stops at the ceiling: 2**n of a large n overflows a timedelta.
        delay = self.first_retry
        for _ in range(max(failed_attempts - 1, 0)):
            if delay >= self.max_retry:
                break
            delay *= 2
        return min(delay, self.max_retry)


def payload(webhook: Webhook, event: TaskEvent, task: Task, definition_key: str) -> dict[str, Any]:
    """The JSON a delivery sends: the event, and its task as it was when the delivery was queued."""
    assert event.position is not None
    return {
        "id": encode_event_cursor(event.position),
        "webhookId": webhook.id,
        "kind": event.kind.value,
        "occurredAt": event.occurred_at.isoformat(),
        "actorId": event.actor_id,
        "data": dict(event.data),
        "task": {
            "id": task.id, "workflowInstanceId": task.workflow_instance_id, "definitionKey": definition_key,
            "stepInstanceId": task.step_instance_id, "nodeId": task.node_id, "kind": task.kind.value,
            "type": task.schema_type, "name": task.name, "title": task.title, "status": task.status.value,
            "priority": task.priority.value, "assignedRole": task.assigned_role,
            "assignedUserId": task.assigned_user_id, "assignedGroup": task.assigned_group,
            "createdAt": task.created_at.isoformat(), "updatedAt": task.updated_at.isoformat(),
            "dueAt": task.due_at.isoformat() if task.due_at else None, "completedBy": task.completed_by,
        },
    }  # fmt: skip


class WebhookDispatcher:
    """Queues and delivers webhook deliveries for one worker; :meth:`run_once` is one round."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        host_policy: HostPolicy,
        worker_id: str,
        policy: DeliveryPolicy | None = None,
        *,
        batch: int = 200,
        queue_batch: int = 500,
        concurrency: int = KEPT_ALIVE,
    ) -> None:
        self.db, self.clock, self.worker_id = db, clock, worker_id
        self.policy = policy or DeliveryPolicy()
        self.batch, self.queue_batch = batch, queue_batch
        self.http = task_http_client(host_policy, MAX_ANSWER_BYTES)
        self.connections = WebhookConnections(host_policy, concurrency) if db.fast_paths.webhook_client else None
        """The deliveries' own client (:mod:`engine.workers.webhook_http`); None: they go through ``http``."""
        self.callbacks = ApprovalCallbackSender(db, clock, self.http, self.policy)
        """Action approvals' decisions to their callers: the same client, policy and rounds."""
        # As many requests at once as the client keeps connections alive for: more would open (and close)
        # a connection per request beyond them, which took most of a round's time (bench.webhook_delivery).
        self._sending = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._last_purge: datetime | None = None

    async def aclose(self) -> None:
        await self.http.aclose()
        if self.connections is not None:
            await self.connections.aclose()

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        """Queue what is new, then send one batch of due deliveries; returns how many were queued and sent.
        Once a minute it also deletes what the log no longer keeps."""
        await self.purge_if_due()
        return await self.queue_new_events() + await self.deliver_due() + await self.callbacks.deliver_due()

    async def purge_if_due(self) -> int:
        now = self.clock.now()
        if self._last_purge is not None and now - self._last_purge < PURGE_EVERY:
            return 0
        self._last_purge = now
        async with self.db.transaction() as session:
            return await WebhookRepository(session).purge_settled(now - self.policy.log_retention)

    async def run_until_idle(self, max_rounds: int = 100) -> int:
        total = 0
        for _ in range(max_rounds):
            done = await self.run_once()
            total += done
            if not done:
                break
        return total

    async def run(self, stop: asyncio.Event, poll_interval: float) -> None:
        """Rounds until ``stop``; woken early by :meth:`wake` (the worker's commit listener)."""
        while not stop.is_set():
            try:
                done = await self.run_once()
            except Exception:  # a database hiccup must not end the loop; the next round tries again
                log.exception("webhooks: a delivery round failed")
                done = 0
            if done:
                continue
            self._wake.clear()
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waiters, timeout=poll_interval, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

    # -- queueing --------------------------------------------------------------------------

    async def queue_new_events(self) -> int:
        async with self.db.read() as session:
            webhooks = await WebhookRepository(session).all(enabled_only=True)
        queued = 0
        for webhook in webhooks:
            queued += await self._queue_for(webhook)
        return queued

    async def _queue_for(self, webhook: Webhook) -> int:
        async with self.db.read() as session:
            events = await TaskEventRepository(session).after(webhook.cursor, self.queue_batch)
            if not events:
                return 0
            tasks = await TaskRepository(session).get_many({event.task_id for event in events})
            instances = await InstanceRepository(session).get_many({e.workflow_instance_id for e in events},
                                                                   summary=True)  # fmt: skip
        now = self.clock.now()
        deliveries = []
        for event in events:
            task, instance = tasks.get(event.task_id), instances.get(event.workflow_instance_id)
            if task is None or instance is None or not webhook.wants(event, task, instance.definition_key):
                continue  # a task deleted since (its instance's cascade) has nothing left to say
            assert event.position is not None
            deliveries.append(WebhookDelivery(
                id=new_id(), webhook_id=webhook.id, position=event.position, task_id=task.id, event_kind=event.kind,
                payload=payload(webhook, event, task, instance.definition_key), status=DeliveryStatus.PENDING,
                attempt_count=0, next_attempt_at=now, created_at=now,
            ))  # fmt: skip
        read_through = events[-1].position
        assert read_through is not None
        try:
            async with self.db.transaction() as session:
                repository = WebhookRepository(session)
                if not await repository.advance_cursor(webhook.id, webhook.cursor, read_through):
                    return 0  # another worker queued these first
                await repository.queue(deliveries)
        except IntegrityError:  # the same race, seen by SQLite's or PostgreSQL's unique index instead
            return 0
        return len(deliveries) or 1  # events were read: there may be more, so the round is not idle

    # -- delivering ------------------------------------------------------------------------

    async def deliver_due(self) -> int:
        now = self.clock.now()
        async with self.db.transaction() as session:
            claimed = await WebhookRepository(session).claim_due(now, self.worker_id, now + self.policy.lease,
                                                                 self.batch)  # fmt: skip
        if not claimed:
            return 0
        outcomes = await asyncio.gather(*(self._send(delivery, webhook) for delivery, webhook in claimed))
        async with self.db.transaction() as session:
            lost = await WebhookRepository(session).record_attempts(
                self.worker_id, [(delivery, *outcome) for (delivery, _), outcome in zip(claimed, outcomes, strict=True)]
            )
        for delivery_id in lost:
            log.info("webhook delivery %s: lease lost; this attempt's outcome is dropped", delivery_id)
        return len(claimed)

    async def _send(self, delivery: WebhookDelivery, webhook: Webhook) -> tuple[WebhookAttempt, Mapping[str, Any]]:
        async with self._sending:
            return await self._send_now(delivery, webhook)

    async def _send_now(self, delivery: WebhookDelivery, webhook: Webhook) -> tuple[WebhookAttempt, Mapping[str, Any]]:
        started = self.clock.now()
        body = orjson.dumps(delivery.payload, option=orjson.OPT_SORT_KEYS)
        headers = {
            "Content-Type": "application/json", "User-Agent": USER_AGENT,
            DELIVERY_HEADER: encode_event_cursor(delivery.position), EVENT_HEADER: delivery.event_kind.value,
            WEBHOOK_HEADER: webhook.id,
            SIGNATURE_HEADER: signature_header(webhook.signing_secrets(started), int(started.timestamp()), body),
        }  # fmt: skip
        status_code: int | None = None
        error: str | None = None
        final = False
        try:
            status_code = await self._post(webhook.url, body, headers)
            if not 200 <= status_code < 300:
                error = f"the receiver answered {status_code}"
        except ExecutionFailedError as exc:  # the host policy refused the address it resolved to
            error, final = exc.message, exc.non_retryable
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        finished = self.clock.now()
        attempt = WebhookAttempt(0, started, finished, status_code, error and error[:MAX_ERROR_LENGTH])
        return attempt, self._outcome(delivery, attempt, final, finished)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        if self.connections is not None:
            return await self.connections.post(url, body, list(headers.items()), self.policy.timeout)
        timeout = self.policy.timeout
        async with self.http.stream("POST", url, content=body, headers=headers, timeout=timeout) as response:
            drained = 0
            async for chunk in response.aiter_raw():
                drained += len(chunk)
                if drained > DRAINED_ANSWER_BYTES:
                    break
            return response.status_code

    def _outcome(
        self, delivery: WebhookDelivery, attempt: WebhookAttempt, final: bool, now: datetime
    ) -> dict[str, Any]:
        values: dict[str, Any] = {"last_status_code": attempt.status_code, "last_error": attempt.error}
        if attempt.error is None:
            return {**values, "status": DeliveryStatus.DELIVERED.value, "delivered_at": now, "next_attempt_at": None}
        if final or delivery.attempt_count >= self.policy.max_attempts:
            return {**values, "status": DeliveryStatus.FAILED.value, "next_attempt_at": None}
        retry_at = now + self.policy.delay_after(delivery.attempt_count)
        return {**values, "status": DeliveryStatus.PENDING.value, "next_attempt_at": retry_at}
