"""Sending action approvals' decisions to their callers' ``callbackUrl`` (docs/approvals.md): the webhook
dispatcher's round runs :meth:`ApprovalCallbackSender.deliver_due`, with its HTTP client (the host policy
on the address connected to) and its retry policy.

The body is ``{"taskId", "status", "outcome"}`` (the outcome is null for a request cancelled or expired
undecided), signed like a webhook (:mod:`engine.signing`) with the secret ``requestApproval`` returned,
and carries the task id as ``Stepwise-Delivery``. A 2xx acknowledges it; anything else is retried with
back-off until the attempts run out. At least once: a worker that dies mid-request leaves its lease to
run out and the callback is sent again, with the same id, so a receiver drops what it has seen.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Protocol

import httpx
import orjson

from engine.clock import Clock
from engine.errors import ExecutionFailedError
from engine.signing import SIGNATURE_HEADER, signature_header
from engine.storage.callbacks import DELIVERED, FAILED, PENDING, DueCallback, find_due, lease, settle
from engine.storage.database import Database

log = logging.getLogger(__name__)

DELIVERY_HEADER = "Stepwise-Delivery"
USER_AGENT = "Stepwise-Callbacks/1"
MAX_ERROR_LENGTH = 1000


class RetryPolicy(Protocol):
    """What the sender reads of the webhooks' ``DeliveryPolicy`` (engine.workers.webhooks)."""

    @property
    def max_attempts(self) -> int: ...

    @property
    def timeout(self) -> float: ...

    @property
    def lease(self) -> timedelta: ...

    def delay_after(self, failed_attempts: int) -> timedelta: ...


class ApprovalCallbackSender:
    def __init__(
        self, db: Database, clock: Clock, http: httpx.AsyncClient, policy: RetryPolicy, batch: int = 50
    ) -> None:
        self.db, self.clock, self.http, self.policy, self.batch = db, clock, http, policy, batch

    async def deliver_due(self) -> int:
        """Send each due callback once; how many were sent."""
        now = self.clock.now()
        async with self.db.read() as session:
            found = await find_due(session, now, self.batch)
        if not found:
            return 0
        async with self.db.transaction() as session:
            due = await lease(session, found, now, now + self.policy.lease)
        for callback in due:
            values = await self._send(callback)
            async with self.db.transaction() as session:
                await settle(session, callback.task_id, values)
        return len(due)

    async def _send(self, callback: DueCallback) -> dict[str, Any]:
        started = self.clock.now()
        body = orjson.dumps(
            {"taskId": callback.task_id, "status": callback.task_status, "outcome": callback.output},
            option=orjson.OPT_SORT_KEYS,
        )
        headers = {
            "Content-Type": "application/json", "User-Agent": USER_AGENT, DELIVERY_HEADER: callback.task_id,
            SIGNATURE_HEADER: signature_header([callback.secret], int(started.timestamp()), body),
        }  # fmt: skip
        status_code: int | None = None
        error: str | None = None
        final = False
        try:
            async with self.http.stream("POST", callback.url, content=body, headers=headers,
                                        timeout=self.policy.timeout) as response:  # fmt: skip
                status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"the receiver answered {status_code}"
        except ExecutionFailedError as exc:  # the host policy refused the address it resolved to
            error, final = exc.message, exc.non_retryable
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        now = self.clock.now()
        attempts = callback.attempt_count + 1
        values: dict[str, Any] = {"attempt_count": attempts, "last_status_code": status_code,
                                  "last_error": error and error[:MAX_ERROR_LENGTH]}  # fmt: skip
        if error is None:
            return {**values, "status": DELIVERED, "delivered_at": now, "next_attempt_at": None}
        log.info("approval callback for task %s failed (attempt %d): %s", callback.task_id, attempts, error)
        if final or attempts >= self.policy.max_attempts:
            return {**values, "status": FAILED, "next_attempt_at": None}
        return {**values, "status": PENDING, "next_attempt_at": now + self.policy.delay_after(attempts)}
