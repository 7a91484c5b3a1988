"""Repositories on SQLite and PostgreSQL: the seed's inbox queries, step metrics and aware UTC times."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession

from engine.definitions.model import Priority
from engine.errors import ConcurrentUpdateError
from engine.state import (
    InstanceStatus,
    StepInstance,
    StepMetrics,
    Task,
    TaskKind,
    TaskStatus,
    WorkflowInstance,
)
from engine.storage.database import Database
from engine.storage.instances import InstanceRepository
from engine.storage.models import instances
from engine.storage.tasks import TaskRepository

T0 = datetime(2026, 1, 5, 9, 0, 0, 123456, tzinfo=UTC)


async def new_step(session: AsyncSession, instance_id: str, milestone_key: str, step_key: str) -> StepInstance:
    step = StepInstance(f"{instance_id}-{step_key}", instance_id, milestone_key, step_key, T0)
    await InstanceRepository(session).insert_step(step)
    return step


def an_instance(instance_id: str = "wi-1", **changes: Any) -> WorkflowInstance:
    values: dict[str, Any] = {
        "id": instance_id,
        "definition_key": "expense_approval",
        "definition_version": 1,
        "status": InstanceStatus.WAITING_FOR_SIGNAL,
        "data": {"entityName": "INV-7", "amount": 12.5, "tags": ["a"]},
        "tokens": (),
        "started_by": "alice",
        "started_at": T0,
        "updated_at": T0,
    }
    values.update(changes)
    return WorkflowInstance(**values)


def a_task(
    task_id: str, step: StepInstance, minutes: int, status: TaskStatus = TaskStatus.PENDING, **changes: Any
) -> Task:
    created = T0 + timedelta(minutes=minutes)
    values: dict[str, Any] = {
        "id": task_id,
        "workflow_instance_id": step.workflow_instance_id,
        "step_instance_id": step.id,
        "token_id": f"token-{task_id}",
        "node_id": f"node-{task_id}",
        "kind": TaskKind.USER,
        "type": "FORM",
        "schema_type": "userTask.form",
        "name": f"Node {task_id}",
        "title": f"Title of {task_id}",
        "description": None,
        "signal_name": f"node-{task_id}_signal",
        "assigned_role": None,
        "assigned_user_id": None,
        "assigned_group": None,
        "status": status,
        "priority": Priority.NORMAL,
        "input": {},
        "output": None,
        "draft": None,
        "revision": 0,
        "created_at": created,
        "updated_at": created,
    }
    values.update(changes)
    return Task(**values)


@dataclass
class Seed:
    review: StepInstance
    payout: StepInstance
    tasks: dict[str, Task]


@pytest.fixture
async def seed(db: Database) -> Seed:
    """Tasks inserted out of creation order, so only ``ORDER BY created_at, id`` puts them in order."""
    async with db.transaction() as session:
        await InstanceRepository(session).insert(an_instance())
        review = await new_step(session, "wi-1", "review", "decision")
        payout = await new_step(session, "wi-1", "close", "payout")
        tasks = [
            a_task("t-e", review, 3, assigned_role="approver", priority=Priority.HIGH,
                   description="Check {{ x }}", input={"limit": 100}, due_at=T0 + timedelta(days=2)),
            a_task("t-b", review, 1, TaskStatus.CLAIMED, assigned_role="approver", assigned_user_id="bob",
                   draft={"comment": "half"}, revision=2),
            a_task("t-c", review, 2, TaskStatus.COMPLETED, assigned_role="clerk", output={"ok": True},
                   completed_at=T0 + timedelta(minutes=9), completed_by="carol"),
            a_task("t-d", payout, 4, assigned_user_id="bob"),
            a_task("t-a", payout, 0, TaskStatus.FAILED, kind=TaskKind.SYSTEM, type="HTTP", schema_type="http",
                   signal_name=None, assigned_group="finance", attempt_count=3, error="HTTP 500",
                   next_run_at=T0 + timedelta(minutes=1)),
            a_task("t-f", payout, 3, TaskStatus.CLAIMED, assigned_role="approver", assigned_group="finance",
                   priority=Priority.URGENT),  # the same minute as t-e: ties go by id
        ]  # fmt: skip
        repository = TaskRepository(session)
        for task in tasks:
            await repository.insert(task)
    return Seed(review, payout, {task.id: task for task in tasks})


def ids(tasks: list[Task]) -> list[str]:
    assert all(type(task) is Task for task in tasks)
    return [task.id for task in tasks]


async def test_find_by_role_filters_orders_by_creation_and_returns_dataclasses(db: Database, seed: Seed) -> None:
    async with db.read() as session:
        repository = TaskRepository(session)
        approver = await repository.find_by_role("approver")
        pending = await repository.find_by_role("approver", [TaskStatus.PENDING])
        open_ = await repository.find_by_role("approver", [TaskStatus.PENDING, TaskStatus.CLAIMED])
        nobody = await repository.find_by_role("auditor")
    assert ids(approver) == ["t-b", "t-e", "t-f"]
    assert approver == [seed.tasks["t-b"], seed.tasks["t-e"], seed.tasks["t-f"]]  # every field round-trips
    assert ids(pending) == ["t-e"]
    assert ids(open_) == ["t-b", "t-e", "t-f"]
    assert nobody == []


async def test_find_by_user_id(db: Database, seed: Seed) -> None:
    async with db.read() as session:
        repository = TaskRepository(session)
        assert ids(await repository.find_by_user_id("bob")) == ["t-b", "t-d"]
        assert ids(await repository.find_by_user_id("bob", [TaskStatus.CLAIMED])) == ["t-b"]
        assert await repository.find_by_user_id("alice") == []


async def test_find_by_group(db: Database, seed: Seed) -> None:
    async with db.read() as session:
        repository = TaskRepository(session)
        finance = await repository.find_by_group("finance")
        assert ids(finance) == ["t-a", "t-f"]
        assert finance[0] == seed.tasks["t-a"]  # a system task's fields round-trip too
        assert ids(await repository.find_by_group("finance", [TaskStatus.FAILED])) == ["t-a"]
        assert await repository.find_by_group("legal") == []


async def test_find_by_status(db: Database, seed: Seed) -> None:
    async with db.read() as session:
        repository = TaskRepository(session)
        assert ids(await repository.find_by_status(TaskStatus.CLAIMED)) == ["t-b", "t-f"]
        assert ids(await repository.find_by_status(TaskStatus.PENDING)) == ["t-e", "t-d"]
        assert await repository.find_by_status(TaskStatus.EXPIRED) == []


async def test_get_by_id(db: Database, seed: Seed) -> None:
    async with db.read() as session:
        repository = TaskRepository(session)
        found = await repository.get_by_id("t-c")
        missing = await repository.get_by_id("t-zzz")
    assert type(found) is Task and found == seed.tasks["t-c"]
    assert found.output == {"ok": True} and found.completed_by == "carol"
    assert missing is None


async def test_find_by_instance_open_only(db: Database, seed: Seed) -> None:
    async with db.read() as session:
        repository = TaskRepository(session)
        assert ids(await repository.find_by_instance("wi-1")) == ["t-a", "t-b", "t-c", "t-e", "t-f", "t-d"]
        assert ids(await repository.find_by_instance("wi-1", open_only=True)) == ["t-b", "t-e", "t-f", "t-d"]


# -- updates and step metrics --------------------------------------------------------------------------


async def test_update_checks_the_revision(db: Database, seed: Seed) -> None:
    async with db.transaction() as session:
        repository = TaskRepository(session)
        assert not await repository.update("t-b", 1, {"status": TaskStatus.COMPLETED})  # stale: t-b is at 2
        assert await repository.update("t-b", 2, {"status": TaskStatus.WAITING, "draft": {"comment": "more"}})
    async with db.read() as session:
        task = await TaskRepository(session).get_by_id("t-b")
    assert task == replace(seed.tasks["t-b"], status=TaskStatus.WAITING, draft={"comment": "more"}, revision=3)


async def test_step_metrics_count_as_design_section_1_says(db: Database, seed: Seed) -> None:
    async with db.read() as session:
        metrics = await TaskRepository(session).step_metrics([seed.review.id, seed.payout.id, "no-such-step"])
    # review: PENDING, CLAIMED, COMPLETED; payout: PENDING, FAILED, CLAIMED
    assert metrics == {
        seed.review.id: StepMetrics(total=3, active=1, completed=1, blocked=0),
        seed.payout.id: StepMetrics(total=3, active=1, completed=0, blocked=1),
        "no-such-step": StepMetrics(),
    }


async def test_step_metrics_follow_every_status(db: Database, seed: Seed) -> None:
    """Move the seed's tasks through every status with ``update`` and count after each move."""
    moves: list[tuple[str, TaskStatus, StepMetrics]] = [
        # review: t-e PENDING→RUNNING: active
        ("t-e", TaskStatus.RUNNING, StepMetrics(total=3, active=2, completed=1, blocked=0)),
        # review: t-c COMPLETED→EXPIRED: blocked
        ("t-c", TaskStatus.EXPIRED, StepMetrics(total=3, active=2, completed=0, blocked=1)),
        # review: t-b CLAIMED→WAITING: still active
        ("t-b", TaskStatus.WAITING, StepMetrics(total=3, active=2, completed=0, blocked=1)),
        # review: t-e RUNNING→CANCELLED: total only
        ("t-e", TaskStatus.CANCELLED, StepMetrics(total=3, active=1, completed=0, blocked=1)),
        # review: t-b WAITING→PENDING: total only
        ("t-b", TaskStatus.PENDING, StepMetrics(total=3, active=0, completed=0, blocked=1)),
        # review: t-c EXPIRED→COMPLETED
        ("t-c", TaskStatus.COMPLETED, StepMetrics(total=3, active=0, completed=1, blocked=0)),
    ]
    revisions = {task_id: task.revision for task_id, task in seed.tasks.items()}
    for task_id, status, expected in moves:
        async with db.transaction() as session:
            assert await TaskRepository(session).update(task_id, revisions[task_id], {"status": status})
        revisions[task_id] += 1
        async with db.read() as session:
            metrics = await TaskRepository(session).step_metrics([seed.review.id])
        assert metrics[seed.review.id] == expected, (task_id, status)


async def test_step_metrics_with_one_task_in_each_status(db: Database) -> None:
    async with db.transaction() as session:
        await InstanceRepository(session).insert(an_instance("wi-2"))
        step = await new_step(session, "wi-2", "m", "every")
        for minute, status in enumerate(TaskStatus):
            await TaskRepository(session).insert(a_task(f"s-{status.value}", step, minute, status))
    async with db.read() as session:
        metrics = await TaskRepository(session).step_metrics([step.id])
    assert metrics[step.id] == StepMetrics(total=len(TaskStatus), active=3, completed=1, blocked=2)


# -- instances, steps and time -------------------------------------------------------------------------


async def test_step_instances_are_created_once_per_step(db: Database, seed: Seed) -> None:
    with pytest.raises(IntegrityError):
        async with db.transaction() as session:
            await InstanceRepository(session).insert_step(replace(seed.review, id="another"))
    async with db.read() as session:
        repository = InstanceRepository(session)
        assert await repository.get_step(seed.payout.id) == seed.payout
        assert sorted(s.step_key for s in await repository.steps_of(["wi-1"])) == ["decision", "payout"]


async def test_instance_update_checks_the_revision(db: Database) -> None:
    instance = an_instance()
    async with db.transaction() as session:
        await InstanceRepository(session).insert(instance)
    changed = replace(instance, status=InstanceStatus.COMPLETED, revision=1, completed_at=T0 + timedelta(hours=1))
    with pytest.raises(ConcurrentUpdateError):
        async with db.transaction() as session:
            await InstanceRepository(session).update(changed, expected_revision=5)
    async with db.transaction() as session:
        await InstanceRepository(session).update(changed, expected_revision=0)
    async with db.read() as session:
        assert await InstanceRepository(session).get("wi-1") == changed
        assert await InstanceRepository(session).get("wi-404") is None


async def test_utc_datetimes_round_trip_aware(db: Database) -> None:
    plus_two = timezone(timedelta(hours=2), "CEST")
    local = datetime(2026, 7, 1, 11, 30, 15, 654321, tzinfo=plus_two)
    instance = an_instance(started_at=local, updated_at=local, completed_at=None)
    async with db.transaction() as session:
        await InstanceRepository(session).insert(instance)
    async with db.read() as session:
        stored = await InstanceRepository(session).get("wi-1")
        # filtering compares instants, whichever zone the parameter is in
        found = await session.scalar(select(instances.c.id).where(instances.c.started_at == local.astimezone(UTC)))
        later = await session.scalar(
            select(instances.c.id).where(instances.c.started_at > local - timedelta(seconds=1))
        )
    assert stored is not None
    for value in (stored.started_at, stored.updated_at):
        assert value == local
        assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
        assert (value.hour, value.microsecond) == (9, 654321)
    assert stored.completed_at is None
    assert found == "wi-1" and later == "wi-1"
    async with db.read() as session:
        if db.engine.dialect.name == "postgresql":  # the session's zone does not change what is read
            await session.execute(text("SET LOCAL TimeZone = 'Pacific/Auckland'"))
        again = await InstanceRepository(session).get("wi-1")
    assert again is not None and again.started_at == local
    assert again.started_at.tzinfo is not None and again.started_at.utcoffset() == timedelta(0)


async def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(StatementError, match="naive datetimes are not stored"):
        async with db.transaction() as session:
            await InstanceRepository(session).insert(an_instance(started_at=datetime(2026, 1, 5, 9, 0)))
    async with db.read() as session:
        assert await InstanceRepository(session).get("wi-1") is None
