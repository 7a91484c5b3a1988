"""The worker: claims due system tasks with leases, runs one attempt each, records it, and either
completes the task (the workflow moves on), schedules a retry with back-off, or fails it.

Execution is at-least-once: a worker that dies mid-attempt leaves a lease that expires, and another
worker runs the attempt again (HTTP calls carry ``Idempotency-Key: <task id>`` for that reason). A
result is only written by the worker that still holds the lease.

A worker told to stop (:meth:`Worker.run`'s ``stop``) claims nothing more, gives the attempts it is
running a grace period, then cancels those still running and hands their tasks back: runnable at
once for any worker, the interrupted attempt not counted, rather than leased until the lease ends.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
import traceback
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

from engine.definitions.model import RetryPolicy
from engine.definitions.templates import render_value
from engine.definitions.validation import json_size
from engine.errors import ExecutionFailedError, StepwiseError
from engine.observer import AttemptOutcome
from engine.state import Task, TaskAttempt, TaskEventKind, TaskStatus, new_id
from engine.storage.directory import DirectoryRepository
from engine.storage.discussion import TaskDetailsRepository
from engine.storage.instances import InstanceRepository
from engine.storage.leases import LeaseRepository
from engine.storage.tasks import TaskRepository
from engine.tasks.patches import CONFIG_PATCH, merge_patch
from engine.transitions.engine import Engine
from engine.transitions.transition import Transition
from engine.transitions.variables import template_variables
from engine.workers.escalations import Escalator
from engine.workers.executor import ExecutionRequest, ExecutionResult, SystemTaskContext, SystemTaskExecutor, WaitUntil
from engine.workers.notifications import EmailNotifier
from engine.workers.redaction import redact, redact_logs, redact_text
from engine.workers.webhooks import WebhookDispatcher

log = logging.getLogger(__name__)
DEFAULT_RETRY = RetryPolicy()


class Worker:
    """Runs system tasks for one engine. ``run_once`` for tests and tools; ``run`` as a service."""

    def __init__(
        self,
        engine: Engine,
        executors: Mapping[str, SystemTaskExecutor],
        context: SystemTaskContext,
        *,
        secrets: Mapping[str, str] | None = None,
        lease: timedelta = timedelta(seconds=60),
        batch: int = 8,
        poll_interval: float = 1.0,
        worker_id: str | None = None,
        webhooks: WebhookDispatcher | None = None,
        notifier: EmailNotifier | None = None,
    ) -> None:
        self.engine = engine
        self.executors = executors
        self.context = context
        self.secrets: Mapping[str, str] = secrets or {}
        redact_logs(self.secrets)
        self.lease = lease
        self.batch = batch
        self.poll_interval = poll_interval
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{new_id()[-6:]}"
        self._wake = asyncio.Event()
        self._executing: dict[str, asyncio.Future[ExecutionResult | WaitUntil]] = {}
        self._handing_back = False
        self.escalator = Escalator(engine, context, self.worker_id, lease)
        self.webhooks = webhooks
        self.notifier = notifier
        """Sends the emails of user tasks whose node says ``notify`` (each round, before claiming)."""
        """Delivers webhooks beside the system tasks, in :meth:`run` (its own loop: a slow receiver must not
        hold up tasks)."""

    def wake(self) -> None:
        """Look for work now instead of at the next poll (called after commits that queue tasks)."""
        self._wake.set()
        if self.webhooks is not None:
            self.webhooks.wake()

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
        """Expire overdue user tasks (and, once a minute, idempotency keys), then claim and run one batch of
        system tasks and due escalation steps; returns how many attempts ran and steps were claimed."""
        await self.expire_due()
        await self.engine.idempotency.purge_if_due()
        if self.notifier is not None:
            try:
                await self.notifier.run_once()
            except Exception:  # a database hiccup: the next round reads from the same position
                log.exception("worker %s: email notifications failed", self.worker_id)
        now = self.engine.clock.now()
        async with self.engine.db.transaction() as session:
            claimed = await LeaseRepository(session).claim_runnable(now, self.worker_id, now + self.lease, self.batch)
            escalations = await self.escalator.claim(session, now)
        # Claimed outside a transition: what the engine remembers of their instances is stale now, and
        # recording the attempt from it would cost an attempt that writes nothing (engine.remembered).
        self.engine.remembered.forget(task.workflow_instance_id for task in claimed)
        for task_type, count in Counter(task.schema_type for task in claimed).items():
            self.engine.observer.tasks_claimed(task_type, count)
        await asyncio.gather(self.escalator.run(escalations), *(self._attempt(task) for task in claimed))
        return len(claimed) + len(escalations)

    async def run_until_idle(self, max_rounds: int = 100) -> int:
        """Run batches until nothing is due (tests drive the clock and call this)."""
        total = 0
        for _ in range(max_rounds):
            ran = await self.run_once()
            total += ran
            if not ran:
                break
        return total

    async def run(self, stop: asyncio.Event, grace_seconds: float = math.inf) -> None:
        """Poll for due tasks until ``stop`` is set; a commit listener may wake it early.

        Once ``stop`` is set it claims nothing more; attempts still running get ``grace_seconds`` to
        finish, then they are cancelled and their tasks handed back (see the module docstring)."""
        webhooks = None if self.webhooks is None else asyncio.create_task(self.webhooks.run(stop, self.poll_interval))
        try:
            await self._run_tasks(stop, grace_seconds)
        finally:
            if webhooks is not None:
                await webhooks

    async def _run_tasks(self, stop: asyncio.Event, grace_seconds: float) -> None:
        while not stop.is_set():
            batch = asyncio.ensure_future(self.run_once())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait([batch, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not batch.done():
                await asyncio.wait([batch], timeout=grace_seconds)
                if not batch.done():
                    self.hand_back_running()
            try:
                ran = await batch
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

    def hand_back_running(self) -> None:
        """Cancel the attempts running now; each hands its task back (:meth:`run` does this after its grace)."""
        self._handing_back = True
        for execution in self._executing.values():
            execution.cancel()

    async def _attempt(self, task: Task) -> None:
        began = time.perf_counter()
        result = await self._run_attempt(task)
        self.engine.observer.attempt_finished(task.schema_type, result, time.perf_counter() - began)

    async def _run_attempt(self, task: Task) -> AttemptOutcome:
        started = self.engine.clock.now()
        request: ExecutionRequest | None = None
        try:
            request = await self._request(task)
            executor = self.executors[task.schema_type]
            heartbeat = asyncio.create_task(self._keep_lease(task.id))
            execution = asyncio.ensure_future(executor.execute(request, self.context))
            self._executing[task.id] = execution
            if self._handing_back:  # it was still preparing when the others were cancelled
                execution.cancel()
            try:
                outcome: ExecutionResult | WaitUntil | ExecutionFailedError = await execution
            except asyncio.CancelledError:
                if not (self._handing_back and execution.cancelled()):
                    raise
                return await self._hand_back(task)
            finally:
                heartbeat.cancel()
                self._executing.pop(task.id, None)
        except ExecutionFailedError as exc:
            outcome = exc
        except Exception as exc:  # an executor bug fails the attempt, never the worker
            trace = redact_text(traceback.format_exc(), self.secrets)  # a message may quote the rendered config
            log.error("task %s: executor %s raised\n%s", task.id, task.schema_type, trace)
            outcome = ExecutionFailedError(f"{type(exc).__name__}: {exc}")
        if isinstance(outcome, ExecutionResult):
            outcome = self._checked_output(outcome)
        try:
            recorded, _ = await self.engine.transition(
                task.workflow_instance_id, None, lambda t: self._record(t, task, request, outcome, started)
            )
        except StepwiseError as exc:
            log.warning("task %s: attempt result not recorded: %s", task.id, redact_text(exc.message, self.secrets))
            return AttemptOutcome.DROPPED
        return recorded

    async def _hand_back(self, task: Task) -> AttemptOutcome:
        try:
            async with self.engine.db.transaction() as session:
                handed = await LeaseRepository(session).hand_back(task.id, self.worker_id, self.engine.clock.now())
        except Exception:  # the lease then runs out as a dead worker's would
            log.exception("task %s: handing the task back failed", task.id)
            return AttemptOutcome.DROPPED
        self.engine.remembered.forget([task.workflow_instance_id])
        log.info("task %s: stopping, handed back to any worker", task.id)
        return AttemptOutcome.HANDED_BACK if handed else AttemptOutcome.DROPPED

    def _checked_output(self, result: ExecutionResult) -> ExecutionResult | ExecutionFailedError:
        """The result with every secret masked in its output (a target may echo a header back), or a failure
        for good when that output is larger than the engine stores (the same call would give the same)."""
        output = redact(result.output, self.secrets)
        size, limit = json_size(output), self.engine.max_json_bytes
        if size > limit:
            message = f"the output is {size} bytes as JSON; at most {limit} are stored"
            return ExecutionFailedError(message, non_retryable=True, request=result.request, response=result.response)
        return replace(result, output=output)

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
        # Only executors that say they send secrets (HTTP and GraphQL, in headers, URLs, bodies) render them: an
        # echo or JavaScript task would put them in its output, an email in a message the starter may address.
        offered = self.secrets if getattr(self.executors[task.schema_type], "uses_secrets", False) else None
        variables = template_variables(instance.data, instance.started_by, starter, self.engine.settings, offered)
        try:
            config = render_value(dict(node.config), variables)
        except Exception as exc:  # a template that fails at run time is a configuration error: no retry helps
            raise ExecutionFailedError(f"config does not render: {exc}", non_retryable=True) from exc
        patch = task.input.get(CONFIG_PATCH)
        if patch is not None:  # an admin's fix at retryTask, over what renders, itself never rendered
            config = merge_patch(config, patch)
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
    ) -> AttemptOutcome:
        task = await transition.tasks.get_by_id(claimed.id)
        if task is None or task.status is not TaskStatus.RUNNING:
            return AttemptOutcome.DROPPED
        if await LeaseRepository(transition.connection).lease_owner(task.id) != self.worker_id:
            log.info("task %s: lease lost to another worker; dropping this attempt's result", task.id)
            return AttemptOutcome.DROPPED
        now = transition.now
        if isinstance(outcome, WaitUntil):
            await transition.update_task(
                task, TaskEventKind.UPDATED, status=TaskStatus.WAITING, next_run_at=outcome.until,
                attempt_count=task.attempt_count - 1, lease_owner=None, lease_expires_at=None,
            )  # fmt: skip
            return AttemptOutcome.WAITING
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
            return AttemptOutcome.COMPLETED
        assert error is not None
        policy = transition.definition.node(task.node_id).retry or DEFAULT_RETRY
        if outcome.non_retryable or task.attempt_count >= policy.max_attempts:
            await transition.fail(task, error)
            return AttemptOutcome.FAILED
        retry_at = now + policy.delay_before(task.attempt_count + 1)
        await transition.update_task(
            task, TaskEventKind.UPDATED, status=TaskStatus.WAITING, next_run_at=retry_at, error=error,
            lease_owner=None, lease_expires_at=None,
        )  # fmt: skip
        return AttemptOutcome.RETRYING
