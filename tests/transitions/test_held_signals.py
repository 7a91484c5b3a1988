"""Signals that arrive early are held, not dropped, and instances found by a business key,
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.errors import InvalidStateError, SignalAlreadyHeldError
from engine.state import InstanceStatus, TaskEventKind, TaskStatus
from engine.storage.held_signals import signals_of
from engine.storage.models import held_signals, instances
from engine.storage.task_events import TaskEventRepository
from engine.transitions.engine import Engine
from tests.transitions.test_engine import approval_workflow, tasks_of


async def held(engine: Engine, instance_id: str) -> list[Any]:
    async with engine.db.read() as session:
        return (await signals_of(session, [instance_id]))[instance_id]


async def count(engine: Engine, table: object) -> int:
    async with engine.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)  # type: ignore[arg-type]


async def test_a_signal_sent_before_the_token_arrives_completes_the_node_when_it_does(engine: Engine) -> None:
    await engine.deploy(approval_workflow().build())
    instance = await engine.start("approval", {}, "alice")

    waiting = await engine.send_signal(instance.id, "archive", {"box": 4}, "carol")
    assert not waiting.status.is_final and waiting.held_signals == ("archive",)
    assert [t.node_id for t in await tasks_of(engine, instance.id)] == ["approvalDecision"]

    finished = await engine.send_signal(instance.id, "approvalDecision", {"decision": "approved"}, "bob")

    assert finished.status is InstanceStatus.COMPLETED and finished.held_signals == ()
    assert finished.data["archived"] == {"box": 4}
    archive = next(t for t in await tasks_of(engine, instance.id) if t.node_id == "archive")
    assert archive.status is TaskStatus.COMPLETED and archive.completed_by == "carol", "completed as its sender"
    [signal] = await held(engine, instance.id)
    assert signal.applied_at is not None and signal.task_id == archive.id and signal.sent_by == "carol"
    await engine.sequencer.idle()
    async with engine.db.read() as session:
        events = await TaskEventRepository(session).for_instance(instance.id)
    archived = [(e.kind, e.actor_id) for e in events if e.task_id == archive.id]
    assert archived == [(TaskEventKind.CREATED, "bob"), (TaskEventKind.COMPLETED, "carol")], "applied once"


async def test_a_second_early_signal_for_the_node_is_refused_and_changes_nothing(engine: Engine) -> None:
    await engine.deploy(approval_workflow().build())
    instance = await engine.start("approval", {}, "alice")
    await engine.send_signal(instance.id, "archive", None, "carol")  # no payload: held as JSON null
    before = (await held(engine, instance.id), await count(engine, instances))
    assert before[0][0].payload is None

    with pytest.raises(SignalAlreadyHeldError) as refused:
        await engine.send_signal(instance.id, "archive", {"box": 5}, "carol")

    assert refused.value.code == "SIGNAL_ALREADY_HELD"
    assert (await held(engine, instance.id), await count(engine, instances)) == before


async def test_an_instance_that_ends_without_reaching_the_node_leaves_the_signal_unused(engine: Engine) -> None:
    b = approval_workflow()
    b._edges.clear()
    b.edge("approvalDecision", "archive", when="approvalResult.decision == 'approved'")
    await engine.deploy(b.build())
    instance = await engine.start("approval", {}, "alice")
    await engine.send_signal(instance.id, "archive", {"box": 4}, "carol")

    ended = await engine.send_signal(instance.id, "approvalDecision", {"decision": "rejected"}, "bob")

    assert ended.status is InstanceStatus.COMPLETED and ended.held_signals == ("archive",)
    [signal] = await held(engine, instance.id)
    assert signal.applied_at is None and signal.payload == {"box": 4}
    with pytest.raises(InvalidStateError):
        await engine.send_signal(instance.id, "archive", {"box": 5}, "carol")


async def test_a_correlation_key_starts_one_instance_per_definition(engine: Engine) -> None:
    await engine.deploy(approval_workflow().build())

    first = await engine.start("approval", {"n": 1}, "alice", correlation_key="INV-1")
    again = await engine.start("approval", {"n": 2}, "alice", correlation_key="INV-1")
    racing = await asyncio.gather(*(engine.start("approval", {}, "alice", correlation_key="INV-2") for _ in range(8)))

    assert again.id == first.id and again.data == {"n": 1}
    assert len({instance.id for instance in racing}) == 1
    assert await engine.correlated("approval", "INV-2") == racing[0]
    assert await count(engine, instances) == 2
    assert await count(engine, held_signals) == 0
