"""Escalation ladders on the worker with the injected clock: each step once, in order, as an event; a
reminder emailed to a real aiosmtpd on 127.0.0.1; a task completed before a step's time cancels the rest."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import select

from engine.catalog import default_registry
from engine.clock import ManualClock
from engine.definitions.builder import WorkflowBuilder, business, complete, reassign, remind
from engine.state import EscalationStatus, InstanceStatus, TaskEventKind, TaskStatus, User
from engine.storage.database import Database
from engine.storage.directory import DirectoryRepository
from engine.storage.escalations import EscalationRepository
from engine.storage.instances import InstanceRepository
from engine.storage.models import task_events
from engine.storage.tasks import TaskRepository
from engine.tasks.service import TaskService
from engine.transitions.engine import Engine
from engine.workers.builtin import BUILTIN_EXECUTORS
from engine.workers.escalations import DECIDED_BY
from engine.workers.executor import SystemTaskContext
from engine.workers.worker import Worker
from tests.workers.support import Mailbox

LADDER = [
    remind("PT4H"),
    reassign("P1D", role="manager"),
    complete("P2D", {"decision": "rejected", "comment": "timed out"}),
]
PEOPLE = {"bob": ("approver",), "frank": ("approver",), "carol": ("manager",), "alice": ()}


def review(ladder: list[dict[str, Any]] = LADDER, key: str = "review") -> WorkflowBuilder:
    b = WorkflowBuilder(key)
    b.user_task("review", schema_type="userTask.approval", title="Review {{ item }}", assign_to_role="approver",
                store_as="verdict", escalation=ladder)  # fmt: skip
    b.system_task("after", "echo", {"output": {"verdict": "{{ verdict.decision }}"}}, store_as="echoed")
    b.edge("review", "after")
    return b


async def seed_people(db: Database, clock: ManualClock, domain: str) -> None:
    async with db.transaction() as session:
        directory = DirectoryRepository(session)
        for user_id, roles in PEOPLE.items():
            await directory.save_user(user_id, user_id.title(), f"{user_id}@{domain}", roles, (), clock.now())


@pytest.fixture
async def worker(engine: Engine, mailbox: Mailbox) -> AsyncIterator[Worker]:
    async with SystemTaskContext(clock=engine.clock, smtp_url=mailbox.url) as context:
        yield Worker(engine, {e.type: e for e in BUILTIN_EXECUTORS}, context, worker_id="worker-1")


async def events_of(db: Database, instance_id: str) -> list[tuple[str, dict[str, Any] | None]]:
    query = (
        select(task_events.c.kind, task_events.c.data)
        .where(task_events.c.workflow_instance_id == instance_id)
        .order_by(task_events.c.id)
    )
    async with db.read() as session:
        return [(row.kind, row.data) for row in await session.execute(query)]


async def ladder_of(db: Database, task_id: str) -> list[tuple[str, EscalationStatus]]:
    async with db.read() as session:
        found = await EscalationRepository(session).of_tasks([task_id])
    return [(e.action, e.status) for e in found[task_id]]


async def the_task(db: Database, instance_id: str, node_id: str = "review") -> Any:
    async with db.read() as session:
        return next(t for t in await TaskRepository(session).find_by_instance(instance_id) if t.node_id == node_id)


def sent_to(mailbox: Mailbox, domain: str) -> list[tuple[str, list[str]]]:
    return [(str(m["Message-ID"]), sorted(str(m["To"]).split(", "))) for m in mailbox.messages()
            if str(m["To"]).endswith(domain)]  # fmt: skip


async def test_each_step_fires_once_in_order_and_is_an_event(
    engine: Engine, clock: ManualClock, worker: Worker, db: Database, mailbox: Mailbox
) -> None:
    domain = f"ladder-{uuid4().hex[:8]}.test"
    await seed_people(db, clock, domain)
    await engine.deploy(review().build())
    instance = await engine.start("review", {"item": "invoice 7"}, "alice")
    task = await the_task(db, instance.id)

    clock.advance(timedelta(hours=3, minutes=59))
    await worker.run_until_idle()
    before = await ladder_of(db, task.id)
    clock.advance(timedelta(minutes=1))
    await worker.run_until_idle()
    await worker.run_until_idle()  # nothing fires twice
    reminded = await ladder_of(db, task.id)
    clock.advance(timedelta(hours=20))
    await worker.run_until_idle()
    reassigned = await the_task(db, instance.id)
    clock.advance(timedelta(days=1))
    await worker.run_until_idle()
    await worker.run_until_idle()

    scheduled, fired = EscalationStatus.SCHEDULED, EscalationStatus.FIRED
    assert before == [("remind", scheduled), ("reassign", scheduled), ("complete", scheduled)]
    assert reminded == [("remind", fired), ("reassign", scheduled), ("complete", scheduled)]
    assert await ladder_of(db, task.id) == [("remind", fired), ("reassign", fired), ("complete", fired)]
    assert (reassigned.assigned_role, reassigned.status) == ("manager", TaskStatus.PENDING)
    [(message_id, recipients)] = sent_to(mailbox, domain)  # the approvers: the task was unassigned
    assert recipients == [f"bob@{domain}", f"frank@{domain}"]
    async with db.read() as session:
        [first, *_] = (await EscalationRepository(session).of_tasks([task.id]))[task.id]
    assert message_id == f"<{first.id}@localhost>"
    assert first.detail is not None and first.detail["recipients"] == ["bob", "frank"]
    assert first.detail["messageId"] == message_id

    events = await events_of(db, instance.id)
    kinds = Counter(kind for kind, _ in events)
    assert kinds[TaskEventKind.REMINDED] == 1 and kinds[TaskEventKind.ESCALATED] == 2
    escalations = [(kind, data["step"], data["action"]) for kind, data in events
                   if kind in (TaskEventKind.REMINDED, TaskEventKind.ESCALATED) and data]  # fmt: skip
    assert escalations == [("REMINDED", 0, "remind"), ("ESCALATED", 1, "reassign"), ("ESCALATED", 2, "complete")]
    done = await the_task(db, instance.id)
    assert done.status is TaskStatus.COMPLETED and done.completed_by is None
    assert done.output["decision"] == "rejected" and done.output["comment"] == "timed out"
    assert done.output["decidedBy"] == DECIDED_BY
    echoed = await the_task(db, instance.id, "after")  # the workflow went on with the escalation's outcome
    assert echoed.output == {"verdict": "rejected"}
    async with db.read() as session:
        finished = await InstanceRepository(session).get(instance.id)
    assert finished is not None and finished.status is InstanceStatus.COMPLETED


async def test_a_completion_just_before_a_steps_time_cancels_the_rest(
    engine: Engine, clock: ManualClock, worker: Worker, db: Database, mailbox: Mailbox
) -> None:
    domain = f"early-{uuid4().hex[:8]}.test"
    await seed_people(db, clock, domain)
    await engine.deploy(review().build())
    instance = await engine.start("review", {"item": "invoice 8"}, "alice")
    task = await the_task(db, instance.id)
    bob = User("bob", "Bob", roles=frozenset({"approver"}))

    clock.advance(timedelta(hours=4) - timedelta(seconds=1))
    await TaskService(engine).decide(bob, task.id, "approved", None, None, None)
    clock.advance(timedelta(seconds=1))
    await worker.run_until_idle()
    clock.advance(timedelta(days=3))
    await worker.run_until_idle()

    cancelled = EscalationStatus.CANCELLED
    assert await ladder_of(db, task.id) == [("remind", cancelled), ("reassign", cancelled), ("complete", cancelled)]
    kinds = [kind for kind, _ in await events_of(db, instance.id)]
    assert TaskEventKind.REMINDED not in kinds and TaskEventKind.ESCALATED not in kinds
    assert sent_to(mailbox, domain) == []
    assert (await the_task(db, instance.id)).output["decidedBy"] == "bob"


async def test_a_reminder_goes_to_the_assignee_and_business_time_counts_from_friday_evening(
    db: Database, mailbox: Mailbox
) -> None:
    clock = ManualClock(datetime(2026, 1, 9, 19, 0, tzinfo=UTC))  # Friday evening
    engine = Engine(db, default_registry(), clock=clock)
    domain = f"friday-{uuid4().hex[:8]}.test"
    await seed_people(db, clock, domain)
    await engine.deploy(review([remind(business("P1D"))], key="friday").build())
    instance = await engine.start("friday", {"item": "x"}, "alice")
    task = await the_task(db, instance.id)
    await TaskService(engine).claim(User("frank", "Frank", roles=frozenset({"approver"})), task.id)
    async with db.read() as session:
        [step] = (await EscalationRepository(session).of_tasks([task.id]))[task.id]
    async with SystemTaskContext(clock=clock, smtp_url=mailbox.url) as context:
        worker = Worker(engine, {e.type: e for e in BUILTIN_EXECUTORS}, context)
        clock.advance(timedelta(days=3, hours=13, minutes=59))  # Monday 08:59... and all of Monday
        await worker.run_until_idle()
        early = sent_to(mailbox, domain)
        clock.advance(timedelta(minutes=1))  # Tuesday 09:00
        await worker.run_until_idle()

    assert step.due_at == datetime(2026, 1, 13, 9, 0, tzinfo=UTC)
    assert early == []
    assert [recipients for _, recipients in sent_to(mailbox, domain)] == [[f"frank@{domain}"]]


@pytest.mark.parametrize("workers", [2])
async def test_two_workers_racing_for_the_same_step_fire_it_once(
    engine: Engine, clock: ManualClock, db: Database, mailbox: Mailbox, workers: int
) -> None:
    domain = f"race-{uuid4().hex[:8]}.test"
    await seed_people(db, clock, domain)
    await engine.deploy(review([remind("PT1H"), reassign("PT2H", user="carol")], key="race").build())
    instances = [await engine.start("race", {"item": str(n)}, "alice") for n in range(10)]
    clock.advance(timedelta(hours=3))
    async with SystemTaskContext(clock=clock, smtp_url=mailbox.url) as context:
        racing = [Worker(engine, {e.type: e for e in BUILTIN_EXECUTORS}, context, worker_id=f"w{n}")
                  for n in range(workers)]  # fmt: skip
        for _ in range(3):
            await asyncio.gather(*(w.run_until_idle() for w in racing))

    for instance in instances:
        kinds = Counter(kind for kind, _ in await events_of(db, instance.id))
        assert kinds[TaskEventKind.REMINDED] == 1 and kinds[TaskEventKind.ESCALATED] == 1, kinds
        assert (await the_task(db, instance.id)).assigned_user_id == "carol"
    assert len({message_id for message_id, _ in sent_to(mailbox, domain)}) == len(instances)


async def test_a_reminder_to_a_role_tells_them_and_leaves_the_task_where_it_is(
    engine: Engine, clock: ManualClock, worker: Worker, db: Database, mailbox: Mailbox
) -> None:
    domain = f"manager-{uuid4().hex[:8]}.test"
    await seed_people(db, clock, domain)
    await engine.deploy(review([remind(business("P1D"), role="manager")], key="told").build())
    instance = await engine.start("told", {"item": "x"}, "alice")  # Monday 09:00: due Tuesday 09:00

    clock.advance(timedelta(days=1))
    await worker.run_until_idle()

    task = await the_task(db, instance.id)
    assert (task.assigned_role, task.status) == ("approver", TaskStatus.PENDING)
    assert [recipients for _, recipients in sent_to(mailbox, domain)] == [[f"carol@{domain}"]]
    [(kind, data)] = [(k, d) for k, d in await events_of(db, instance.id) if k == TaskEventKind.REMINDED]
    assert data is not None and data["recipients"] == ["carol"]
