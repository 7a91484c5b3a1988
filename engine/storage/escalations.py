"""Escalation steps: scheduled with their task, leased by a worker when due, fired or cancelled once.

The lease works as a system task's (:mod:`engine.storage.leases`): a claim leases a due step to one worker
until ``lease_expires_at``, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL; a worker that dies leaves a lease that
runs out, and the next claim takes the step over. Only the earliest step still scheduled for a task is
claimed, so a ladder fires in order even when several steps are overdue at once (after a restart).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.engine import CursorResult

from engine.definitions.escalations import EscalationStep
from engine.state import EscalationStatus, Task, TaskEscalation, new_id
from engine.storage.database import Executor
from engine.storage.lists import any_of
from engine.storage.models import task_escalations

_E = task_escalations
_EARLIER = _E.alias("earlier")


@dataclass(frozen=True)
class LeasedEscalation:
    """A step as a worker holds it: the stored step, and what its lease and revision are now."""

    escalation: TaskEscalation
    notify_pending: bool
    notify_attempts: int
    lease_owner: str | None
    revision: int


def scheduled_rows(task: Task, ladder: Collection[tuple[EscalationStep, datetime]]) -> list[dict[str, Any]]:
    """The rows of a new task's ladder (each step with its due time), for the transition to insert."""
    return [
        {"id": new_id(), "task_id": task.id, "workflow_instance_id": task.workflow_instance_id, "step": index,
         "action": step.action.value, "status": EscalationStatus.SCHEDULED.value, "due_at": due_at, "fired_at": None,
         "detail": None, "notify_pending": False, "notify_attempts": 0, "lease_owner": None,
         "lease_expires_at": None, "revision": 0}
        for index, (step, due_at) in enumerate(ladder)
    ]  # fmt: skip


def _escalation(row: Any) -> TaskEscalation:
    return TaskEscalation(
        id=row.id, task_id=row.task_id, workflow_instance_id=row.workflow_instance_id, step=row.step,
        action=row.action, status=EscalationStatus(row.status), due_at=row.due_at, fired_at=row.fired_at,
        detail=row.detail,
    )  # fmt: skip


def _leased(row: Any) -> LeasedEscalation:
    return LeasedEscalation(_escalation(row), bool(row.notify_pending), row.notify_attempts, row.lease_owner,
                            row.revision)  # fmt: skip


class EscalationRepository:
    def __init__(self, session: Executor) -> None:
        self.session = session

    async def of_tasks(self, task_ids: Collection[str]) -> dict[str, list[TaskEscalation]]:
        """Each task's steps, in ladder order."""
        found: dict[str, list[TaskEscalation]] = {task_id: [] for task_id in task_ids}
        query = select(_E).where(any_of(_E.c.task_id, "ids")).order_by(_E.c.task_id, _E.c.step)
        for row in await self.session.execute(query, {"ids": list(task_ids)}):
            found[row.task_id].append(_escalation(row))
        return found

    async def get(self, escalation_id: str) -> LeasedEscalation | None:
        row = (await self.session.execute(select(_E).where(_E.c.id == escalation_id))).first()
        return _leased(row) if row else None

    async def claim_due(
        self, now: datetime, worker_id: str, lease_until: datetime, limit: int
    ) -> list[LeasedEscalation]:
        """Lease up to ``limit`` steps: due ones that are each their task's earliest still scheduled, and
        fired reminders whose email is still to be sent; either only while no live lease holds it. (Two
        reads, each on its partial index: the worker asks every round, and the table keeps every step.)"""
        free = or_(_E.c.lease_expires_at.is_(None), _E.c.lease_expires_at < now)
        earlier = exists().where(
            _EARLIER.c.task_id == _E.c.task_id,
            _EARLIER.c.status == EscalationStatus.SCHEDULED.value,
            _EARLIER.c.step < _E.c.step,
        )
        due = and_(_E.c.status == EscalationStatus.SCHEDULED.value, _E.c.due_at <= now, free, ~earlier)
        unsent = and_(_E.c.notify_pending.is_(True), free)
        claimed: list[LeasedEscalation] = []
        for condition in (due, unsent):
            if len(claimed) >= limit:
                break
            query = (
                select(_E)
                .where(condition)
                .order_by(_E.c.due_at, _E.c.id)
                .limit(limit - len(claimed))
                .with_for_update(skip_locked=True, of=_E)
            )
            for row in (await self.session.execute(query)).all():
                leased = await self._lease(row, worker_id, lease_until)
                if leased is not None:
                    claimed.append(leased)
        return claimed

    async def _lease(self, row: Any, worker_id: str, lease_until: datetime) -> LeasedEscalation | None:
        changed = await self.session.execute(
            update(_E)
            .where(_E.c.id == row.id, _E.c.revision == row.revision)
            .values(lease_owner=worker_id, lease_expires_at=lease_until, revision=row.revision + 1)
        )
        if cast(CursorResult[Any], changed).rowcount != 1:
            return None
        leased = _leased(row)
        return LeasedEscalation(leased.escalation, leased.notify_pending, leased.notify_attempts, worker_id,
                                row.revision + 1)  # fmt: skip

    async def notified(self, escalation_id: str, worker_id: str, detail: Mapping[str, Any]) -> bool:
        """The reminder's email went (or was given up on): nothing more to do for the step."""
        return await self._after_notice(escalation_id, worker_id, notify_pending=False, detail=dict(detail),
                                        lease_owner=None, lease_expires_at=None)  # fmt: skip

    async def notice_failed(self, escalation_id: str, worker_id: str, attempts: int, retry_at: datetime) -> bool:
        """The email failed; another claim retries it at ``retry_at`` (the lease runs out then)."""
        return await self._after_notice(escalation_id, worker_id, notify_attempts=attempts,
                                        lease_expires_at=retry_at)  # fmt: skip

    async def _after_notice(self, escalation_id: str, worker_id: str, **values: Any) -> bool:
        result = await self.session.execute(
            update(_E)
            .where(_E.c.id == escalation_id, _E.c.lease_owner == worker_id, _E.c.notify_pending.is_(True))
            .values(revision=_E.c.revision + 1, **values)
        )
        return cast(CursorResult[Any], result).rowcount == 1
