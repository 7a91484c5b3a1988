"""The worker's lease SQL: claiming due system tasks, renewing a lease, and who holds one.

A claim leases a task to one worker until ``lease_expires_at``; a worker that stops renewing loses
it, and the next claim takes the task over and records the attempt the dead worker never finished.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.engine import CursorResult

from engine.state import Task, TaskStatus
from engine.storage.database import Executor
from engine.storage.lists import sql_literals
from engine.storage.models import SYSTEM_TASK_KIND, task_attempts, tasks
from engine.storage.tasks import TaskRepository, task_from_row

# A literal, so the planner can match the partial ``ix_tasks_runnable`` (models.SYSTEM_TASKS_SQL).
_SYSTEM_TASK = tasks.c.kind == sql_literals([SYSTEM_TASK_KIND])[0]
_LEASE_OWNER = select(tasks.c.lease_owner).where(tasks.c.id == bindparam("task_id"))


class LeaseRepository:
    def __init__(self, session: Executor) -> None:
        self.session = session

    async def claim_runnable(self, now: datetime, worker_id: str, lease_until: datetime, limit: int) -> list[Task]:
        """Lease up to ``limit`` system tasks that are due, or whose previous lease expired.

        ``FOR UPDATE SKIP LOCKED`` lets workers on PostgreSQL claim side by side without waiting on
        each other; on SQLite the write transaction's ``BEGIN IMMEDIATE`` serializes them instead.
        """
        due = and_(
            tasks.c.status.in_([TaskStatus.PENDING.value, TaskStatus.WAITING.value]),
            tasks.c.next_run_at <= now,
        )
        abandoned = and_(tasks.c.status == TaskStatus.RUNNING.value, tasks.c.lease_expires_at < now)
        query = (
            select(tasks)
            .where(_SYSTEM_TASK, or_(due, abandoned))
            .order_by(tasks.c.next_run_at, tasks.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claimed = []
        for row in (await self.session.execute(query)).all():
            task = task_from_row(row)
            if task.status is TaskStatus.RUNNING:
                await self._record_abandoned(task, row.lease_owner, row.lease_expires_at, now)
            values = {
                "status": TaskStatus.RUNNING.value,
                "lease_owner": worker_id,
                "lease_expires_at": lease_until,
                "attempt_count": task.attempt_count + 1,
                "updated_at": now,
            }
            if await TaskRepository(self.session).update(task.id, task.revision, values):
                claimed.append(
                    replace(
                        task,
                        status=TaskStatus.RUNNING,
                        attempt_count=task.attempt_count + 1,
                        revision=task.revision + 1,
                        updated_at=now,
                    )  # fmt: skip
                )
        return claimed

    async def _record_abandoned(self, task: Task, owner: str | None, expired: datetime, now: datetime) -> None:
        """Keep a record of the attempt a dead worker never finished, so ``attempts`` shows every try."""
        number = await self.session.scalar(
            select(func.coalesce(func.max(task_attempts.c.number), 0) + 1).where(task_attempts.c.task_id == task.id)
        )
        error = f"abandoned: worker {owner} stopped renewing its lease (expired {expired.isoformat()})"
        await self.session.execute(
            task_attempts.insert().values(
                task_id=task.id, number=number, started_at=task.updated_at, finished_at=now, request=None,
                response=None, error=error,
            )
        )  # fmt: skip

    async def extend_lease(self, task_id: str, worker_id: str, until: datetime) -> bool:
        """Push out this worker's lease on a task it still runs; False once the lease is lost."""
        result = await self.session.execute(
            update(tasks)
            .where(tasks.c.id == task_id, tasks.c.lease_owner == worker_id, tasks.c.status == TaskStatus.RUNNING.value)
            .values(lease_expires_at=until)
        )
        return cast(CursorResult[Any], result).rowcount == 1  # an UPDATE's result: a CursorResult

    async def lease_owner(self, task_id: str) -> str | None:
        owner: str | None = await self.session.scalar(_LEASE_OWNER, {"task_id": task_id})
        return owner
