"""What the approval-policy tests share (tests/tasks/test_policies.py, test_separation_and_delegation.py):
the directory they run against, a definition with a policy, and how an attempt's outcome is read."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from engine.clock import ManualClock
from engine.definitions.builder import WorkflowBuilder
from engine.errors import (
    SeparationOfDutiesError,
    StepwiseError,
)
from engine.state import Task, TaskStatus, User
from engine.storage.database import Database
from engine.storage.directory import DirectoryRepository
from engine.storage.models import task_events
from engine.storage.tasks import TaskRepository

USERS = {
    "alice": ({"requester", "approver"}, set()),
    "bob": ({"approver"}, set()),
    "carol": ({"approver", "manager"}, set()),
    "dan": ({"approver"}, set()),
    "dana": ({"admin", "approver"}, set()),
    "erin": (set(), {"finance"}),
    "frank": ({"clerk"}, set()),
}
OK, SOD, FORBIDDEN, INVALID, HIDDEN = "ok", "SEPARATION_OF_DUTIES", "FORBIDDEN", "INVALID_STATE", "NOT_FOUND"


async def add_users(db: Database, clock: ManualClock) -> dict[str, User]:
    async with db.transaction() as session:
        directory = DirectoryRepository(session)
        for user_id, (roles, groups) in USERS.items():
            await directory.save_user(user_id, user_id.title(), f"{user_id}@example.com", roles, groups, clock.now())
        return {user.id: user for user in await directory.list_users()}


def quorum_definition(key: str, approval: dict[str, Any], excludes: list[str] | None = None) -> dict[str, Any]:
    b = WorkflowBuilder(key)
    b.user_task("decision", schema_type="userTask.approval", approval=approval, excludes=excludes,
                store_as="result")  # fmt: skip
    b.user_task("archive", assign_to_role="clerk", store_as="archived")
    b.edge("decision", "archive")
    return b.to_json()


async def open_task(db: Database, instance_id: str, node_id: str = "decision") -> Task:
    async with db.read() as session:
        tasks = await TaskRepository(session).find_by_instance(instance_id)
    return next(t for t in tasks if t.node_id == node_id)


async def attempt(work: Any) -> str:
    try:
        await work
    except SeparationOfDutiesError:
        return SOD
    except StepwiseError as exc:
        return exc.code
    return OK


async def snapshot(db: Database) -> list[Any]:
    """Every task and event as stored, to compare before and after a refusal."""
    async with db.read() as session:
        tasks = await TaskRepository(session).find_by_status(TaskStatus.PENDING)
        tasks += await TaskRepository(session).find_by_status(TaskStatus.CLAIMED)
        tasks += await TaskRepository(session).find_by_status(TaskStatus.COMPLETED)
        events = await session.scalar(select(func.count()).select_from(task_events))
    return [sorted((t.id, t.revision, t.status, t.assigned_user_id, t.delegated_to) for t in tasks), events]


TWO_OF_ROLE = {"required": 2, "of": {"role": "approver"}}
