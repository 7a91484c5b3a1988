"""A transition that starts from what its process remembered of the instance (engine.transitions.remembered):
one statement instead of two, and never an outcome a fresh read would not give."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import text

from engine.catalog import default_registry
from engine.definitions.builder import WorkflowBuilder
from engine.errors import ConflictError
from engine.state import InstanceStatus, TaskEventKind, TaskStatus
from engine.storage.database import Database
from engine.storage.instances import InstanceRepository, LockedInstance
from engine.storage.tasks import TaskRepository
from engine.transitions.engine import Engine
from engine.transitions.remembered import RememberedInstances
from engine.transitions.transition import Transition
from engine.workers.executor import SystemTaskContext
from tests.transitions.test_durability import approval_then_archive, contract, events_of, tasks_of
from tests.transitions.test_transition_costs import NUMBERING, statements
from tests.workers.test_worker import make_worker

pytestmark = pytest.mark.fast_paths  # what is remembered is the subject here


async def fresh_read(db: Database, instance_id: str) -> LockedInstance:
    async with db.transition_connection(autocommit=True) as connection:
        found = await InstanceRepository(connection).lock_for_transition(instance_id)
    assert found is not None
    return found


async def remembered(engine: Engine, instance_id: str) -> LockedInstance | None:
    state = engine.remembered.take(instance_id)
    if state is not None:
        engine.remembered.keep(state)
    return state


@pytest.mark.postgres_only
async def test_what_a_process_remembers_is_what_a_read_returns(engine: Engine, db: Database) -> None:
    """Through a fork, a parked join and a condition: after every transition the remembered state
    equals the database's, and the next signal sends one statement, not a read first."""
    await engine.deploy(contract())
    instance = await engine.start("contract", {"entityName": "ACME"}, "alice")
    assert await remembered(engine, instance.id) == await fresh_read(db, instance.id)
    for node, payload in [("draft", {"text": "v1"}), ("legal", {"ok": True}), ("finance", {"ok": True}),
                          ("sign", {"signed": True})]:  # fmt: skip
        await engine.sequencer.idle()  # the last transition's round, before counting this one's statements
        async with statements(db) as sent:
            instance = await engine.send_signal(instance.id, node, payload, "carol")
            await engine.sequencer.idle()
        last, numbering = sent.statements
        assert "UPDATE workflow_instances" in last and "FROM workflow_instances LEFT OUTER JOIN" not in last
        assert numbering == NUMBERING
        assert await remembered(engine, instance.id) == await fresh_read(db, instance.id), node
    assert [task.node_id for task in (await fresh_read(db, instance.id)).open_tasks] == ["archive"]
    finished = await engine.send_signal(instance.id, "archive", {"box": 1}, "carol")
    assert finished.status is InstanceStatus.COMPLETED
    assert await remembered(engine, instance.id) is None  # an ended instance is not kept


@pytest.mark.postgres_only
async def test_another_process_moving_the_instance_meanwhile_gives_what_a_read_would(
    engine: Engine, db: Database
) -> None:
    other = Engine(db, default_registry())  # another process: its own memory, the same database
    await engine.deploy(approval_then_archive())
    # This process remembers the approval as the open task; the other process completed it since.
    moved = await engine.start("approval", {}, "alice")
    await other.send_signal(moved.id, "approval", {"decision": "approved"}, "bob")
    await other.sequencer.idle()
    events = await events_of(engine, moved.id)
    # From memory the archive task does not exist yet ("not waiting"): from a read it does.
    finished = await engine.send_signal(moved.id, "archive", {"box": 1}, "carol")
    assert finished.status is InstanceStatus.COMPLETED
    assert finished.data["approvalResult"] == {"decision": "approved"}
    assert [(e.kind, e.actor_id) for e in await events_of(engine, moved.id)] == [
        *[(e.kind, e.actor_id) for e in events],
        (TaskEventKind.COMPLETED, "carol"),
    ]
    # From memory the approval is still open: the attempt writes nothing and the read finds the conflict.
    again = await engine.start("approval", {}, "alice")
    await other.send_signal(again.id, "approval", {"decision": "approved"}, "bob")
    await other.sequencer.idle()
    events = await events_of(engine, again.id)
    with pytest.raises(ConflictError, match="already completed"):
        await engine.send_signal(again.id, "approval", {"decision": "rejected"}, "bob")
    assert await events_of(engine, again.id) == events


@pytest.mark.postgres_only
async def test_a_task_changed_outside_any_transition_is_caught_by_the_last_statement(
    engine: Engine, db: Database
) -> None:
    """A worker's claim changes a task without moving its instance's revision. A transition from
    memory that does not touch that task still must not write over a state it never saw: its last
    statement checks the open tasks, writes nothing, and the transition runs again from a read."""
    await engine.deploy(contract())
    instance = await engine.start("contract", {"entityName": "ACME"}, "alice")
    instance = await engine.send_signal(instance.id, "draft", {"text": "v1"}, "alice")
    [finance] = [t for t in await tasks_of(engine, instance.id) if t.node_id == "finance"]
    async with db.transaction() as session:  # as LeaseRepository.claim_runnable claims, outside a transition
        assert await TaskRepository(session).update(finance.id, finance.revision, {"assigned_user_id": "bob"})
    await engine.sequencer.idle()
    async with statements(db) as sent:
        await engine.send_signal(instance.id, "legal", {"ok": True}, "carol")
        await engine.sequencer.idle()
    failed, read, last, numbering = sent.statements  # the attempt from memory, then from a read
    assert numbering == NUMBERING
    assert "UPDATE workflow_instances" in failed and "FROM workflow_instances LEFT OUTER JOIN" in read
    state = await remembered(engine, instance.id)
    assert state == await fresh_read(db, instance.id)
    assert state is not None and [(t.node_id, t.assigned_user_id, t.revision) for t in state.open_tasks] == [
        ("finance", "bob", 1)
    ]


@pytest.mark.postgres_only
async def test_a_change_landing_during_a_transition_from_memory_reruns_it_from_a_read(
    engine: Engine, db: Database
) -> None:
    await engine.deploy(approval_then_archive())
    instance = await engine.start("approval", {}, "alice")
    meddled = 0

    async def complete_after_a_meddler(transition: Transition) -> None:
        nonlocal meddled
        task = await transition.open_task_at("approval")
        if not meddled:  # someone else changes the task once, between this process's memory and its write
            async with db.engine.begin() as other:
                await other.execute(text("UPDATE tasks SET revision = revision + 1, title = 'meddled' WHERE id = :id"),
                                    {"id": task.id})  # fmt: skip
            meddled += 1
        await transition.complete(task, {"decision": "approved"})

    await engine.transition(instance.id, "bob", complete_after_a_meddler)
    [approval, archive] = await tasks_of(engine, instance.id)
    assert (approval.title, approval.status, approval.revision) == ("meddled", TaskStatus.COMPLETED, 2)
    assert archive.status is TaskStatus.PENDING and meddled == 1


@pytest.mark.postgres_only
async def test_a_worker_records_an_attempt_in_one_statement(engine: Engine, db: Database) -> None:
    """The worker claims outside a transition, so the engine forgets those instances: recording the
    attempt (the attempt row, the task, the next task) is then one read and one last statement,
    not a first attempt from stale memory that writes nothing."""
    builder = WorkflowBuilder("echoes")
    builder.system_task("prepare", "echo", {"output": {"who": "{{ startedBy.id }}"}}, store_as="prepared")
    builder.user_task("check", title="Check", assign_to_role="approver")
    builder.edge("prepare", "check")
    await engine.deploy(builder.build())
    instance = await engine.start("echoes", {}, "alice")
    contexts: list[SystemTaskContext] = []
    async with statements(db) as sent:
        assert await make_worker(engine, contexts).run_once() == 1
    for context in contexts:
        await context.aclose()
    assert len([s for s in sent.statements if "UPDATE workflow_instances" in s]) == 1
    assert [c for c in sent.commands if c.startswith("COMMIT")] == ["COMMIT;"]  # the claim's; the rest reads
    [prepare, check] = await tasks_of(engine, instance.id)
    assert (prepare.status, prepare.output, check.status) == (
        TaskStatus.COMPLETED,
        {"who": "alice"},
        TaskStatus.PENDING,
    )


async def test_sqlite_transitions_always_read(engine: Engine, db: Database) -> None:
    """Only where a transition's last statement can check what it started from; SQLite's reads are
    local and run in the transaction that writes."""
    await engine.deploy(approval_then_archive())
    instance = await engine.start("approval", {}, "alice")
    assert (len(engine.remembered) == 1) is (db.dialect == "postgresql")
    async with statements(db) as sent:
        await engine.send_signal(instance.id, "approval", {"decision": "approved"}, "bob")
    reads = [s for s in sent.statements if "FROM workflow_instances LEFT OUTER JOIN" in s]
    assert len(reads) == (0 if db.dialect == "postgresql" else 1)


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_entries_last_seconds_and_at_most_capacity(engine: Engine) -> None:
    await engine.deploy(approval_then_archive())
    running = [await engine.start("approval", {}, "alice") for _ in range(3)]
    states = {i.id: LockedInstance(i, {}, []) for i in running}
    ticks = Ticks()
    memory = RememberedInstances(capacity=2, seconds=5.0, clock=ticks)
    for state in states.values():
        memory.keep(state)
        ticks.now += 1
    first, second, third = running
    assert len(memory) == 2 and memory.take(first.id) is None  # the oldest made room
    assert memory.take(second.id) == states[second.id]
    assert memory.take(second.id) is None  # taken: one transition starts from it, not two
    ticks.now += 5.5  # the third was kept 6.5 s ago
    assert memory.take(third.id) is None
    memory.keep(states[first.id])
    memory.forget([first.id])
    assert memory.take(first.id) is None
    memory.keep(LockedInstance(replace(first, status=InstanceStatus.COMPLETED), {}, []))
    assert len(memory) == 0
    disabled = RememberedInstances(capacity=0)
    disabled.keep(states[first.id])
    assert disabled.take(first.id) is None
