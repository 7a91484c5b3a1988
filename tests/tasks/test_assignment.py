"""Dynamic assignment (`assignWith`): a registered executor chooses the assignee at run time."""

from __future__ import annotations

from dataclasses import dataclass

from engine.catalog import default_registry
from engine.clock import ManualClock
from engine.definitions.builder import WorkflowBuilder
from engine.definitions.registry import Assignment, NodeContext
from engine.storage.database import Database
from engine.storage.tasks import TaskRepository
from engine.transitions.engine import Engine


@dataclass(frozen=True)
class ManagerOf:
    """Assigns to the manager of whoever the data names as submitter."""

    name: str = "managerOf"

    async def assign(self, context: NodeContext) -> Assignment:
        managers = {"alice": "carol", "erin": "dana"}
        return Assignment(user_id=managers.get(str(context.variables.get("submitter")), "dana"))


async def test_assign_with_a_registered_executor(db: Database, clock: ManualClock) -> None:
    registry = default_registry()
    registry.register_assigner(ManagerOf())
    engine = Engine(db, registry, clock=clock)
    builder = WorkflowBuilder("review")
    builder.user_task("review", title="Review for {{ submitter }}", assign_with="managerOf", store_as="review")
    await engine.deploy(builder.build())
    for submitter, manager in (("alice", "carol"), ("erin", "dana")):
        instance = await engine.start("review", {"submitter": submitter}, submitter)
        async with db.read() as session:
            [task] = await TaskRepository(session).find_by_instance(instance.id)
        assert task.assigned_user_id == manager and task.assigned_role is None
        assert task.title == f"Review for {submitter}"
