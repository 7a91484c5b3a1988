"""Bulk claim, assign and decide: 500 tasks with a few refusals — the rest commit, every item reports,
every change has its event — and a dry run that writes nothing (every table compared before and after)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from engine.definitions.builder import WorkflowBuilder
from engine.errors import ForbiddenError, IdempotencyKeyReusedError, InvalidStateError, NotFoundError, ValidationError
from engine.services import Services
from engine.state import TaskStatus, User
from engine.storage.database import Database
from engine.storage.directory import DirectoryRepository
from engine.storage.models import Base, task_events
from engine.storage.tasks import TaskRepository
from engine.tasks.bulk import MAX_BULK_TASKS
from engine.transitions.engine import Engine

BOB = User("bob", "Bob", roles=frozenset({"approver"}))
FRANK = User("frank", "Frank", roles=frozenset({"approver"}))
ALICE = User("alice", "Alice")
CAROL = User("carol", "Carol", roles=frozenset({"manager"}))


async def approvals(engine: Engine, count: int) -> list[str]:
    b = WorkflowBuilder("bulk")
    b.user_task("decision", schema_type="userTask.approval", assign_to_role="approver", store_as="verdict",
                excludes=["starter"])  # fmt: skip
    await engine.deploy(b.build())
    async with engine.db.transaction() as session:
        for user in (BOB, FRANK, ALICE, CAROL):
            await DirectoryRepository(session).save_user(user.id, user.name, None, user.roles, (), engine.clock.now())
    ids = []
    for n in range(count):
        instance = await engine.start("bulk", {"n": n}, "alice" if n % 100 == 7 else "dana")
        [token] = instance.tokens
        assert token.task_id is not None
        ids.append(token.task_id)
    return ids


async def events(db: Database, kind: str) -> Counter[tuple[str, str | None]]:
    query = select(task_events.c.task_id, task_events.c.actor_id).where(task_events.c.kind == kind)
    async with db.read() as session:
        return Counter((row.task_id, row.actor_id) for row in await session.execute(query))


async def everything(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    await engine.sequencer.idle()  # events numbered: a numbering round is not the action's write
    async with engine.db.read() as session:
        return {
            table.name: sorted(map(tuple, (await session.execute(select(table))).all()), key=repr)
            for table in Base.metadata.sorted_tables
        }


async def test_500_tasks_with_a_few_refusals(engine: Engine, db: Database) -> None:
    services = Services.build(engine)
    ids = await approvals(engine, MAX_BULK_TASKS - 1)
    taken = ids[10:13]  # frank holds these: bob may not claim them
    for task_id in taken:
        await services.tasks.claim(FRANK, task_id)
    cancelled = ids[20]
    async with db.read() as session:
        found = await TaskRepository(session).get_by_id(cancelled)
    assert found is not None
    await engine.cancel(found.workflow_instance_id, "dana")
    unknown = "00000000-0000-7000-8000-000000000000"
    asked = [*ids, unknown]

    claimed = await services.bulk.claim(BOB, asked)
    decided = await services.bulk.decide(BOB, asked, "approved", "bulk ok")

    assert [item.task_id for item in claimed] == asked  # one item each, in the order asked
    refusals = {item.task_id: type(item.error) for item in claimed if item.error is not None}
    assert refusals == {**dict.fromkeys(taken, ForbiddenError), cancelled: InvalidStateError, unknown: NotFoundError}
    succeeded = [item for item in claimed if item.error is None]
    assert len(succeeded) == len(asked) - 5
    assert all(item.task is not None and item.task.assigned_user_id == "bob" for item in succeeded)
    claims = await events(db, "CLAIMED")
    assert all(claims[(item.task_id, "bob")] == 1 for item in succeeded)
    assert sum(count for (_, actor), count in claims.items() if actor == "bob") == len(succeeded)

    # alice started every hundredth instance, and the node excludes its starter — but not from bob
    decided_refusals = {item.task_id for item in decided if item.error is not None}
    assert decided_refusals == {*taken, cancelled, unknown}  # frank holds three; the rest as before
    completions = await events(db, "COMPLETED")
    assert all(completions[(item.task_id, "bob")] == 1 for item in decided if item.error is None)
    async with db.read() as session:
        after = await TaskRepository(session).get_many(ids)
    assert Counter(task.status for task in after.values()) == Counter(
        {TaskStatus.COMPLETED: len(ids) - 4, TaskStatus.CLAIMED: 3, TaskStatus.CANCELLED: 1}
    )
    assert {after[t].assigned_user_id for t in taken} == {"frank"}
    assert all(after[item.task_id].output["comment"] == "bulk ok" for item in decided if item.error is None)


async def test_separation_of_duties_applies_per_item(engine: Engine, db: Database) -> None:
    services = Services.build(engine)
    ids = await approvals(engine, 10)  # the eighth (n = 7) was started by alice

    alice_as_approver = User("alice", "Alice", roles=frozenset({"approver"}))
    items = await services.bulk.claim(alice_as_approver, ids)

    refused = [item for item in items if item.error is not None]
    assert [item.task_id for item in refused] == [ids[7]]
    assert isinstance(refused[0].error, ForbiddenError) and refused[0].error.code == "SEPARATION_OF_DUTIES"


async def test_a_dry_run_reports_and_writes_nothing(engine: Engine, db: Database) -> None:
    services = Services.build(engine)
    ids = await approvals(engine, 12)
    await services.tasks.claim(FRANK, ids[3])
    before = await everything(engine)

    claimed = await services.bulk.claim(BOB, ids, dry_run=True)
    assigned = await services.bulk.assign(CAROL, ids, "bob", dry_run=True)
    decided = await services.bulk.decide(BOB, ids, "rejected", None, dry_run=True)
    refused = await services.bulk.assign(BOB, ids, "bob", dry_run=True)

    assert await everything(engine) == before
    assert [type(item.error) for item in claimed].count(ForbiddenError) == 1
    assert claimed[0].task is not None and claimed[0].task.status is TaskStatus.CLAIMED  # as it would be
    assert all(item.task is not None and item.task.assigned_user_id == "bob" for item in assigned)
    assert decided[0].task is not None and decided[0].task.status is TaskStatus.COMPLETED
    assert decided[3].error is not None and all(item.error is None for i, item in enumerate(decided) if i != 3)
    assert all(isinstance(item.error, ForbiddenError) for item in refused)  # bob is no manager


@pytest.mark.parametrize(
    ("task_ids", "code"),
    [([], "REQUIRED"), (["a", "a"], "DUPLICATE"), ([str(n) for n in range(MAX_BULK_TASKS + 1)], "TOO_MANY")],
)
async def test_a_bad_list_is_refused_as_a_whole(engine: Engine, task_ids: list[str], code: str) -> None:
    with pytest.raises(ValidationError) as refused:
        await Services.build(engine).bulk.claim(BOB, task_ids)

    [error] = refused.value.field_errors
    assert (error.field, error.code) == ("taskIds", code)


async def test_a_repeat_with_the_same_key_answers_each_item_as_before(engine: Engine, db: Database) -> None:
    services = Services.build(engine)
    ids = await approvals(engine, 5)

    first = await services.bulk.claim(BOB, ids, idempotency_key="claim-them")
    await services.tasks.assign(CAROL, ids[0], "frank")  # changed since: a repeat must not claim it again
    again = await services.bulk.claim(BOB, ids, idempotency_key="claim-them")

    assert all(item.error is None for item in first + again)
    assert [item.task.revision for item in again if item.task] == [item.task.revision for item in first if item.task]
    assert (await events(db, "CLAIMED"))[(ids[0], "bob")] == 1


async def test_a_key_sent_again_with_other_input_is_refused_per_item(engine: Engine, db: Database) -> None:
    services = Services.build(engine)
    ids = await approvals(engine, 3)

    await services.bulk.assign(CAROL, ids, "bob", idempotency_key="assign-them")
    other_user = await services.bulk.assign(CAROL, ids, "frank", idempotency_key="assign-them")
    await services.bulk.decide(BOB, ids[:1], "approved", "fine", idempotency_key="decide-it")
    other_comment = await services.bulk.decide(BOB, ids[:1], "approved", "not fine", idempotency_key="decide-it")

    assert all(isinstance(item.error, IdempotencyKeyReusedError) for item in other_user + other_comment)
    assert (await events(db, "ASSIGNED"))[(ids[1], "carol")] == 1
    async with db.read() as session:
        task = await TaskRepository(session).get_by_id(ids[1])
    assert task is not None and task.assigned_user_id == "bob"
