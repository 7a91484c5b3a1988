"""Transitions in autocommit on PostgreSQL (engine/runner.py, engine/storage/deferred.py): without
BEGIN and COMMIT, yet as atomic as before. A transition that must write before its end, or that lost
a race, runs again in a transaction that locks the instance; nothing of the first attempt stays."""

from __future__ import annotations

import asyncio

import pytest

from engine.errors import ConflictError
from engine.runner import Engine
from engine.state import Task, TaskEventKind
from engine.storage.database import Database
from engine.transition import Transition
from tests.engine.test_durability import approval_then_archive, events_of, tasks_of
from tests.engine.test_transition_costs import begun, driver_commands, statements

pytestmark = pytest.mark.postgres_only


async def test_a_start_is_two_statements_and_no_transaction(engine: Engine, db: Database) -> None:
    await engine.deploy(approval_then_archive())
    await engine.start("approval", {}, "alice")  # the definition's document is read once
    with statements(db) as sent:
        async with driver_commands(db) as commands:
            instance = await engine.start("approval", {}, "alice")
    assert len(sent) == 2 and "workflow_definitions" in sent[0], sent
    assert "INSERT INTO workflow_instances" in sent[1] and "INSERT INTO tasks" in sent[1]
    assert begun(commands) == 0, commands
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
    with statements(db) as sent:
        async with driver_commands(db) as commands:
            saved, _ = await engine.transition(instance.id, "bob", save_then_read)
    assert attempts == [0, 0]  # the first attempt wrote nothing
    assert begun(commands) == 1, commands
    assert sum("FOR UPDATE" in statement for statement in sent) == 1
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

    def save(name: str) -> object:
        async def action(transition: Transition) -> None:
            task = await transition.open_task_at("approval")
            revisions_read.append(task.revision)
            if len(revisions_read) <= 2:  # the first two attempts: each waits until both have read
                await asyncio.wait_for(both_read.wait(), 5)
            await transition.update_task(task, TaskEventKind.PROGRESS_SAVED, draft={**(task.draft or {}), name: 1})

        return engine.transition(instance.id, name, action)

    await asyncio.gather(save("bob"), save("carol"))  # type: ignore[arg-type]
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
    winner = next(r for r in results if not isinstance(r, Exception))
    assert approval.output in ({"decision": "approved"}, {"decision": "rejected"})
    assert archive.node_id == "archive" and winner.revision == 2
    completed = [e for e in await events_of(engine, instance.id) if e.kind is TaskEventKind.COMPLETED]
    assert len(completed) == 1
