"""A transition's task updates and new rows wait for a later statement
(engine/storage/deferred.py): what a transition then writes is what it would have written at once,
and a lost race still fails it without a trace."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from engine.errors import ConflictError
from engine.state import TaskEventKind, TaskStatus
from engine.storage.database import Database
from engine.storage.instances import InstanceRepository
from engine.transitions.engine import Engine
from engine.transitions.transition import Transition
from tests.transitions.test_durability import approval_then_archive, events_of, tasks_of


async def test_a_task_changed_twice_in_one_transition_is_written_once_with_both(engine: Engine) -> None:
    await engine.deploy(approval_then_archive())
    instance = await engine.start("approval", {}, "alice")

    async def claim_then_complete(transition: Transition) -> None:
        task = await transition.open_task_at("approval")
        claimed = await transition.update_task(task, TaskEventKind.CLAIMED, assigned_user_id="bob",
                                               status=TaskStatus.CLAIMED)  # fmt: skip
        await transition.complete(claimed, {"decision": "approved"})

    await engine.transition(instance.id, "bob", claim_then_complete)
    approval, archive = await tasks_of(engine, instance.id)
    assert (approval.status, approval.assigned_user_id, approval.revision) == (TaskStatus.COMPLETED, "bob", 2)
    assert approval.output == {"decision": "approved"} and archive.status is TaskStatus.PENDING
    kinds = [(e.kind, e.task_id) for e in await events_of(engine, instance.id)]
    assert kinds[1:] == [(TaskEventKind.CLAIMED, approval.id), (TaskEventKind.COMPLETED, approval.id),
                         (TaskEventKind.CREATED, archive.id)]  # fmt: skip


async def test_a_task_created_and_changed_in_one_transition_is_inserted_changed(engine: Engine) -> None:
    await engine.deploy(approval_then_archive())
    instance = await engine.start("approval", {}, "alice")

    async def complete_then_claim_the_next(transition: Transition) -> None:
        await transition.complete(await transition.open_task_at("approval"), {"decision": "approved"})
        [waiting] = [token for token in transition.tokens if token.node_id == "archive"]
        archive = await transition.open_task_at("archive")
        assert archive.id == waiting.task_id and archive.revision == 0
        await transition.update_task(archive, TaskEventKind.CLAIMED, assigned_user_id="carol",
                                     status=TaskStatus.CLAIMED)  # fmt: skip

    await engine.transition(instance.id, "carol", complete_then_claim_the_next)
    _, archive = await tasks_of(engine, instance.id)
    assert (archive.status, archive.assigned_user_id, archive.revision) == (TaskStatus.CLAIMED, "carol", 1)


async def test_a_stale_revision_in_one_transition_is_a_conflict_at_once(engine: Engine) -> None:
    await engine.deploy(approval_then_archive())
    instance = await engine.start("approval", {}, "alice")

    async def write_from_a_stale_copy(transition: Transition) -> None:
        task = await transition.open_task_at("approval")
        await transition.update_task(task, TaskEventKind.UPDATED, draft={"a": 1})
        await transition.update_task(task, TaskEventKind.UPDATED, draft={"b": 2})  # revision 0 again

    before = await tasks_of(engine, instance.id)
    with pytest.raises(ConflictError):
        await engine.transition(instance.id, "bob", write_from_a_stale_copy)
    assert await tasks_of(engine, instance.id) == before


@pytest.mark.postgres_only
async def test_a_task_changed_by_someone_else_meanwhile_fails_the_whole_transition(
    engine: Engine, db: Database
) -> None:
    """The task row is not locked with the instance: a change that lands between the transition's
    read and its last statement is caught by the revision, and nothing of the transition stays."""
    await engine.deploy(approval_then_archive())
    instance = await engine.start("approval", {}, "alice")
    engine.remembered.forget([instance.id])  # from a read (tests/transitions/test_remembered.py: from memory)
    events_before = await events_of(engine, instance.id)

    async def complete_after_a_meddler(transition: Transition) -> None:
        task = await transition.open_task_at("approval")
        async with db.engine.begin() as other:  # another connection, outside the instance's lock
            await other.execute(text("UPDATE tasks SET revision = revision + 1, title = 'meddled' WHERE id = :id"),
                                {"id": task.id})  # fmt: skip
        await transition.complete(task, {"decision": "approved"})

    with pytest.raises(ConflictError, match="changed by someone else"):
        await engine.transition(instance.id, "bob", complete_after_a_meddler)
    [task] = await tasks_of(engine, instance.id)
    assert (task.title, task.status, task.revision) == ("meddled", TaskStatus.PENDING, 1)
    assert await events_of(engine, instance.id) == events_before
    async with db.read() as session:
        after = await InstanceRepository(session).get(instance.id)
    assert after == instance
