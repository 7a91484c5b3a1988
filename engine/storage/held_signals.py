"""Held signals' rows (engine.state.HeldSignal): written and marked applied by a transition's
deferred writes, read by the transition that applies one and by the API."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select

from engine.errors import ConflictError
from engine.state import HeldSignal
from engine.storage.database import Executor
from engine.storage.deferred import DeferredUpdate, TransitionConnection
from engine.storage.lists import any_of
from engine.storage.models import held_signals

_WAITING = select(held_signals).where(
    held_signals.c.workflow_instance_id == bindparam("instance_id"),
    held_signals.c.node_id == bindparam("node_id"),
    held_signals.c.applied_at.is_(None),
)
_OF_INSTANCES = (
    select(held_signals)
    .where(any_of(held_signals.c.workflow_instance_id, "ids"))
    .order_by(held_signals.c.sent_at, held_signals.c.id)
)


def held_values(signal: HeldSignal) -> dict[str, Any]:
    return {
        "id": signal.id, "workflow_instance_id": signal.workflow_instance_id, "node_id": signal.node_id,
        "payload": signal.payload, "sent_by": signal.sent_by, "sent_at": signal.sent_at,
        "applied_at": signal.applied_at, "task_id": signal.task_id, "revision": signal.revision,
    }  # fmt: skip


def _held(row: Any) -> HeldSignal:
    return HeldSignal(
        id=row.id, workflow_instance_id=row.workflow_instance_id, node_id=row.node_id, payload=row.payload,
        sent_by=row.sent_by, sent_at=row.sent_at, applied_at=row.applied_at, task_id=row.task_id,
        revision=row.revision,
    )  # fmt: skip


async def waiting_signal(connection: TransitionConnection, instance_id: str, node_id: str) -> HeldSignal | None:
    rows = await connection.read_all(_WAITING, {"instance_id": instance_id, "node_id": node_id})
    return _held(rows[0]) if rows else None


def applied(signal: HeldSignal, task_id: str, now: datetime) -> DeferredUpdate:
    """The update that marks ``signal`` applied to ``task_id`` (a revision check, as for every deferred update)."""
    conflict = ConflictError(f"the signal held for node {signal.node_id!r} was applied by someone else")
    values = {"applied_at": now, "task_id": task_id, "revision": signal.revision + 1}
    return DeferredUpdate(held_signals, signal.id, signal.revision, values, conflict)


async def signals_of(executor: Executor, instance_ids: Sequence[str]) -> dict[str, list[HeldSignal]]:
    """Every signal held for each instance (applied or not), oldest first."""
    found: dict[str, list[HeldSignal]] = {instance_id: [] for instance_id in instance_ids}
    for row in await executor.execute(_OF_INSTANCES, {"ids": list(instance_ids)}):
        found[row.workflow_instance_id].append(_held(row))
    return found
