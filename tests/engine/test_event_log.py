"""How a transition's last writes land (engine/event_log.py ``finish_transition``): the instance and
its events together, in commit order, announced only after the commit, nothing at all on a lost race.
On PostgreSQL they are one statement; these tests hold it to what the separate statements did."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from engine.errors import ConcurrentUpdateError, ConflictError
from engine.event_log import CHANNEL, EVENT_LOCK_KEY, finish_transition, write_events
from engine.runner import Engine
from engine.state import StepInstance, Task, TaskEvent, TaskEventKind, WorkflowInstance, new_id
from engine.storage.database import Database
from engine.storage.deferred import DeferredUpdate
from engine.storage.instances import InstanceRepository, instance_values, step_values
from engine.storage.models import instances, step_instances, tasks
from engine.storage.tasks import NewTaskEvent, TaskEventRepository, task_values
from server.demo import load_demo
from tests.engine.test_events import latest, new_form_task
from tests.engine.test_transition_costs import statements
from tests.server.live import TIMEOUT

pytestmark = pytest.mark.usefixtures("demo")
Writer = Callable[[AsyncSession, Task, WorkflowInstance, datetime], Awaitable[int | None]]


@pytest.fixture
async def demo(engine: Engine) -> Engine:
    await load_demo(engine)
    return engine


async def instance_of(db: Database, task: Task) -> WorkflowInstance:
    async with db.read() as session:
        found = await InstanceRepository(session).get(task.workflow_instance_id)
    assert found is not None
    return found


def events_for(task: Task, at: Any, *data: dict[str, Any] | None) -> list[NewTaskEvent]:
    kinds = [TaskEventKind.UPDATED, TaskEventKind.PROGRESS_SAVED, TaskEventKind.CLAIMED]
    return [NewTaskEvent(kinds[n % 3], task, "alice", at, d) for n, d in enumerate(data)]


async def events_after(db: Database, after: int) -> list[TaskEvent]:
    async with db.read() as session:
        return await TaskEventRepository(session).after(after, 10_000)


def bumped(instance: WorkflowInstance) -> WorkflowInstance:
    return replace(instance, data={**instance.data, "note": "changed"}, revision=instance.revision + 1)


async def test_the_instance_and_its_events_are_written_together(engine: Engine, db: Database) -> None:
    task = await new_form_task(engine)
    instance = await instance_of(db, task)
    after = await latest(engine)
    events = events_for(task, engine.clock.now(), None, {"amount": 2**70 + 1, "nested": {"list": [1, "two", None]}})
    async with db.transaction() as session:
        highest = await finish_transition(await session.connection(), bumped(instance), instance.revision, events)
    written = await events_after(db, after)
    assert highest == written[-1].id
    assert [(e.kind, e.task_id, e.actor_id, e.occurred_at, e.data) for e in written] == [
        (TaskEventKind.UPDATED, task.id, "alice", events[0].at, {}),
        (TaskEventKind.PROGRESS_SAVED, task.id, "alice", events[1].at, {"amount": 2**70 + 1,
                                                                        "nested": {"list": [1, "two", None]}}),
    ]  # fmt: skip
    stored = await instance_of(db, task)
    assert (stored.revision, stored.data["note"]) == (instance.revision + 1, "changed")


@pytest.mark.parametrize("autocommit", [False, True], ids=["in_transaction", "autocommit"])
async def test_a_lost_race_writes_nothing(engine: Engine, db: Database, autocommit: bool) -> None:
    """In autocommit (PostgreSQL) nothing rolls back after the last statement: it must fail as a whole,
    the rows it carried included. (SQLite ignores autocommit; both run in a transaction there.)"""
    task = await new_form_task(engine)
    instance = await instance_of(db, task)
    after = await latest(engine)
    step = StepInstance(new_id(), instance.id, "m", "lost-race", engine.clock.now())
    with pytest.raises(ConcurrentUpdateError, match="changed concurrently"):
        async with db.transition_connection(autocommit=autocommit) as connection:
            connection.defer_insert(step_instances, step_values(step))
            await finish_transition(connection, bumped(instance), instance.revision + 5,
                                    events_for(task, engine.clock.now(), None))  # fmt: skip
    assert await events_after(db, after) == []
    async with db.read() as session:
        assert step.id not in {s.id for s in await InstanceRepository(session).steps_of([instance.id])}
    assert await instance_of(db, task) == instance


@pytest.mark.postgres_only
async def test_a_failed_check_never_waits_for_the_event_lock(engine: Engine, db: Database) -> None:
    """Every check runs before the event lock, which only a statement about to write its events
    takes: a transition that fails (here a task someone else changed) neither waits for that lock
    nor holds it up for the others."""
    task = await new_form_task(engine)
    instance = await instance_of(db, task)
    after = await latest(engine)
    async with db.engine.connect() as holder:  # another session holds the event lock meanwhile
        await holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": EVENT_LOCK_KEY})
        with pytest.raises(ConflictError, match="stale"):
            async with db.transition_connection(autocommit=True) as connection:
                stale = DeferredUpdate(tasks, task.id, task.revision + 3, {"revision": task.revision + 4},
                                       ConflictError("stale"))  # fmt: skip
                connection.defer_update(stale)
                write = finish_transition(connection, bumped(instance), instance.revision,
                                          events_for(task, engine.clock.now(), None))  # fmt: skip
                await asyncio.wait_for(write, TIMEOUT)
        await holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": EVENT_LOCK_KEY})
    assert await events_after(db, after) == []
    assert await instance_of(db, task) == instance


@pytest.mark.postgres_only
async def test_a_signal_ends_with_one_statement_for_the_instance_and_its_events(engine: Engine, db: Database) -> None:
    task = await new_form_task(engine)
    async with statements(db) as sent:
        await engine.send_signal(task.workflow_instance_id, task.node_id, {"amount": 3}, "alice")
    [last] = [s for s in sent.statements if "task_events" in s or "pg_advisory" in s or "pg_notify" in s]
    assert "UPDATE workflow_instances" in last and "pg_advisory_xact_lock" in last and "pg_notify" in last
    assert sent.statements[-1] == last


@pytest.mark.postgres_only
async def test_the_notification_names_the_highest_id_and_comes_only_after_commit(
    engine: Engine, db: Database, database_url: str
) -> None:
    task = await new_form_task(engine)
    instance = await instance_of(db, task)
    received: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    await listener.add_listener(CHANNEL, lambda *args: received.put_nowait(args[3]))
    try:
        async with db.transaction() as session:
            highest = await finish_transition(await session.connection(), bumped(instance), instance.revision,
                                              events_for(task, engine.clock.now(), None, None))  # fmt: skip
            await asyncio.sleep(0.2)
            assert received.empty()
        assert await asyncio.wait_for(received.get(), TIMEOUT) == str(highest)
        async with db.transaction() as session:  # a lost race announces nothing
            with pytest.raises(ConcurrentUpdateError):
                await finish_transition(await session.connection(), bumped(instance), instance.revision,
                                        events_for(task, engine.clock.now(), None))  # fmt: skip
        await asyncio.sleep(0.2)
        assert received.empty()
    finally:
        await listener.close()


async def separately(session: AsyncSession, task: Task, instance: WorkflowInstance, at: datetime) -> int | None:
    """How events were written before the final statement, and still are outside transitions."""
    return await write_events(session, events_for(task, at, None))


async def together(session: AsyncSession, task: Task, instance: WorkflowInstance, at: datetime) -> int | None:
    connection = await session.connection()
    return await finish_transition(connection, bumped(instance), instance.revision, events_for(task, at, None))


@pytest.mark.postgres_only
@pytest.mark.parametrize("writer", [separately, together])
async def test_event_ids_become_visible_in_commit_order(engine: Engine, db: Database, writer: Writer) -> None:
    """A transaction that took ids first but commits last makes the next writer wait for it."""
    first_task, second_task = await new_form_task(engine), await new_form_task(engine)
    first_instance, second_instance = await instance_of(db, first_task), await instance_of(db, second_task)
    async with db.transaction() as first:
        first_id = await writer(first, first_task, first_instance, engine.clock.now())

        async def second_writer() -> int | None:
            async with db.transaction() as second:
                return await writer(second, second_task, second_instance, engine.clock.now())

        second = asyncio.create_task(second_writer())
        for _ in range(int(TIMEOUT / 0.01)):  # bounded: the second writer must queue behind the first
            async with db.read() as session:
                query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = :low"
                if await session.scalar(text(query), {"low": EVENT_LOCK_KEY & 0xFFFFFFFF}):
                    break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the second writer never waited for the event lock")
        assert not second.done()
    second_id = await asyncio.wait_for(second, TIMEOUT)
    assert first_id is not None and second_id is not None and first_id < second_id


@pytest.mark.postgres_only
async def test_events_are_stored_alike_by_both_writers(engine: Engine, db: Database) -> None:
    task = await new_form_task(engine)
    instance = await instance_of(db, task)
    events = events_for(task, engine.clock.now(), None, {"big": 2**70 + 1, "text": "naïve ☃"})
    async with db.transaction() as session:
        separate = await write_events(session, events)
    async with db.transaction() as session:
        together = await finish_transition(await session.connection(), bumped(instance), instance.revision, events)
    assert separate is not None and together is not None
    query = text("SELECT kind, task_id, step_instance_id, workflow_instance_id, actor_id, occurred_at, data::text "
                 "FROM task_events WHERE id > :after AND id <= :upto ORDER BY id")  # fmt: skip
    async with db.read() as session:
        rows = [tuple(r) for r in await session.execute(query, {"after": separate - 2, "upto": together})]
    assert rows[:2] == rows[2:] and len(rows) == 4
    assert rows[0][-1] == "null"  # an event without data holds JSON null, as before, not SQL NULL


@pytest.mark.postgres_only
async def test_deferred_rows_are_stored_as_inserts_store_them(engine: Engine, db: Database) -> None:
    """A new instance, step and task written by the last statement (JSON arrays) or flushed before it
    (SQLAlchemy's INSERTs): the same rows, JSON ``null`` and SQL NULL alike, times to the microsecond."""
    template = await new_form_task(engine)
    at = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))

    async def write(flushed_first: bool) -> str:
        instance = replace(await instance_of(db, template), id=new_id(), revision=0, data={"big": 2**70 + 1})
        step = StepInstance(new_id(), instance.id, "m", f"s-{flushed_first}", at)
        task = replace(template, id=new_id(), workflow_instance_id=instance.id, step_instance_id=step.id,
                       token_id=new_id(), input={"nested": {"list": [1, None, "naïve ☃"]}}, output=None, draft=None,
                       due_at=at, description=None)  # fmt: skip
        async with db.transition_connection() as connection:
            connection.defer_insert(instances, instance_values(instance))
            connection.defer_insert(tasks, task_values(task))  # before its step: the order is the tables'
            connection.defer_insert(step_instances, step_values(step))
            if flushed_first:
                await connection.flush()
            await finish_transition(connection, bumped(instance), instance.revision,
                                    [NewTaskEvent(TaskEventKind.CREATED, task, "alice", at, None)])  # fmt: skip
        return instance.id

    query = text("""
        SELECT to_jsonb(i) - 'id' - 'revision', i.revision, to_jsonb(s) - 'id' - 'workflow_instance_id' - 'step_key',
               to_jsonb(t) - 'id' - 'workflow_instance_id' - 'step_instance_id' - 'token_id',
               t.output IS NULL, t.draft IS NULL, jsonb_typeof(t.output), jsonb_typeof(t.draft)
        FROM workflow_instances i JOIN step_instances s ON s.workflow_instance_id = i.id
        JOIN tasks t ON t.step_instance_id = s.id WHERE i.id = :id""")
    rows = []
    for flushed_first in (False, True):
        instance_id = await write(flushed_first)
        async with db.read() as session:
            rows.append(tuple((await session.execute(query, {"id": instance_id})).one()))
    assert rows[0] == rows[1]
    assert rows[0][1] == 1 and rows[0][4:] == (False, False, "null", "null")
    assert rows[0][0]["data"] == {"big": 2**70 + 1, "note": "changed"}
    assert rows[0][3]["due_at"] == "2026-03-01T07:30:15.123456+00:00"
