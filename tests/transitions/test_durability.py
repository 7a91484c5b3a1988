"""Durability: the database is the only state. Resume on fresh engines, idempotent task creation,
and concurrent signals to one node, where exactly one wins."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from engine.catalog import default_registry
from engine.clock import ManualClock
from engine.definitions.builder import WorkflowBuilder
from engine.definitions.model import WorkflowDefinition
from engine.errors import ConflictError
from engine.state import InstanceStatus, Task, TaskEvent, TaskEventKind, TaskStatus, WorkflowInstance, new_id
from engine.storage.database import Database
from engine.storage.instances import InstanceRepository
from engine.storage.task_events import TaskEventRepository
from engine.storage.tasks import TaskRepository
from engine.transitions.engine import Engine
from engine.transitions.transition import Transition


def contract() -> WorkflowDefinition:
    """draft → (legal ∥ finance) → sign (join all) → archive; enough state to lose: data, a fork, a parked join."""
    b = WorkflowBuilder("contract", title="Contract")
    with b.milestone("prepare", "Prepare"):
        with b.step("drafting", "Drafting"):
            b.user_task("draft", title="Draft {{ entityName }}", assign_to_role="requester", store_as="draft")
        with b.step("checks", "Checks"):
            b.user_task("legal", title="Legal check of {{ draft.text }}", assign_to_group="legal", store_as="legal")
            b.user_task("finance", title="Finance check", assign_to_role="approver", store_as="finance", due_in="P1D")
    with b.milestone("close", "Close"):
        with b.step("closing", "Closing"):
            b.user_task("sign", title="Sign", assign_to_user="carol", store_as="signature", join="all")
            b.user_task("archive", title="Archive", assign_to_role="clerk", store_as="archived")
    b.edge("draft", "legal").edge("draft", "finance").edge("legal", "sign").edge("finance", "sign")
    b.edge("sign", "archive", when="signature.signed")
    return b.build()


def approval_then_archive() -> WorkflowDefinition:
    b = WorkflowBuilder("approval", title="Approval")
    with b.step("decide", "Decide"):
        b.user_task("approval", schema_type="userTask.approval", title="Approve", assign_to_role="approver",
                    store_as="approvalResult")  # fmt: skip
        b.user_task("archive", title="Archive", assign_to_role="clerk")
    b.edge("approval", "archive")
    return b.build()


async def tasks_of(engine: Engine, instance_id: str) -> list[Task]:
    async with engine.db.read() as session:
        return await TaskRepository(session).find_by_instance(instance_id)


async def events_of(engine: Engine, instance_id: str) -> list[TaskEvent]:
    """Its events, numbered (engine.sequencer numbers them after the transitions return)."""
    await engine.sequencer.idle()
    async with engine.db.read() as session:
        return await TaskEventRepository(session).for_instance(instance_id)


# -- save and reload -----------------------------------------------------------------------------------


async def test_every_step_on_a_fresh_engine_resumes_from_the_database(database_url: str) -> None:
    """No engine, connection pool or cache survives from one step to the next."""
    clock = ManualClock()

    async def step(action: Any) -> Any:
        db = Database(database_url)
        try:
            return await action(Engine(db, default_registry(), clock=clock))
        finally:
            await db.dispose()
            clock.advance(timedelta(minutes=5))

    async def deploy(engine: Engine) -> None:
        await engine.deploy(contract(), "dana")

    async def begin(engine: Engine) -> WorkflowInstance:
        return await engine.start("contract", {"entityName": "ACME"}, "alice")

    await step(deploy)
    started = await step(begin)
    instance_id = started.id
    assert started.status is InstanceStatus.WAITING_FOR_SIGNAL

    def signal(node: str, payload: Any, actor: str) -> Any:
        async def send(engine: Engine) -> WorkflowInstance:
            return await engine.send_signal(instance_id, node, payload, actor)

        return send

    async def snapshot(engine: Engine) -> tuple[WorkflowInstance | None, list[Task]]:
        async with engine.db.read() as session:
            instance = await InstanceRepository(session).get(instance_id)
        return instance, await tasks_of(engine, instance_id)

    after_draft = await step(signal("draft", {"text": "NDA"}, "alice"))
    reloaded, tasks = await step(snapshot)
    assert reloaded == after_draft
    assert sorted(t.node_id for t in tasks if t.status.is_open) == ["finance", "legal"]
    legal = next(t for t in tasks if t.node_id == "legal")
    assert legal.title == "Legal check of NDA" and legal.assigned_group == "legal"
    finance = next(t for t in tasks if t.node_id == "finance")
    assert finance.due_at == finance.created_at + timedelta(days=1)
    assert finance.created_at.tzinfo is not None and finance.created_at.utcoffset() == timedelta(0)

    after_legal = await step(signal("legal", {"ok": True}, "erin"))
    parked = [t for t in after_legal.tokens if t.node_id == "sign"]
    assert len(parked) == 1 and parked[0].task_id is None and parked[0].arrived_from == "legal"
    reloaded, _ = await step(snapshot)
    assert reloaded == after_legal  # the parked join token survived the round trip

    after_finance = await step(signal("finance", {"ok": True}, "bob"))
    assert [t.node_id for t in after_finance.tokens] == ["sign"]
    after_sign = await step(signal("sign", {"signed": True}, "carol"))
    assert [t.node_id for t in after_sign.tokens] == ["archive"]
    done = await step(signal("archive", {"box": 7}, "dana"))

    assert done.status is InstanceStatus.COMPLETED
    assert done.data == {
        "entityName": "ACME",
        "draft": {"text": "NDA"},
        "legal": {"ok": True},
        "finance": {"ok": True},
        "signature": {"signed": True},
        "archived": {"box": 7},
    }
    reloaded, tasks = await step(snapshot)
    assert reloaded == done
    assert [t.node_id for t in tasks] == ["draft", "legal", "finance", "sign", "archive"]
    assert all(t.status is TaskStatus.COMPLETED for t in tasks)
    assert [t.completed_by for t in tasks] == ["alice", "erin", "bob", "carol", "dana"]
    assert done.completed_at is not None and done.started_at < done.completed_at


# -- idempotent task creation --------------------------------------------------------------------------


async def test_entering_a_node_again_for_the_same_token_creates_no_second_task(engine: Engine) -> None:
    await engine.deploy(approval_then_archive())
    instance = await engine.start("approval", {}, "alice")
    [token] = instance.tokens
    [task] = await tasks_of(engine, instance.id)
    events_before = await events_of(engine, instance.id)

    async def enter_twice(transition: Transition) -> list[str | None]:
        node = transition.definition.node(token.node_id)
        again = await transition.enter(node, replace(token, task_id=None))  # e.g. a retried step after a crash
        once_more = await transition.enter(node, replace(token, task_id=None))
        assert transition.events_written == 0
        return [again.task_id, once_more.task_id]

    task_ids, after = await engine.transition(instance.id, "alice", enter_twice)
    assert task_ids == [task.id, task.id]
    assert await tasks_of(engine, instance.id) == [task]
    assert await events_of(engine, instance.id) == events_before
    assert after.tokens == instance.tokens and after.status is InstanceStatus.WAITING_FOR_SIGNAL


async def test_the_database_rejects_a_second_task_for_the_same_token(engine: Engine) -> None:
    await engine.deploy(approval_then_archive())
    instance = await engine.start("approval", {}, "alice")
    [task] = await tasks_of(engine, instance.id)
    with pytest.raises(IntegrityError):
        async with engine.db.transaction() as session:
            await TaskRepository(session).insert(replace(task, id=new_id()))
    assert await tasks_of(engine, instance.id) == [task]

    async with engine.db.transaction() as session:  # another token at the same node is fine
        await TaskRepository(session).insert(replace(task, id=new_id(), token_id=new_id()))
    assert len(await tasks_of(engine, instance.id)) == 2


# -- concurrent signals --------------------------------------------------------------------------------


async def race_signals(database_url: str, rounds: int) -> None:
    """Two engines with their own connection pools signal the same node at once, ``rounds`` times."""
    clock = ManualClock()
    dbs = [Database(database_url), Database(database_url)]
    engines = [Engine(db, default_registry(), clock=clock) for db in dbs]
    try:
        await engines[0].deploy(approval_then_archive())
        for engine in engines:  # warm each cache, so both signals go straight to the instance row
            await engine.definition("approval", 1)
        for _ in range(rounds):
            instance = await engines[0].start("approval", {}, "alice")
            payloads = [{"decision": "approved", "by": 0}, {"decision": "rejected", "by": 1}]
            results = await asyncio.gather(
                *(engine.send_signal(instance.id, "approval", payload, f"user{i}")
                  for i, (engine, payload) in enumerate(zip(engines, payloads, strict=True))),
                return_exceptions=True,
            )  # fmt: skip
            winners = [(i, r) for i, r in enumerate(results) if isinstance(r, WorkflowInstance)]
            losers = [r for r in results if isinstance(r, BaseException)]
            assert len(winners) == 1 and len(losers) == 1, results
            assert isinstance(losers[0], ConflictError), repr(losers[0])
            index, won = winners[0]

            tasks = await tasks_of(engines[0], instance.id)
            approval = next(t for t in tasks if t.node_id == "approval")
            assert approval.output == payloads[index] and approval.completed_by == f"user{index}"
            assert [t.node_id for t in tasks] == ["approval", "archive"]  # the loser created nothing
            events = await events_of(engines[0], instance.id)
            completed = [e for e in events if e.kind is TaskEventKind.COMPLETED]
            assert len(completed) == 1 and completed[0].actor_id == f"user{index}"
            async with dbs[1].read() as session:
                stored = await InstanceRepository(session).get(instance.id)
            assert stored == won and stored.data["approvalResult"] == payloads[index]
            assert stored.revision == instance.revision + 1
    finally:
        for db in dbs:
            await db.dispose()


@pytest.mark.postgres_only
async def test_two_concurrent_signals_to_one_node_exactly_one_wins(database_url: str) -> None:
    await race_signals(database_url, rounds=5)


async def test_two_concurrent_signals_to_one_node_exactly_one_wins_on_sqlite(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """SQLite: ``BEGIN IMMEDIATE`` makes the second writer wait on the busy timeout, then see the first's commit."""
    path = tmp_path / "race.db"
    shutil.copy(sqlite_template, path)
    await race_signals(f"sqlite+aiosqlite:///{path}", rounds=5)


async def test_a_second_signal_to_the_node_that_completed_the_instance_is_a_conflict(engine: Engine) -> None:
    b = WorkflowBuilder("single")
    with b.step("s"):
        b.user_task("only", title="Only", assign_to_role="clerk", store_as="only")
    await engine.deploy(b.build())
    instance = await engine.start("single", {}, "alice")
    instance = await engine.send_signal(instance.id, "only", {"n": 1}, "bob")
    assert instance.status is InstanceStatus.COMPLETED
    async with engine.db.read() as session:
        before = await InstanceRepository(session).get(instance.id)
    with pytest.raises(ConflictError, match="already completed"):  # docs/design.md §3, not INVALID_STATE
        await engine.send_signal(instance.id, "only", {"n": 2}, "bob")
    async with engine.db.read() as session:
        assert await InstanceRepository(session).get(instance.id) == before
    assert [e.kind for e in await events_of(engine, instance.id)] == [TaskEventKind.CREATED, TaskEventKind.COMPLETED]
