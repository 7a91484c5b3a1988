"""The worker: claims due system tasks with leases, runs one attempt each, records it, and either
completes the task (the workflow moves on), schedules a retry with back-off, or fails it.

Execution is at-least-once: a worker that dies mid-attempt leaves a lease that expires, and another
worker runs the attempt again (HTTP calls carry ``Idempotency-Key: <task id>`` for that reason). A
result is only written by the worker that still holds the lease.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from engine.definitions.model import RetryPolicy
from engine.definitions.templates import render_value
from engine.errors import ExecutionFailedError, StepwiseError
from engine.state import Task, TaskAttempt, TaskEventKind, TaskStatus, new_id
from engine.storage.directory import DirectoryRepository
from engine.storage.discussion import TaskDetailsRepository
from engine.storage.instances import InstanceRepository
from engine.storage.leases import LeaseRepository
from engine.storage.tasks import TaskRepository
from engine.transitions.engine import Engine
from engine.transitions.transition import Transition, template_variables
from engine.workers.executor import ExecutionContext, ExecutionRequest, ExecutionResult, SystemTaskExecutor, WaitUntil
from engine.workers.redaction import redact, redact_text

log = logging.getLogger(__name__)
DEFAULT_RETRY = RetryPolicy()


class Worker:
    """Runs system tasks for one engine. ``run_once`` for tests and tools; ``run`` as a service."""

    def __init__(
        self,
        engine: Engine,
        executors: Mapping[str, SystemTaskExecutor],
        context: ExecutionContext,
        *,
        secrets: Mapping[str, str] | None = None,
        lease: timedelta = timedelta(seconds=60),
        batch: int = 8,
        poll_interval: float = 1.0,
        worker_id: str | None = None,
    ) -> None:
        self.engine = engine
        self.executors = executors
        self.context = context
        self.secrets: Mapping[str, str] = secrets or {}
        self.lease = lease
        self.batch = batch
        self.poll_interval = poll_interval
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{new_id()[-6:]}"
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for work now instead of at the next poll (called after commits that queue tasks)."""
        self._wake.set()

    async def expire_due(self) -> int:
        """Mark user tasks ``EXPIRED`` whose due time passed where the node says ``onDue: "expire"``."""
        now = self.engine.clock.now()
        async with self.engine.db.read() as session:
            candidates = await TaskRepository(session).find_expiring(now)
        expired = 0
        for candidate in candidates:

            async def expire(transition: Transition, task_id: str = candidate.id) -> bool:
                task = await transition.tasks.get_by_id(task_id)
                if task is None or task.expires_at is None or task.expires_at > transition.now:
                    return False
                if task.status not in (TaskStatus.PENDING, TaskStatus.CLAIMED):
                    return False
                await transition.expire(task)
                return True

            try:
                done, _ = await self.engine.transition(candidate.workflow_instance_id, None, expire)
            except StepwiseError as exc:
                log.warning("task %s: could not expire: %s", candidate.id, exc.message)
                continue
            expired += int(done)
        return expired

    async def run_once(self) -> int:
        """Expire overdue user tasks, then claim and run one batch; returns how many attempts ran."""
        await self.expire_due()
        now = self.engine.clock.now()
        async with self.engine.db.transaction() as session:
            claimed = await LeaseRepository(session).claim_runnable(now, self.worker_id, now + self.lease, self.batch)
        # Claimed outside a transition: what the engine remembers of their instances is stale now, and
        # recording the attempt from it would cost an attempt that writes nothing (engine.remembered).
        self.engine.remembered.forget(task.workflow_instance_id for task in claimed)
        await asyncio.gather(*(self._attempt(task) for task in claimed))
        return len(claimed)

    async def run_until_idle(self, max_rounds: int = 100) -> int:
        """Run batches until nothing is due (tests drive the clock and call this)."""
        total = 0
        for _ in range(max_rounds):
            ran = await self.run_once()
            total += ran
            if not ran:
                break
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Poll for due tasks until ``stop`` is set; a commit listener may wake it early."""
        while not stop.is_set():
            try:
                ran = await self.run_once()
            except Exception:  # a database hiccup must not end the worker; it retries on the next tick
                log.exception("worker %s: claiming tasks failed", self.worker_id)
                ran = 0
            if ran:
                continue
            self._wake.clear()
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waiters, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

    async def _attempt(self, task: Task) -> None:
        started = self.engine.clock.now()
        request: ExecutionRequest | None = None
        try:
            request = await self._request(task)
            executor = self.executors[task.schema_type]
            heartbeat = asyncio.create_task(self._keep_lease(task.id))
            try:
                outcome: ExecutionResult | WaitUntil | ExecutionFailedError = await executor.execute(
                    request, self.context
                )
            finally:
                heartbeat.cancel()
        except ExecutionFailedError as exc:
            outcome = exc
        except Exception as exc:  # an executor bug fails the attempt, never the worker
            log.exception("task %s: executor %s raised", task.id, task.schema_type)
            outcome = ExecutionFailedError(f"{type(exc).__name__}: {exc}")
        try:
            await self.engine.transition(
                task.workflow_instance_id, None, lambda t: self._record(t, task, request, outcome, started)
            )
        except StepwiseError as exc:
            log.warning("task %s: attempt result not recorded: %s", task.id, exc.message)

    async def _keep_lease(self, task_id: str) -> None:
        """Renew the lease every third of its length while the attempt runs, so a slow call is never
        claimed and run a second time by another worker while this one is still waiting for it."""
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            try:
                until = self.engine.clock.now() + self.lease
                async with self.engine.db.transaction() as session:
                    if not await LeaseRepository(session).extend_lease(task_id, self.worker_id, until):
                        return  # lost already; _record will drop this attempt's result
            except Exception:  # a failed renewal is retried at the next beat
                log.exception("task %s: renewing the lease failed", task_id)

    async def _request(self, task: Task) -> ExecutionRequest:
        async with self.engine.db.read() as session:
            instance = await InstanceRepository(session).get(task.workflow_instance_id)
            assert instance is not None
            starter = await DirectoryRepository(session).get_user(instance.started_by)
        definition = await self.engine.definition(instance.definition_key, instance.definition_version)
        node = definition.node(task.node_id)
        variables = template_variables(instance.data, instance.started_by, starter, self.engine.settings, self.secrets)
        try:
            config = render_value(dict(node.config), variables)
        except Exception as exc:  # a template that fails at run time is a configuration error: no retry helps
            raise ExecutionFailedError(f"config does not render: {exc}", non_retryable=True) from exc
        return ExecutionRequest(
            task_id=task.id, workflow_instance_id=task.workflow_instance_id, node=node, attempt=task.attempt_count,
            config=config, task_created_at=task.created_at, data=dict(instance.data), secrets=self.secrets,
        )  # fmt: skip

    async def _record(
        self,
        transition: Transition,
        claimed: Task,
        request: ExecutionRequest | None,
        outcome: ExecutionResult | WaitUntil | ExecutionFailedError,
        started: Any,
    ) -> None:
        task = await transition.tasks.get_by_id(claimed.id)
        if task is None or task.status is not TaskStatus.RUNNING:
            return
        if await LeaseRepository(transition.connection).lease_owner(task.id) != self.worker_id:
            log.info("task %s: lease lost to another worker; dropping this attempt's result", task.id)
            return
        now = transition.now
        if isinstance(outcome, WaitUntil):
            await transition.update_task(
                task, TaskEventKind.UPDATED, status=TaskStatus.WAITING, next_run_at=outcome.until,
                attempt_count=task.attempt_count - 1, lease_owner=None, lease_expires_at=None,
            )  # fmt: skip
            return
        details = TaskDetailsRepository(transition.connection)
        number = await details.next_attempt_number(task.id)
        sent = outcome.request if outcome.request is not None else (dict(request.config) if request else None)
        error = redact_text(outcome.message, self.secrets) if isinstance(outcome, ExecutionFailedError) else None
        await details.add_attempt(
            TaskAttempt(
                task.id, number, started, now, redact(sent, self.secrets), redact(outcome.response, self.secrets), error
            )  # fmt: skip
        )
        if isinstance(outcome, ExecutionResult):
            await transition.complete(task, outcome.output, lease_owner=None, lease_expires_at=None, error=None)
            return
        assert error is not None
        policy = transition.definition.node(task.node_id).retry or DEFAULT_RETRY
        if outcome.non_retryable or task.attempt_count >= policy.max_attempts:
            await transition.fail(task, error)
            return
        retry_at = now + policy.delay_before(task.attempt_count + 1)
        await transition.update_task(
            task, TaskEventKind.UPDATED, status=TaskStatus.WAITING, next_run_at=retry_at, error=error,
            lease_owner=None, lease_expires_at=None,
        )  # fmt: skip
