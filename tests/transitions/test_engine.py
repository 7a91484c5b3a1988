"""The engine (engine.transitions.engine) end to end, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from engine.definitions.builder import WorkflowBuilder
from engine.errors import ConflictError, InvalidStateError, NotFoundError
from engine.state import InstanceStatus, Task, TaskEventKind, TaskKind, TaskStatus
from engine.storage.instances import InstanceRepository
from engine.storage.task_events import TaskEventRepository
from engine.storage.tasks import TaskRepository
from engine.transitions.engine import Engine


def approval_workflow() -> WorkflowBuilder:
    b = WorkflowBuilder("approval", title="Approval")
    with b.milestone("review", "Review"):
        with b.step("decide", "Decide"):
            b.user_task(
                "approvalDecision",
                name="Approval Decision",
                signal="approval_signal",
                schema_type="userTask.approval",
                title="Approve {{ entityType }}: {{ entityName }}",
                description="Review {{ entityName }} for {{ startedBy.id }}",
                assign_to_role="approver",
                store_as="approvalResult",
                priority="high",
            )
        with b.step("wrap_up", "Wrap up"):
            b.user_task("archive", title="Archive {{ entityName }}", assign_to_role="clerk", store_as="archived")
    b.edge("approvalDecision", "archive")
    return b


async def tasks_of(engine: Engine, instance_id: str) -> list[Task]:
    async with engine.db.read() as session:
        return await TaskRepository(session).find_by_instance(instance_id)


async def test_seed_approval_example_end_to_end(engine: Engine) -> None:
    await engine.deploy(approval_workflow().build(), "dana")
    instance = await engine.start("approval", {"entityType": "Invoice", "entityName": "INV-7"}, "alice")
    assert instance.status is InstanceStatus.WAITING_FOR_SIGNAL

    [task] = await tasks_of(engine, instance.id)
    assert task.title == "Approve Invoice: INV-7"
    assert task.description == "Review INV-7 for alice"
    assert task.assigned_role == "approver"
    assert task.priority.value == "high"
    assert task.kind is TaskKind.USER and task.type == "APPROVAL" and task.schema_type == "userTask.approval"
    assert task.signal_name == "approval_signal"
    assert task.status is TaskStatus.PENDING

    payload = {"decision": "approved", "comment": "fine"}
    instance = await engine.send_signal(instance.id, "approvalDecision", payload, "bob")
    assert instance.data["approvalResult"] == payload
    assert instance.status is InstanceStatus.WAITING_FOR_SIGNAL
    first, second = await tasks_of(engine, instance.id)
    assert first.status is TaskStatus.COMPLETED and first.completed_by == "bob" and first.output == payload
    assert second.node_id == "archive" and second.title == "Archive INV-7" and second.status is TaskStatus.PENDING

    instance = await engine.send_signal(instance.id, "archive", {"box": 4}, "carol")
    assert instance.status is InstanceStatus.COMPLETED
    assert instance.completed_at is not None
    assert instance.data == {
        "entityType": "Invoice",
        "entityName": "INV-7",
        "approvalResult": payload,
        "archived": {"box": 4},
    }
    async with engine.db.read() as session:
        events = await TaskEventRepository(session).for_instance(instance.id)
    assert [(e.kind, e.actor_id) for e in events] == [
        (TaskEventKind.CREATED, "alice"),
        (TaskEventKind.COMPLETED, "bob"),
        (TaskEventKind.CREATED, "bob"),
        (TaskEventKind.COMPLETED, "carol"),
    ]


async def test_signal_errors_change_nothing(engine: Engine) -> None:
    await engine.deploy(approval_workflow().build())
    instance = await engine.start("approval", {"entityName": "X"}, "alice")
    await engine.send_signal(instance.id, "approvalDecision", {"decision": "approved"}, "bob")
    await engine.sequencer.idle()
    async with engine.db.read() as session:
        before = await InstanceRepository(session).get(instance.id)
        events_before = await TaskEventRepository(session).for_instance(instance.id)

    with pytest.raises(ConflictError, match="already completed"):
        await engine.send_signal(instance.id, "approvalDecision", {"decision": "rejected"}, "bob")
    with pytest.raises(NotFoundError, match="no node 'nope'"):
        await engine.send_signal(instance.id, "nope", {}, "bob")
    with pytest.raises(NotFoundError):
        await engine.send_signal("00000000-0000-0000-0000-000000000000", "archive", {}, "bob")

    async with engine.db.read() as session:
        assert await InstanceRepository(session).get(instance.id) == before
        assert await TaskEventRepository(session).for_instance(instance.id) == events_before


async def test_missing_template_variables_render_empty(engine: Engine) -> None:
    await engine.deploy(approval_workflow().build())
    instance = await engine.start("approval", {}, "alice")
    [task] = await tasks_of(engine, instance.id)
    assert task.title == "Approve : "


async def test_cancel_cancels_open_tasks_and_the_instance(engine: Engine) -> None:
    await engine.deploy(approval_workflow().build())
    instance = await engine.start("approval", {}, "alice")
    cancelled = await engine.cancel(instance.id, "carol", "no longer needed")
    assert cancelled.status is InstanceStatus.CANCELLED
    assert cancelled.error == "no longer needed"
    [task] = await tasks_of(engine, instance.id)
    assert task.status is TaskStatus.CANCELLED
    with pytest.raises(InvalidStateError):
        await engine.cancel(instance.id, "carol")
    with pytest.raises(InvalidStateError):
        await engine.send_signal(instance.id, "approvalDecision", {}, "bob")
