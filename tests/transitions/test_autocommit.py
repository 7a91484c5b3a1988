"""Transitions in autocommit on PostgreSQL (engine/transitions/engine.py, engine/storage/deferred.py): without
BEGIN and COMMIT, yet as atomic as before. A transition that must write before its end, or that lost
a race, runs again in a transaction that locks the instance; nothing of the first attempt stays."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any

import pytest
from asyncpg import InterfaceError, InternalClientError, PostgresError
from sqlalchemy import func, select, text
from sqlalchemy.pool import QueuePool

from engine.errors import ConflictError
from engine.state import Task, TaskEventKind, WorkflowInstance
from engine.storage.database import Database
from engine.storage.instances import InstanceRepository
from engine.transitions.engine import Engine
from engine.transitions.transition import Transition
from tests.transitions.test_durability import approval_then_archive, events_of, tasks_of
from tests.transitions.test_transition_costs import NUMBERING, rework_loop, statements

pytestmark = pytest.mark.postgres_only


async def test_a_start_is_one_statement_and_no_transaction(engine: Engine, db: Database) -> None:
    await engine.deploy(approval_then_archive())  # this process now knows the latest version
    await engine.start("approval", {}, "alice")  # and the definition's document is read once
    await engine.sequencer.idle()
    async with statements(db) as sent:
        instance = await engine.start("approval", {}, "alice")
        await engine.sequencer.idle()
    last, numbering = sent.statements  # it checks the version itself (the definition is not read)
    assert numbering == NUMBERING
    assert "INSERT INTO workflow_instances" in last and "INSERT INTO tasks" in last
    assert "workflow_definitions" in last
    assert sent.commands == []
    [task] = await tasks_of(engine, instance.id)
    assert [e.kind for e in await events_of(engine, instance.id)] == [TaskEventKind.CREATED]
    assert task.node_id == "approval"


async def test_a_transition_that_writes_before_its_end_runs_again_in_a_transaction(
    engine: Engine, db: Database
) -> None:
    """Reading after a deferred write would write it at once; in autocommit that write would stay
    even if the transition then failed. The first attempt stops before it, the second is locked."""
    await engine.deploy(approval_then_archive())
    instance = await engine.start("approval", {}, "alice")
    attempts: list[int] = []

    async def save_then_read(transition: Transition) -> Task:
        task = await transition.open_task_at("approval")
        attempts.append(task.revision)
        saved = await transition.update_task(task, TaskEventKind.PROGRESS_SAVED, draft={"note": "kept"})
        await transition.tasks.find_by_instance(instance.id)  # a read after a deferred write
        return saved

    events_before = await events_of(engine, instance.id)
    async with statements(db) as sent:
        saved, _ = await engine.transition(instance.id, "bob", save_then_read)
    assert attempts == [0, 0]  # the first attempt wrote nothing
    assert sent.begun == 1, sent
    assert sum("FOR UPDATE" in statement for statement in sent.statements) == 1
    [task] = await tasks_of(engine, instance.id)
    assert (task.draft, task.revision, saved.revision) == ({"note": "kept"}, 1, 1)
    kinds = [e.kind for e in await events_of(engine, instance.id)]
    assert kinds == [*(e.kind for e in events_before), TaskEventKind.PROGRESS_SAVED]


async def test_a_lost_race_runs_again_under_the_lock_and_loses_nothing(engine: Engine) -> None:
    """Two saves read the same revision without a lock; one write wins, the other fails as a whole and
    runs again from a fresh read, locked, so both drafts are kept."""
    await engine.deploy(approval_then_archive())
    instance = await engine.start("approval", {}, "alice")
    both_read = asyncio.Barrier(2)
    revisions_read: list[int] = []

    def save(name: str) -> Coroutine[Any, Any, tuple[None, WorkflowInstance]]:
        async def action(transition: Transition) -> None:
            task = await transition.open_task_at("approval")
            revisions_read.append(task.revision)
            if len(revisions_read) <= 2:  # the first two attempts: each waits until both have read
                await asyncio.wait_for(both_read.wait(), 5)
            await transition.update_task(task, TaskEventKind.PROGRESS_SAVED, draft={**(task.draft or {}), name: 1})

        return engine.transition(instance.id, name, action)

    await asyncio.gather(save("bob"), save("carol"))
    assert sorted(revisions_read) == [0, 0, 1]
    [task] = await tasks_of(engine, instance.id)
    assert (task.draft, task.revision) == ({"bob": 1, "carol": 1}, 2)
    saved = [e for e in await events_of(engine, instance.id) if e.kind is TaskEventKind.PROGRESS_SAVED]
    assert len(saved) == 2


async def test_a_second_signal_to_a_node_loses_and_changes_nothing(engine: Engine) -> None:
    await engine.deploy(approval_then_archive())
    instance = await engine.start("approval", {}, "alice")
    results = await asyncio.gather(
        engine.send_signal(instance.id, "approval", {"decision": "approved"}, "bob"),
        engine.send_signal(instance.id, "approval", {"decision": "rejected"}, "carol"),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["ConflictError", "WorkflowInstance"]
    assert isinstance(next(r for r in results if isinstance(r, Exception)), ConflictError)
    approval, archive = await tasks_of(engine, instance.id)
    winner = next(r for r in results if isinstance(r, WorkflowInstance))
    assert approval.output in ({"decision": "approved"}, {"decision": "rejected"})
    assert archive.node_id == "archive" and winner.revision == 2
    completed = [e for e in await events_of(engine, instance.id) if e.kind is TaskEventKind.COMPLETED]
    assert len(completed) == 1


BACKEND_PID = select(func.pg_backend_pid().label("pid"))


@pytest.mark.fast_paths  # the driver bypass's own handling of a dead connection
@pytest.mark.parametrize("with_sqlalchemy", [True, False], ids=["sqlalchemy-connection-made", "pool-connection-only"])
async def test_a_connection_lost_before_the_last_statement_fails_once_and_is_not_handed_out_again(
    engine: Engine, db: Database, with_sqlalchemy: bool
) -> None:
    """The last statement runs on the driver's own connection, where SQLAlchemy cannot see it die;
    with or without a SQLAlchemy connection made around the pool's for this transition."""
    await engine.deploy(approval_then_archive())
    instance = await engine.start("approval", {}, "alice")

    async def lose_the_connection(transition: Transition) -> None:
        task = await transition.open_task_at("approval")
        if with_sqlalchemy:
            pid = await (await transition.connection.connection()).scalar(text("SELECT pg_backend_pid()"))
        else:
            [row] = await transition.connection.read_all(BACKEND_PID, {})
            pid = row.pid
        async with db.engine.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await transition.complete(task, {"decision": "approved"})

    with pytest.raises((PostgresError, InterfaceError, InternalClientError)):  # as the kill meets the driver
        await engine.transition(instance.id, "bob", lose_the_connection)
    [task] = await tasks_of(engine, instance.id)
    assert task.output is None
    pool = db.engine.pool
    assert isinstance(pool, QueuePool)
    for _ in range(pool.size() + 1):  # every pooled connection in turn, at once (no idle ping)
        await engine.transition(instance.id, "bob", lambda transition: transition.open_task_at("approval"))
    finished = await engine.send_signal(instance.id, "approval", {"decision": "approved"}, "bob")
    assert [token.node_id for token in finished.tokens] == ["archive"]


async def test_a_transition_gets_a_live_connection_after_its_pooled_one_died_idle(engine: Engine, db: Database) -> None:
    """Transitions take the pool's connection without SQLAlchemy's; its idle ping still replaces a
    dead one before the transition uses it."""
    pinging = Database(db.url, ping_idle_after=0.1)
    here = Engine(pinging, engine.registry)
    try:
        await here.deploy(approval_then_archive())
        instance = await here.start("approval", {}, "alice")
        async with pinging.read() as session:  # the one pooled connection the start used
            pid = await session.scalar(text("SELECT pg_backend_pid()"))
        async with db.engine.connect() as admin:
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await asyncio.sleep(0.3)
        finished = await here.send_signal(instance.id, "approval", {"decision": "approved"}, "bob")
        async with pinging.read() as session:
            assert await session.scalar(text("SELECT pg_backend_pid()")) != pid
    finally:
        await pinging.dispose()
    assert [token.node_id for token in finished.tokens] == ["archive"]


async def test_the_read_on_the_driver_gives_what_sqlalchemy_gives(engine: Engine, db: Database) -> None:
    """Outside a transaction the instance, its steps and open tasks are read on the driver's own
    connection: the same values, types and time zones as SQLAlchemy's rows give."""
    await engine.deploy(approval_then_archive())
    started = await engine.start("approval", {"amount": 2**70 + 1, "nested": {"list": [1, None, "naïve ☃"]}}, "alice")
    async with db.transition_connection(autocommit=True) as connection:
        on_driver = await InstanceRepository(connection).lock_for_transition(started.id)
    async with db.transition_connection() as connection:
        on_sqlalchemy = await InstanceRepository(connection).lock_for_transition(started.id)
    assert on_driver is not None and on_sqlalchemy is not None
    assert on_driver == on_sqlalchemy
    assert on_driver.instance.data["amount"] == 2**70 + 1 and on_driver.instance.started_at.utcoffset() is not None
    [task] = on_driver.open_tasks
    assert task.created_at.tzinfo == on_sqlalchemy.open_tasks[0].created_at.tzinfo
    assert list(on_driver.steps) == ["decide"]


async def test_two_transitions_entering_a_new_step_at_once_lose_as_a_race_not_as_a_duplicate(engine: Engine) -> None:
    """Both create the step "check" from the same read: the loser's statement fails its revision check
    (and is run again under the lock, where the task is done), not the step's unique constraint."""
    await engine.deploy(rework_loop())
    instance = await engine.start("rework", {}, "alice")
    both_read = asyncio.Barrier(2)
    reads = 0

    def complete_draft(actor: str) -> Awaitable[tuple[None, WorkflowInstance]]:
        async def action(transition: Transition) -> None:
            nonlocal reads
            task = await transition.open_task_at("draft")
            reads += 1
            if reads <= 2:
                await asyncio.wait_for(both_read.wait(), 5)
            await transition.complete(task, {"text": actor})

        return engine.transition(instance.id, actor, action)

    results = await asyncio.gather(complete_draft("bob"), complete_draft("carol"), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["ConflictError", "tuple"], results
    async with engine.db.read() as session:
        steps = await InstanceRepository(session).steps_of([instance.id])
    assert [step.step_key for step in steps] == ["write", "check"]
    assert [t.node_id for t in await tasks_of(engine, instance.id)] == ["draft", "review"]


async def test_a_cancelled_transition_gives_its_connection_back(engine: Engine, db: Database) -> None:
    """A request cancelled mid-transition (a client that went away) returns the pool's connection."""
    await engine.deploy(approval_then_archive())
    instance = await engine.start("approval", {}, "alice")
    await engine.sequencer.idle()  # its numbering round has given its connection back
    holding = asyncio.Event()

    async def wait_forever(transition: Transition) -> None:
        await transition.open_task_at("approval")
        holding.set()
        await asyncio.Event().wait()

    running = asyncio.create_task(engine.transition(instance.id, "bob", wait_forever))
    await asyncio.wait_for(holding.wait(), 5)
    assert isinstance(db.engine.pool, QueuePool)
    assert db.engine.pool.checkedout() == 1
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert db.engine.pool.checkedout() == 0
    finished = await engine.send_signal(instance.id, "approval", {"decision": "approved"}, "bob")
    assert [token.node_id for token in finished.tokens] == ["archive"]
