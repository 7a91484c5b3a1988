"""``stepwise demo load``: the demo users and definitions of docs/design.md §6. Loading twice changes nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import (
    REQUEST_DEFINITION_KEY,
    SERVICE_ROLE,
    ApprovalRequest,
    ApprovalRequestService,
    DirectoryRepository,
    Engine,
    Priority,
    VisibilityService,
)

DEFINITIONS_DIR = Path(__file__).parent / "demo_definitions"


@dataclass(frozen=True)
class DemoUser:
    id: str
    name: str
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    @property
    def email(self) -> str:
        return f"{self.id}@example.com"


DEMO_USERS = (
    DemoUser("alice", "Alice Adams", roles=("requester",)),
    DemoUser("bob", "Bob Brown", roles=("approver",)),
    DemoUser("carol", "Carol Clark", roles=("manager",)),
    DemoUser("dana", "Dana Diaz", roles=("admin",)),
    DemoUser("erin", "Erin Evans", groups=("finance",)),
    # The purchase request's three approvers (two must approve; whichever of them requests is excluded).
    DemoUser("grace", "Grace Green", roles=("purchase_approver",)),
    DemoUser("henry", "Henry Hill", roles=("purchase_approver",)),
    DemoUser("ivan", "Ivan Irwin", roles=("purchase_approver",)),
)


def demo_definitions() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(DEFINITIONS_DIR.glob("*.json"))]


async def load_demo(engine: Engine) -> list[str]:
    """Create what is missing; returns a line per change (empty when everything was there)."""
    changes: list[str] = []
    async with engine.db.transaction() as session:
        directory = DirectoryRepository(session)
        for user in DEMO_USERS:
            if await directory.save_user(user.id, user.name, user.email, user.roles, user.groups, engine.clock.now()):
                changes.append(f"user {user.id}")
    for document in demo_definitions():
        deployed, created = await engine.deploy(document, deployed_by="dana")
        if created:
            changes.append(f"definition {deployed.key} v{deployed.version}")
    return changes


DEMO_AGENT = DemoUser("refund-bot", "Refund bot (AI agent)", roles=(SERVICE_ROLE,))
DEMO_REQUEST = ApprovalRequest(
    action="refund",
    arguments={"orderId": "A-1042", "amount": 180.0, "reason": "parcel arrived damaged"},
    arguments_schema={
        "type": "object",
        "properties": {
            "orderId": {"type": "string"},
            "amount": {"type": "number", "exclusiveMinimum": 0, "maximum": 500},
            "reason": {"type": "string"},
        },
        "required": ["orderId", "amount"],
        "additionalProperties": False,
    },
    summary="Refund 180.00 on order A-1042: the customer's parcel arrived damaged (photo in the ticket).",
    assign_role="approver",
    priority=Priority.HIGH,
    due_in="PT4H",
    idempotency_key="demo-refund-A-1042",
)


async def load_demo_requests(engine: Engine) -> list[str]:
    """An automated caller's request in the approvers' inbox: the service account ``refund-bot`` asks to
    refund an order (an action approval, docs/approvals.md). Not part of :func:`load_demo`, which the
    tests load for every app: the CLI's ``demo load`` runs both. The request's key makes a second run
    find it rather than ask again."""
    changes: list[str] = []
    async with engine.db.transaction() as session:
        agent = DEMO_AGENT
        if await DirectoryRepository(session).save_user(
            agent.id, agent.name, None, agent.roles, (), engine.clock.now()
        ):
            changes.append(f"service account {agent.id}")
    requester = await engine.user(DEMO_AGENT.id)
    assert requester is not None
    service = ApprovalRequestService(engine, VisibilityService(engine))
    await service.ensure_definition()
    key = f"{requester.id}:{DEMO_REQUEST.idempotency_key}"
    existing = await engine.correlated(REQUEST_DEFINITION_KEY, key)
    task = (await service.request(requester, DEMO_REQUEST)).task
    if existing is None:
        changes.append(f"approval request {task.id} ({DEMO_REQUEST.action}, from {requester.id})")
    return changes
