"""Rows of ``approval_callbacks``: where an action approval's decision goes (engine.workers.callbacks)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from engine.state import OPEN_TASK_STATUSES
from engine.storage.models import approval_callbacks, tasks

PENDING, DELIVERED, FAILED = "PENDING", "DELIVERED", "FAILED"


@dataclass(frozen=True)
class DueCallback:
    task_id: str
    url: str
    secret: str
    attempt_count: int
    task_status: str
    output: Mapping[str, Any] | None


async def ensure_callback(session: AsyncSession, task_id: str, url: str, secret: str, now: datetime) -> str:
    """The task's callback, created with ``secret`` unless it has one; the secret it signs with. Of two
    requests with one key at once, one inserts and the other reads it."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = postgres_insert if dialect == "postgresql" else sqlite_insert
    await session.execute(
        insert(approval_callbacks)
        .values(task_id=task_id, url=url, secret=secret, status=PENDING, attempt_count=0, created_at=now)
        .on_conflict_do_nothing(index_elements=["task_id"])
    )
    stored = await session.scalar(select(approval_callbacks.c.secret).where(approval_callbacks.c.task_id == task_id))
    assert stored is not None
    return str(stored)


async def find_due(session: AsyncSession, now: datetime, limit: int) -> list[DueCallback]:
    """Pending callbacks of tasks no longer open, due and not leased (read only: most rounds find none)."""
    due = and_(
        approval_callbacks.c.status == PENDING,
        tasks.c.status.not_in([status.value for status in OPEN_TASK_STATUSES]),
        or_(approval_callbacks.c.next_attempt_at.is_(None), approval_callbacks.c.next_attempt_at <= now),
        or_(approval_callbacks.c.lease_expires_at.is_(None), approval_callbacks.c.lease_expires_at < now),
    )
    rows = (
        await session.execute(
            select(approval_callbacks, tasks.c.status.label("task_status"), tasks.c.output)
            .join(tasks, tasks.c.id == approval_callbacks.c.task_id)
            .where(due)
            .limit(limit)
        )
    ).all()
    return [DueCallback(row.task_id, row.url, row.secret, row.attempt_count, row.task_status, row.output)
            for row in rows]  # fmt: skip


async def lease(session: AsyncSession, due: list[DueCallback], now: datetime, until: datetime) -> list[DueCallback]:
    """Those of ``due`` this worker leased until ``until``."""
    leased = []
    for row in due:
        # Only from the lease as read: of two workers, one takes it.
        taken = await session.execute(
            update(approval_callbacks)
            .where(approval_callbacks.c.task_id == row.task_id, approval_callbacks.c.status == PENDING,
                   or_(approval_callbacks.c.lease_expires_at.is_(None), approval_callbacks.c.lease_expires_at < now))
            .values(lease_expires_at=until)
        )  # fmt: skip
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            leased.append(row)
    return leased


async def settle(session: AsyncSession, task_id: str, values: Mapping[str, Any]) -> None:
    await session.execute(
        update(approval_callbacks)
        .where(approval_callbacks.c.task_id == task_id)
        .values(**values, lease_expires_at=None)
    )


async def callback_of(session: AsyncSession, task_id: str) -> Mapping[str, Any] | None:
    row = (await session.execute(select(approval_callbacks).where(approval_callbacks.c.task_id == task_id))).first()
    return dict(row._mapping) if row is not None else None
