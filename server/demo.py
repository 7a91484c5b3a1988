"""``stepwise demo load``: the demo users and definitions of docs/design.md §6. Loading twice changes nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import DirectoryRepository, Engine

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
