"""Task and instance history: every event with what it changed, as recorded when it
happened; read through the visibility rules; and an event log that no statement may change or
remove (on PostgreSQL a trigger refuses it), while numbering still gives events their positions."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from engine.definitions.builder import WorkflowBuilder
from engine.errors import NotFoundError, ValidationError
from engine.events.numbering import number_events
from engine.state import Task, TaskEvent, TaskEventKind, User
from engine.storage.database import Database
from engine.storage.directory import DirectoryRepository
from engine.storage.task_events import encode_history_cursor
from engine.storage.tasks import TaskRepository
from engine.tasks.service import TaskService
from engine.tasks.visibility import VisibilityService
from engine.transitions.engine import Engine
from server.demo import load_demo


@pytest.fixture
async def demo(engine: Engine) -> Engine:
    await load_demo(engine)
    builder = WorkflowBuilder("history")
    builder.user_task("fill", title="Fill in", assign_to_role="requester", store_as="filled",
                      form=[{"key": "amount", "type": "number", "label": "Amount"}])  # fmt: skip
    builder.user_task("approve", schema_type="userTask.approval", title="Approve", assign_to_role="approver")
    builder.edge("fill", "approve")
    await engine.deploy(builder.build())
    return engine


async def user(engine: Engine, user_id: str) -> User:
    async with engine.db.read() as session:
        found = await DirectoryRepository(session).get_user(user_id)
    assert found is not None
    return found


async def task_at(engine: Engine, instance_id: str, node_id: str) -> Task:
    async with engine.db.read() as session:
        return next(t for t in await TaskRepository(session).find_by_instance(instance_id) if t.node_id == node_id)


def summary(events: list[TaskEvent]) -> list[tuple[Any, ...]]:
    return [(e.kind, e.actor_id, dict(e.data)) for e in events]


async def run_story(engine: Engine) -> tuple[str, Task, Task]:
    """alice fills the form (a draft, then the submission); bob claims the approval, carol (a manager)
    hands it back to nobody, and bob approves with a comment."""
    service = TaskService(engine)
    alice, bob, carol = [await user(engine, u) for u in ("alice", "bob", "carol")]
    instance = await engine.start("history", {}, "alice")
    fill = await task_at(engine, instance.id, "fill")
    await service.save_progress(alice, fill.id, {"amount": 5}, None)
    await service.submit(alice, fill.id, {"amount": 7}, None)
    approve = await task_at(engine, instance.id, "approve")
    await service.claim(bob, approve.id)
    await service.assign(carol, approve.id, None)
    await service.decide(bob, approve.id, "approved", "fine by me", None, None)
    return instance.id, fill, approve


async def test_each_event_records_what_it_changed(demo: Engine) -> None:
    instance_id, fill, approve = await run_story(demo)
    visibility = VisibilityService(demo)
    alice, bob = await user(demo, "alice"), await user(demo, "bob")

    fill_history = await visibility.task_history(alice, fill.id, 50, None)
    assert summary(fill_history.events) == [
        (TaskEventKind.CREATED, "alice", {"status": {"from": None, "to": "PENDING"}, "revision": 0}),
        (TaskEventKind.CLAIMED, "alice", {"status": {"from": "PENDING", "to": "CLAIMED"},
                                          "assignee": {"from": None, "to": "alice"}, "revision": 1}),
        (TaskEventKind.PROGRESS_SAVED, "alice", {"revision": 2}),
        (TaskEventKind.COMPLETED, "alice", {"status": {"from": "CLAIMED", "to": "COMPLETED"}, "revision": 3}),
    ]  # fmt: skip
    assert not fill_history.has_next

    approve_history = await visibility.task_history(bob, approve.id, 50, None)
    assert summary(approve_history.events) == [
        (TaskEventKind.CREATED, "alice", {"status": {"from": None, "to": "PENDING"}, "revision": 0}),
        (TaskEventKind.CLAIMED, "bob", {"status": {"from": "PENDING", "to": "CLAIMED"},
                                        "assignee": {"from": None, "to": "bob"}, "revision": 1}),
        (TaskEventKind.ASSIGNED, "carol", {"status": {"from": "CLAIMED", "to": "PENDING"},
                                           "assignee": {"from": "bob", "to": None}, "revision": 2}),
        (TaskEventKind.CLAIMED, "bob", {"status": {"from": "PENDING", "to": "CLAIMED"},
                                        "assignee": {"from": None, "to": "bob"}, "revision": 3}),
        (TaskEventKind.COMPLETED, "bob", {"status": {"from": "CLAIMED", "to": "COMPLETED"}, "revision": 4,
                                          "decision": "approved", "comment": "fine by me"}),
    ]  # fmt: skip

    # The starter sees the whole instance's history, in the order it happened.
    whole = await visibility.instance_history(alice, instance_id, 50, None)
    assert [e.task_id for e in whole.events] == [fill.id] * 4 + [approve.id] * 5


async def test_history_pages_follow_cursors_and_refuse_bad_ones(demo: Engine) -> None:
    instance_id, fill, _ = await run_story(demo)
    visibility, alice = VisibilityService(demo), await user(demo, "alice")
    seen: list[int] = []
    after = None
    while True:
        page = await visibility.instance_history(alice, instance_id, 2, after)
        seen += [e.id for e in page.events]
        if not page.has_next:
            break
        after = encode_history_cursor(page.events[-1])
    everything = await visibility.instance_history(alice, instance_id, 200, None)
    assert seen == [e.id for e in everything.events] and len(seen) == 9
    for bad_first, bad_after, field in ((201, None, "first"), (-1, None, "first"), (5, "bm90IGEgY3Vyc29y", "after"),
                                        (5, "%%%", "after")):  # fmt: skip
        with pytest.raises(ValidationError) as raised:
            await visibility.task_history(alice, fill.id, bad_first, bad_after)
        assert [f.field for f in raised.value.field_errors] == [field]


async def test_who_may_not_see_a_task_may_not_see_its_history(demo: Engine) -> None:
    instance_id, fill, approve = await run_story(demo)
    visibility = VisibilityService(demo)
    erin, bob = await user(demo, "erin"), await user(demo, "bob")
    with pytest.raises(NotFoundError):
        await visibility.task_history(erin, fill.id, 50, None)
    with pytest.raises(NotFoundError):
        await visibility.task_history(erin, "no-such-task", 50, None)
    with pytest.raises(NotFoundError):
        await visibility.instance_history(erin, instance_id, 50, None)
    # bob holds the approver role: he sees the approval, not alice's form, and the instance's history
    # shows only the approval's events (as its task list shows only the approval).
    with pytest.raises(NotFoundError):
        await visibility.task_history(bob, fill.id, 50, None)
    shown = await visibility.instance_history(bob, instance_id, 50, None)
    assert {e.task_id for e in shown.events} == {approve.id} and len(shown.events) == 5


async def raw(db: Database, sql: str) -> None:
    async with db.transaction() as session:
        await session.execute(text(sql))


@pytest.mark.postgres_only
async def test_no_statement_changes_or_removes_an_event_on_postgresql(demo: Engine, db: Database) -> None:
    await run_story(demo)
    await demo.sequencer.idle()
    refusals = [
        "UPDATE task_events SET kind = 'CANCELLED'",
        "UPDATE task_events SET actor_id = 'mallory'",
        "UPDATE task_events SET data = '{}'::jsonb",
        "UPDATE task_events SET position = position + 1000",  # a numbered event is never renumbered
        "UPDATE task_events SET position = NULL",
        "DELETE FROM task_events",
        "DELETE FROM tasks",  # nor through the cascade from its task
    ]
    async with db.read() as session:
        before = (await session.execute(text("SELECT * FROM task_events ORDER BY id"))).all()
    for sql in refusals:
        with pytest.raises(DBAPIError) as raised:
            await raw(db, sql)
        assert raised.value.orig is not None
        assert getattr(raised.value.orig.__cause__, "sqlstate", None) == "SW423", sql
        assert "append-only" in str(raised.value), sql
    async with db.read() as session:
        assert (await session.execute(text("SELECT * FROM task_events ORDER BY id"))).all() == before


@pytest.mark.postgres_only
async def test_numbering_may_set_a_position_once_and_change_nothing_else(demo: Engine, db: Database) -> None:
    await run_story(demo)
    await demo.sequencer.idle()
    async with db.read() as session:
        numbered = await session.scalar(text("SELECT count(*) FROM task_events WHERE position IS NULL"))
    assert numbered == 0  # the rounds ran through the trigger
    # An unnumbered event (written, its round not run yet) may get its position, with nothing else.
    await raw(db, "INSERT INTO task_events (kind, task_id, step_instance_id, workflow_instance_id, occurred_at) "
                  "SELECT 'UPDATED', id, step_instance_id, workflow_instance_id, now() FROM tasks LIMIT 1")  # fmt: skip
    with pytest.raises(DBAPIError):
        await raw(db, "UPDATE task_events SET position = 999999, kind = 'CANCELLED' WHERE position IS NULL")
    assert await number_events(db) is not None
    async with db.read() as session:
        assert await session.scalar(text("SELECT count(*) FROM task_events WHERE position IS NULL")) == 0
