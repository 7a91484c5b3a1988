"""`stepwise demo load` creates docs/design.md §6's users and definitions, and a second run changes nothing."""

from __future__ import annotations

from sqlalchemy import func, select

from engine.storage.directory import DirectoryRepository
from engine.storage.models import definitions, user_groups, user_roles, users
from engine.storage.tasks import TaskRepository
from engine.transitions.engine import Engine
from server.demo import load_demo, load_demo_requests


async def counts(engine: Engine) -> tuple[int, ...]:
    async with engine.db.read() as session:
        return tuple(
            [
                int(await session.scalar(select(func.count()).select_from(table)) or 0)
                for table in (users, user_roles, user_groups, definitions)
            ]
        )


async def test_demo_load_is_idempotent(engine: Engine) -> None:
    created = await load_demo(engine)
    assert "user alice" in created and "definition expense_approval v1" in created
    assert "definition system_tasks_tour v1" in created and "definition purchase_request v1" in created
    after_first = await counts(engine)
    assert await load_demo(engine) == []
    assert await counts(engine) == after_first == (8, 7, 1, 3)
    async with engine.db.read() as session:
        people = {u.id: u for u in await DirectoryRepository(session).list_users()}
    assert people["alice"].roles == {"requester"} and people["bob"].roles == {"approver"}
    assert people["carol"].is_manager and people["dana"].is_admin and people["erin"].groups == {"finance"}


async def test_the_demo_has_an_agents_request_in_the_approvers_inbox(engine: Engine) -> None:
    await load_demo(engine)
    created = await load_demo_requests(engine)
    assert created[0] == "service account refund-bot" and created[1].startswith("approval request ")
    assert await load_demo_requests(engine) == []
    async with engine.db.read() as session:
        [task] = [t for t in await TaskRepository(session).find_by_role("approver") if t.type == "ACTION_APPROVAL"]
    assert task.input["requestedBy"] == "refund-bot" and task.input["arguments"]["orderId"] == "A-1042"
