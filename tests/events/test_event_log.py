"""How a transition's last writes land (engine/storage/writer.py ``finish_transition``): the instance and
its events together, nothing at all on a lost race; on PostgreSQL in one statement, and numbered in
commit order by a round after the commit (``number_events``), which alone takes the event lock and
announces them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from engine.errors import ConcurrentUpdateError, ConflictError
from engine.events.numbering import CHANNEL, EVENT_LOCK_KEY, number_events, write_events
from engine.state import StepInstance, Task, TaskEvent, TaskEventKind, WorkflowInstance, new_id
from engine.storage.database import Database
from engine.storage.deferred import DeferredUpdate
from engine.storage.instances import InstanceRepository, instance_values, step_values
from engine.storage.models import instances, step_instances, tasks
from engine.storage.task_events import NewTaskEvent, TaskEventRepository
from engine.storage.tasks import task_values
from engine.storage.writer import finish_transition
from engine.transitions.engine import Engine
from server.demo import load_demo
from tests.events.test_hub import latest, new_form_task
from tests.server.live import TIMEOUT, wait_until
from tests.transitions.test_transition_costs import NUMBERING, statements

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
    """The events numbered after position ``after``, once a round has numbered what committed."""
    await number_events(db)
    async with db.read() as session:
        return await TaskEventRepository(session).after(after, 10_000)


async def unnumbered(db: Database) -> int:
    async with db.read() as session:
        return int(await session.scalar(text("SELECT count(*) FROM task_events WHERE position IS NULL")) or 0)


@asynccontextmanager
async def event_lock_held(db: Database) -> AsyncIterator[None]:
    """Another session holds the event lock meanwhile."""
    async with db.engine.connect() as holder:
        await holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": EVENT_LOCK_KEY})
        try:
            yield
        finally:
            await holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": EVENT_LOCK_KEY})


async def waiting_for_the_event_lock(db: Database) -> int:
    async with db.read() as session:
        query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = :low"
        return int(await session.scalar(text(query), {"low": EVENT_LOCK_KEY & 0xFFFFFFFF}) or 0)


async def until_waiting_for_the_event_lock(db: Database) -> None:
    async def someone_waits() -> bool:
        return await waiting_for_the_event_lock(db) >= 1

    await wait_until(someone_waits, "a waiter for the event lock")


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
async def test_a_transition_never_waits_for_the_event_lock(engine: Engine, db: Database) -> None:
    """Transitions commit their events without the lock; only the numbering round waits for it, and
    numbers them once it has it."""
    task = await new_form_task(engine)
    instance = await instance_of(db, task)
    after = await latest(engine)
    async with event_lock_held(db):
        async with db.transition_connection(autocommit=True) as connection:
            write = finish_transition(connection, bumped(instance), instance.revision,
                                      events_for(task, engine.clock.now(), None, None))  # fmt: skip
            highest = await asyncio.wait_for(write, TIMEOUT)
        assert await unnumbered(db) == 2  # committed, not yet numbered: no reader sees them
        round = asyncio.create_task(number_events(db))
        await until_waiting_for_the_event_lock(db)
        assert not round.done()
    numbered = await asyncio.wait_for(round, TIMEOUT)
    written = await events_after(db, after)
    assert [e.id for e in written][-1] == highest and written[-1].position == numbered == after + 2
    assert await instance_of(db, task) == bumped(instance)


@pytest.mark.postgres_only
async def test_a_failed_check_writes_no_event_even_in_autocommit(engine: Engine, db: Database) -> None:
    task = await new_form_task(engine)
    instance = await instance_of(db, task)
    after = await latest(engine)
    with pytest.raises(ConflictError, match="stale"):
        async with db.transition_connection(autocommit=True) as connection:
            stale = DeferredUpdate(tasks, task.id, task.revision + 3, {"revision": task.revision + 4},
                                   ConflictError("stale"))  # fmt: skip
            connection.defer_update(stale)
            await finish_transition(connection, bumped(instance), instance.revision,
                                    events_for(task, engine.clock.now(), None))  # fmt: skip
    assert await unnumbered(db) == 0
    assert await events_after(db, after) == []
    assert await instance_of(db, task) == instance


@pytest.mark.postgres_only
async def test_a_signal_ends_with_one_statement_and_a_numbering_round(engine: Engine, db: Database) -> None:
    task = await new_form_task(engine)
    async with statements(db) as sent:
        await engine.send_signal(task.workflow_instance_id, task.node_id, {"amount": 3}, "alice")
        await engine.sequencer.idle()  # the round runs after send_signal returned
    [last] = [s for s in sent.statements if "task_events" in s or "pg_advisory" in s or "pg_notify" in s]
    assert "UPDATE workflow_instances" in last and "INSERT INTO task_events" in last
    assert "pg_advisory" not in last and "pg_notify" not in last
    assert sent.statements[-2:] == [last, NUMBERING]
    assert await unnumbered(db) == 0


@pytest.mark.postgres_only
async def test_the_notification_names_the_highest_position_and_comes_only_from_a_round(
    engine: Engine, db: Database, database_url: str
) -> None:
    task = await new_form_task(engine)
    instance = await instance_of(db, task)
    after = await latest(engine)
    received: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    await listener.add_listener(CHANNEL, lambda *args: received.put_nowait(args[3]))
    try:
        async with db.transaction() as session:
            await finish_transition(await session.connection(), bumped(instance), instance.revision,
                                    events_for(task, engine.clock.now(), None, None))  # fmt: skip
        await asyncio.sleep(0.2)
        assert received.empty()  # committed, but not numbered: nothing to read yet
        numbered = await number_events(db)
        assert numbered == after + 2
        assert await asyncio.wait_for(received.get(), TIMEOUT) == str(numbered)
        async with db.transaction() as session:  # a lost race writes nothing, so nothing is announced
            with pytest.raises(ConcurrentUpdateError):
                await finish_transition(await session.connection(), bumped(instance), instance.revision,
                                        events_for(task, engine.clock.now(), None))  # fmt: skip
        assert await number_events(db) is None
        await asyncio.sleep(0.2)
        assert received.empty()
    finally:
        await listener.close()


async def separately(session: AsyncSession, task: Task, instance: WorkflowInstance, at: datetime) -> int | None:
    """How events are written outside a transition's last statement."""
    return await write_events(session, events_for(task, at, None))


async def together(session: AsyncSession, task: Task, instance: WorkflowInstance, at: datetime) -> int | None:
    connection = await session.connection()
    return await finish_transition(connection, bumped(instance), instance.revision, events_for(task, at, None))


@pytest.mark.postgres_only
@pytest.mark.parametrize("writer", [separately, together])
async def test_positions_follow_commit_order_not_id_order(engine: Engine, db: Database, writer: Writer) -> None:
    """An event that took its id first but commits last is numbered after the one that committed
    first: a reader whose cursor already passed that one still reads it."""
    first_task, second_task = await new_form_task(engine), await new_form_task(engine)
    first_instance, second_instance = await instance_of(db, first_task), await instance_of(db, second_task)
    async with db.transaction() as first:
        first_id = await writer(first, first_task, first_instance, engine.clock.now())
        async with db.transaction() as second:
            second_id = await writer(second, second_task, second_instance, engine.clock.now())
        assert first_id is not None and second_id is not None and first_id < second_id
        cursor = await number_events(db)  # numbers the second, the only one committed
        assert cursor is not None
        assert [e.id for e in await events_after(db, cursor - 1)] == [second_id]
    [late] = await events_after(db, cursor)
    assert late.id == first_id and late.position == cursor + 1


@pytest.mark.postgres_only
async def test_a_round_numbers_what_committed_while_it_waited_for_the_lock(engine: Engine, db: Database) -> None:
    """The round reads what to number only once it holds the lock (its statement began before)."""
    task = await new_form_task(engine)
    after = await latest(engine)
    async with event_lock_held(db):
        round = asyncio.create_task(number_events(db))
        await until_waiting_for_the_event_lock(db)
        async with db.transaction() as session:
            written = await write_events(session, events_for(task, engine.clock.now(), None))
    assert await asyncio.wait_for(round, TIMEOUT) == after + 1
    assert [e.id for e in await events_after(db, after)] == [written]


@pytest.mark.postgres_only
async def test_transitions_do_not_wait_for_numbering_and_share_its_rounds(engine: Engine, db: Database) -> None:
    """Sixteen transitions commit while the event lock is held elsewhere (the round their first
    commit started waits for it); the commit listeners hear of them only once they are numbered, by
    two rounds: the waiting one, which reads after it has the lock, and the one more after it that
    any commit during a round asks for."""
    forms = [await new_form_task(engine) for _ in range(16)]
    await engine.sequencer.idle()
    after, rounds = await latest(engine), engine.sequencer.rounds
    heard: list[int] = []

    async def listener() -> None:
        heard.append(await unnumbered(db))

    engine.commit_listeners.append(listener)
    async with event_lock_held(db):
        await asyncio.wait_for(asyncio.gather(*(
            engine.send_signal(f.workflow_instance_id, f.node_id, {"amount": 1}, "alice") for f in forms
        )), TIMEOUT)  # fmt: skip
        await until_waiting_for_the_event_lock(db)
        assert await unnumbered(db) == 2 * len(forms)  # each: completed, and the next task created
        assert heard == []
    await asyncio.wait_for(engine.sequencer.idle(), TIMEOUT)
    assert engine.sequencer.rounds - rounds == 2 and heard == [0, 0]
    assert len(await events_after(db, after)) == 2 * len(forms)


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


@pytest.mark.postgres_only
async def test_a_quiet_process_numbers_at_once_and_a_busy_one_gathers(engine: Engine, db: Database) -> None:
    """A round begins at once when the last began ``min_interval`` ago; otherwise it waits for that
    and then numbers everything committed meanwhile in one go."""
    forms = [await new_form_task(engine) for _ in range(3)]
    engine.sequencer.min_interval = 0.5
    await asyncio.sleep(0.5)  # quiet since the last round
    rounds = engine.sequencer.rounds

    async def signal(task: Task) -> None:
        await engine.send_signal(task.workflow_instance_id, task.node_id, {"amount": 1}, "alice")

    async def all_numbered() -> bool:
        return await unnumbered(db) == 0

    await signal(forms[0])  # numbered within 0.3 s, long before the interval is over
    await wait_until(all_numbered, "the first commit after a quiet spell numbered at once", timeout=0.3)
    await signal(forms[1])
    await signal(forms[2])
    await asyncio.sleep(0.05)
    assert await unnumbered(db) == 4 and engine.sequencer.rounds == rounds + 1  # the next round waits
    await asyncio.wait_for(engine.sequencer.idle(), TIMEOUT)
    assert await unnumbered(db) == 0 and engine.sequencer.rounds == rounds + 2


@pytest.mark.postgres_only
async def test_a_round_reads_the_unnumbered_events_by_index_with_plans_made_on_a_small_log(
    engine: Engine, db: Database, database_url: str
) -> None:
    """A connection keeps the round's plans for its life: planned while the log was small and
    analyzed so (a new database's first minutes), they must still find the unnumbered events by
    their partial index and update them by key once the log has grown, not scan it every round."""
    task = await new_form_task(engine)
    number = "SELECT stepwise_number_events($1, $2)"
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await connection.execute("ANALYZE task_events")
        await connection.fetchval(number, EVENT_LOCK_KEY, CHANNEL)  # this connection plans the round now
        grow = """
            INSERT INTO task_events (kind, task_id, step_instance_id, workflow_instance_id, actor_id, occurred_at, data)
            SELECT 'UPDATED', id, step_instance_id, workflow_instance_id, 'alice', now(), 'null'
            FROM tasks, generate_series(1, $2) WHERE id = $1"""
        await connection.execute(grow, task.id, 5_000)
        await connection.fetchval(number, EVENT_LOCK_KEY, CHANNEL)
        await connection.execute(grow, task.id, 3)
        async with connection.transaction():
            latest_position = await connection.fetchval(number, EVENT_LOCK_KEY, CHANNEL)
            scans = await connection.fetchrow(
                "SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables WHERE relname = 'task_events'"
            )
        assert scans is not None and scans["seq_scan"] == 0 and scans["idx_scan"] > 0
        numbered = await connection.fetch("SELECT position FROM task_events ORDER BY id DESC LIMIT 3")
        assert sorted(row["position"] for row in numbered) == [latest_position - n for n in (2, 1, 0)]
        assert await unnumbered(db) == 0
    finally:
        await connection.close()
