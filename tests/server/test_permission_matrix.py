"""docs/design.md §5 cell by cell through the real HTTP app: every action × admin, manager, assignee,
candidate, starter and stranger — and docs/permissions.md, the one statement of the table, says the same thing.

Every task here belongs to role ``approver`` in an instance alice started, so the columns never
overlap: dana (admin), carol (manager), erin after carol's ``assignTask`` (assignee: no role, no
group, only the assignment), bob (candidate, on an unassigned task), alice (starter), and erin
again where nothing was assigned to her (stranger). The retry row's task is the exception: a failed
system task in an instance alice started, which names no role at all. Each action's request is in
tests/server/permission_actions.py, the world it runs in in permission_scenes.py.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from engine.transitions.engine import Engine
from server.settings import Settings
from tests.server.conftest import GraphQL
from tests.server.permission_actions import ACTIONS
from tests.server.permission_scenes import FORBIDDEN, HIDDEN, HOLDS, NA, OK, Scene

ROLES = ("admin", "manager", "assignee", "candidate", "starter", "stranger")
#                               admin      manager    assignee   candidate  starter    stranger
WORK = (FORBIDDEN, FORBIDDEN, OK, OK, FORBIDDEN, HIDDEN)
MATRIX: dict[str, tuple[str, ...]] = {
    "see a task, its messages and documents": (OK, OK, OK, OK, OK, HIDDEN),
    "read a task's and its instance's history": (OK, OK, OK, OK, OK, HIDDEN),
    "claim": (OK, OK, HOLDS, OK, FORBIDDEN, HIDDEN),
    "assign to someone else": (OK, OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, HIDDEN),
    "unassign": (OK, OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, HIDDEN),
    "save progress": WORK,
    "submit": WORK,
    "approve": WORK,
    "reject": WORK,
    "upload documents": WORK,
    "download a document": (OK, OK, OK, OK, OK, HIDDEN),
    "post a message": (OK, OK, OK, OK, OK, HIDDEN),
    "start a workflow": (OK, OK, OK, OK, OK, OK),
    "deploy a definition": (OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "send a raw signal": (OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, HIDDEN),
    "correlate a signal by business key": (OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, HIDDEN),
    "cancel a workflow": (OK, OK, FORBIDDEN, FORBIDDEN, OK, HIDDEN),
    "retry a failed system task": (OK, FORBIDDEN, NA, NA, FORBIDDEN, HIDDEN),
    "delegate": (FORBIDDEN, FORBIDDEN, OK, FORBIDDEN, FORBIDDEN, HIDDEN),
    "resolve a delegated task": (FORBIDDEN, FORBIDDEN, FORBIDDEN, OK, FORBIDDEN, HIDDEN),
    "claim many (claimTasks)": (OK, OK, HOLDS, OK, FORBIDDEN, HIDDEN),
    "assign many to someone else (assignTasks)": (OK, OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, HIDDEN),
    "approve or reject many (decideTasks)": WORK,
    "list the users": (OK, OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "sign in as another user (devSignIn)": (FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "manage webhooks": (OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "read webhooks and their delivery logs": (OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "redeliver a webhook delivery": (OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "decide an action approval": WORK,
    "request approval for an action": (OK, OK, OK, OK, OK, OK),
    "await an action approval's decision": (OK, OK, OK, OK, OK, HIDDEN),
}

CELLS = [(action, role, MATRIX[action][i]) for action in MATRIX for i, role in enumerate(ROLES)]


@pytest.mark.parametrize(("action", "role", "expected"), CELLS, ids=[f"{a}-{r}" for a, r, _ in CELLS])
async def test_cell(
    action: str, role: str, expected: str, gql: GraphQL, client: httpx.AsyncClient, settings: Settings,
    app_engine: Engine,
) -> None:  # fmt: skip
    scene = Scene(gql, client, settings, app_engine, role)
    assert await ACTIONS[action](scene) == expected


REPOSITORY = Path(__file__).parents[2]
TABLE_HEADER = "| action | admin | manager | assignee | candidate | starter | stranger |"


def test_the_documented_table_is_this_matrix() -> None:
    documented = (REPOSITORY / "docs" / "permissions.md").read_text()
    assert TABLE_HEADER in documented
    for action, cells in MATRIX.items():
        assert f"| {action} | {' | '.join(cells)} |" in documented, action
    assert set(ACTIONS) == set(MATRIX)
    # One statement of the table: a copy elsewhere would drift from the one this test checks.
    assert TABLE_HEADER not in (REPOSITORY / "README.md").read_text()
