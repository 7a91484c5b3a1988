"""Firing escalation steps (:mod:`engine.definitions.escalations`) on the worker, each exactly once.

A due step is leased to one worker (:mod:`engine.storage.escalations`), then fired in its instance's
transition: the step's ``FIRED`` and its event (``REMINDED``, ``ESCALATED``), the reassignment or the
completion commit together, checked against the step's revision, so a step fires once however often it
is claimed — after a worker died holding it, the next claim fires it (the first never committed) or
finds it fired. A step whose task is no longer open is ``CANCELLED`` instead, with no event.

A reminder's email goes after that commit, through the email executor (``Message-ID`` from the step's id,
so a copy resent after a crash is recognisably the same message); until it is sent the step stays leased
with ``notify_pending``, and a worker that dies before sending it leaves the email to the next claim.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from engine.definitions.escalations import EscalationAction, EscalationStep, EscalationTarget
from engine.definitions.forms import validate_values
from engine.definitions.model import APPROVAL_SCHEMA_TYPE, Node
from engine.errors import ConflictError, ExecutionFailedError, StepwiseError
from engine.state import EscalationStatus, Task, TaskEventKind, TaskStatus, User
from engine.storage.database import Executor
from engine.storage.deferred import DeferredUpdate
from engine.storage.directory import DirectoryRepository
from engine.storage.escalations import EscalationRepository, LeasedEscalation
from engine.storage.models import task_escalations
from engine.storage.tasks import TaskRepository
from engine.tasks import policies
from engine.tasks.recipients import MAX_RECIPIENTS, task_recipients
from engine.transitions.engine import Engine
from engine.transitions.transition import Transition
from engine.workers.email import EmailExecutor
from engine.workers.executor import ExecutionRequest, ExecutionResult, SystemTaskContext

log = logging.getLogger(__name__)
MAX_NOTIFY_ATTEMPTS = 5
DECIDED_BY = "escalation"
"""``decidedBy`` of an approval an escalation step completed."""
_EMAIL = EmailExecutor()


class Escalator:
    """Claims due escalation steps and fires them; the :class:`~engine.workers.worker.Worker` runs it."""

    def __init__(self, engine: Engine, context: SystemTaskContext, worker_id: str, lease: timedelta) -> None:
        self.engine = engine
        self.context = context
        self.worker_id = worker_id
        self.lease = lease

    async def claim(self, session: Executor, now: datetime, limit: int = 100) -> list[LeasedEscalation]:
        """Lease the steps due now and the reminders still to be sent (in the worker's claiming transaction)."""
        return await EscalationRepository(session).claim_due(now, self.worker_id, now + self.lease, limit)

    async def run(self, claimed: list[LeasedEscalation]) -> None:
        """Fire (or cancel) ``claimed`` steps and send their reminders: each task's steps in ladder order,
        different tasks' side by side."""
        by_task: dict[str, list[LeasedEscalation]] = defaultdict(list)
        for leased in claimed:
            by_task[leased.escalation.task_id].append(leased)
        await asyncio.gather(*(self._run_in_order(steps) for steps in by_task.values()))

    async def _run_in_order(self, steps: list[LeasedEscalation]) -> None:
        for leased in sorted(steps, key=lambda s: s.escalation.step):
            try:
                if leased.escalation.status is EscalationStatus.SCHEDULED:
                    leased = await self._fire(leased) or leased
                if leased.notify_pending and leased.lease_owner == self.worker_id:
                    await self._notify(leased)
            except Exception:  # one step's failure must not stop the others; its lease runs out, it is retried
                log.exception("escalation %s: firing failed", leased.escalation.id)

    async def _fire(self, leased: LeasedEscalation) -> LeasedEscalation | None:
        escalation = leased.escalation

        async def fire(transition: Transition) -> LeasedEscalation | None:
            current = await EscalationRepository(transition.connection).get(escalation.id)
            if current is None or current.lease_owner != self.worker_id or current.revision != leased.revision:
                return None  # lost to another worker; whatever it does stands
            if current.escalation.status is not EscalationStatus.SCHEDULED:
                return None
            task = await transition.tasks.get_by_id(escalation.task_id)
            if task is None or task.status not in (TaskStatus.PENDING, TaskStatus.CLAIMED):
                self._write(transition, current, status=EscalationStatus.CANCELLED, lease_owner=None,
                            lease_expires_at=None)  # fmt: skip
                return None
            node = transition.definition.node(task.node_id)
            step = node.escalation[escalation.step]
            detail = await self._act(transition, task, node, step, escalation.step)
            pending = bool(detail.get("emails")) and step.action is EscalationAction.REMIND
            values: dict[str, Any] = {"status": EscalationStatus.FIRED, "fired_at": transition.now,
                                      "detail": detail, "notify_pending": pending}  # fmt: skip
            if not pending:
                values.update(lease_owner=None, lease_expires_at=None)
            revision = self._write(transition, current, **values)
            fired = replace(escalation, status=EscalationStatus.FIRED, fired_at=transition.now, detail=detail)
            return LeasedEscalation(fired, pending, current.notify_attempts, self.worker_id if pending else None,
                                    revision)  # fmt: skip

        try:
            result, _ = await self.engine.transition(escalation.workflow_instance_id, None, fire)
        except StepwiseError as exc:
            log.warning("escalation %s: not fired: %s", escalation.id, exc.message)
            return None
        fired: LeasedEscalation | None = result
        return fired

    def _write(self, transition: Transition, current: LeasedEscalation, **values: Any) -> int:
        """The step's change, written with the transition's last statement if the step is still as read."""
        stored = {key: str(value) if key == "status" else value for key, value in values.items()}
        stored["revision"] = current.revision + 1
        conflict = ConflictError(f"escalation {current.escalation.id} changed while it fired")
        transition.connection.defer_update(
            DeferredUpdate(task_escalations, current.escalation.id, current.revision, stored, conflict)
        )
        return current.revision + 1

    async def _act(
        self, transition: Transition, task: Task, node: Node, step: EscalationStep, index: int
    ) -> dict[str, Any]:
        """Do the step in ``transition``; what it did, for the step's ``detail``."""
        data: dict[str, Any] = {"step": index, "action": step.action.value}
        if step.action is EscalationAction.REMIND:
            recipients = await (self._named(transition, step.to) if step.to else self._recipients(transition, task))
            emails = sorted({user.email for user in recipients if user.email})
            data["recipients"] = [user.id for user in recipients]
            if step.to is not None:
                data["to"] = step.to.to_json()
            await transition.record(TaskEventKind.REMINDED, task, data)
            return {**data, "emails": emails if self.context.smtp_url else []}
        if step.action is EscalationAction.REASSIGN:
            assert step.to is not None
            data["to"] = step.to.to_json()
            directory = DirectoryRepository(transition.connection)
            if step.to.user is not None and await directory.get_user(step.to.user) is None:
                data["error"] = f"no user {step.to.user!r}; the task was left as it was"
                await transition.record(TaskEventKind.ESCALATED, task, data)
                return data
            refusal = _policy_refusal(task, step.to.user)
            if refusal is not None:
                data["error"] = f"{refusal}; the task was left as it was"
                await transition.record(TaskEventKind.ESCALATED, task, data)
                return data
            change: dict[str, Any]
            if step.to.user is not None:
                change = {"assigned_user_id": step.to.user, "status": TaskStatus.CLAIMED}
            else:
                change = {"assigned_role": step.to.role, "assigned_group": step.to.group, "assigned_user_id": None,
                          "status": TaskStatus.PENDING}  # fmt: skip
            await transition.update_task(task, TaskEventKind.ESCALATED, event_data=data, **change)
            return data
        await transition.record(TaskEventKind.ESCALATED, task, data)
        await transition.complete(task, self._outcome(task, node, step, transition.now))
        return data

    @staticmethod
    def _outcome(task: Task, node: Node, step: EscalationStep, now: datetime) -> Any:
        outcome = dict(step.outcome)
        if task.schema_type == APPROVAL_SCHEMA_TYPE:  # the shape decideTask stores
            values = validate_values(node.form, dict(outcome.get("values") or {}), partial=False)
            return {"decision": outcome["decision"], "comment": outcome.get("comment"), "values": values,
                    "decidedBy": DECIDED_BY, "decidedAt": now.isoformat()}  # fmt: skip
        return validate_values(node.form, outcome, partial=False) if node.form else outcome

    @staticmethod
    async def _named(transition: Transition, to: EscalationTarget) -> list[User]:
        """Whom a ``remind`` step with ``to`` tells: that user, or the role's holders or the group's members."""
        directory = DirectoryRepository(transition.connection)
        if to.user is not None:
            ids = [to.user]
        else:
            ids = (
                await directory.members(role=to.role)
                if to.role is not None
                else await directory.members(group=to.group)
            )
        found = await directory.get_users(ids[:MAX_RECIPIENTS])
        return [found[user_id] for user_id in sorted(found)]

    @staticmethod
    async def _recipients(transition: Transition, task: Task) -> list[User]:
        return await task_recipients(DirectoryRepository(transition.connection), task)

    async def _notify(self, leased: LeasedEscalation) -> None:
        escalation = leased.escalation
        emails = list((escalation.detail or {}).get("emails") or [])
        async with self.engine.db.read() as session:
            task = await TaskRepository(session).get_by_id(escalation.task_id)
        if task is None:
            return
        config = {
            "to": emails,
            "subject": f"Reminder: {task.title}",
            "body": f"The task “{task.title}” has been waiting since {task.created_at:%Y-%m-%d %H:%M} UTC.\n",
        }
        request = ExecutionRequest(
            task_id=escalation.id, workflow_instance_id=task.workflow_instance_id,
            node=Node(id=task.node_id, type="email", config=config), attempt=leased.notify_attempts + 1,
            config=config, task_created_at=task.created_at,
        )  # fmt: skip
        try:
            sent = await _EMAIL.execute(request, self.context)
        except ExecutionFailedError as exc:
            attempts = leased.notify_attempts + 1
            async with self.engine.db.transaction() as session:
                repository = EscalationRepository(session)
                if exc.non_retryable or attempts >= MAX_NOTIFY_ATTEMPTS:
                    log.warning("escalation %s: reminder not sent, giving up: %s", escalation.id, exc.message)
                    await repository.notified(escalation.id, self.worker_id, {**(escalation.detail or {}),
                                                                              "emailError": exc.message})  # fmt: skip
                else:
                    log.info("escalation %s: reminder not sent, retrying: %s", escalation.id, exc.message)
                    retry_at = self.engine.clock.now() + timedelta(seconds=30 * 2**attempts)
                    await repository.notice_failed(escalation.id, self.worker_id, attempts, retry_at)
            return
        assert isinstance(sent, ExecutionResult)
        async with self.engine.db.transaction() as session:
            await EscalationRepository(session).notified(
                escalation.id, self.worker_id, {**(escalation.detail or {}), "messageId": sent.output["messageId"]}
            )


def _policy_refusal(task: Task, user_id: str | None) -> str | None:
    """Why a ``reassign`` step may not move ``task`` (the approval-policy and separation-of-duties rules
    hold for escalations too), or None: an approval policy's task belongs to its current level's
    approvers, and separation of duties shuts its excluded users out of an assignment."""
    if policies.has_approval_policy(task):
        return "a task with an approval policy is decided by its approvers, not reassigned"
    if task.delegated_to is not None:
        return f"the task is delegated to {task.delegated_to} until they resolve it"
    rule = policies.excluded_by(task, user_id) if user_id is not None else None
    if rule is not None:
        return f"separation of duties excludes {user_id} ({rule})"
    return None
