"""Bulk-loaded tasks with a realistic spread, written with COPY straight into the migrated tables.

Not through the engine: a million tasks through transitions would take most of an hour. The rows
look like the engine's own (a deployed definition, instances, step instances, user and system
tasks) with skewed spreads: roles follow a Zipf-like popularity, most tasks are long completed,
a fifth are open, some are claimed by a user or routed to a group, some have due dates.

The viewer is ``bench_viewer``: role ``approver`` (about 7% of role-routed tasks), no group, not a
supervisor, the starter of a few instances, so every branch of the visibility SQL has rows to find.
"""

from __future__ import annotations

import json
import random
from bisect import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any

import asyncpg

from bench.common import sqlalchemy_url
from engine.catalog import default_registry
from engine.definitions.builder import WorkflowBuilder
from engine.storage.database import Database
from engine.transitions.engine import Engine

DEFINITION_KEY = "bench_inbox"
VIEWER = "bench_viewer"
VIEWER_ROLE = "approver"
ROLES = ["requester", "reviewer", "clerk", VIEWER_ROLE] + [f"role_{i:02d}" for i in range(16)]
GROUPS = [f"group_{i}" for i in range(8)]
USERS = 2000
TASKS_PER_INSTANCE = 4  # two steps of two tasks
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY_SECONDS = 86_400

TASK_COLUMNS = (
    "id", "workflow_instance_id", "step_instance_id", "token_id", "node_id", "kind", "type", "schema_type", "name",
    "title", "description", "signal_name", "assigned_role", "assigned_user_id", "assigned_group", "status",
    "priority", "input", "output", "draft", "revision", "created_at", "updated_at", "due_at", "expires_at",
    "completed_at", "completed_by", "attempt_count", "next_run_at", "lease_owner", "lease_expires_at", "error",
)  # fmt: skip
INSTANCE_COLUMNS = (
    "id", "definition_key", "definition_version", "status", "data", "tokens", "started_by", "started_at",
    "updated_at", "completed_at", "revision", "error",
)  # fmt: skip
STEP_COLUMNS = ("id", "workflow_instance_id", "milestone_key", "step_key", "created_at")


def inbox_definition() -> dict[str, Any]:
    b = WorkflowBuilder(DEFINITION_KEY, title="Bench inbox")
    with b.milestone("review", "Review"):
        with b.step("decide", "Decide"):
            b.user_task("approvalDecision", name="Approval Decision", schema_type="userTask.approval",
                        title="Approve {{ entityName }}", assign_to_role=VIEWER_ROLE, store_as="decision")  # fmt: skip
            b.system_task("notify", "echo", {"output": "{{ decision }}"}, store_as="notified")
        with b.step("wrap_up", "Wrap up"):
            b.user_task("archive", title="Archive {{ entityName }}", assign_to_role="clerk", store_as="archived")
    b.edge("approvalDecision", "notify").edge("notify", "archive")
    return b.to_json()


class Weighted:
    """Fast weighted choice: bisect on cumulative weights."""

    def __init__(self, items: Sequence[Any], weights: Sequence[float]) -> None:
        self.items = list(items)
        self.cumulative = list(accumulate(weights))
        self.total = self.cumulative[-1]

    def pick(self, rng: random.Random) -> Any:
        return self.items[bisect(self.cumulative, rng.random() * self.total)]


ROLE_PICK = Weighted(ROLES, [1 / (rank + 1) for rank in range(len(ROLES))])
USER_STATUS = Weighted(
    ["COMPLETED", "CANCELLED", "PENDING", "CLAIMED", "EXPIRED"], [0.72, 0.03, 0.15, 0.07, 0.03]
)  # fmt: skip
SYSTEM_STATUS = Weighted(["COMPLETED", "PENDING", "RUNNING", "WAITING", "FAILED"], [0.90, 0.03, 0.01, 0.02, 0.04])
ROUTING = Weighted(["role", "group", "user"], [0.75, 0.15, 0.10])
PRIORITY = Weighted([0, 1, 2, 3], [0.20, 0.60, 0.15, 0.05])


def user_id(number: int) -> str:
    return f"user_{number:05d}"


def time_ordered_id(moment: datetime, rng: random.Random) -> str:
    """A UUIDv7-shaped id for ``moment``, like ``engine.state.new_id`` gives at that time."""
    value = int(moment.timestamp() * 1000) << 80 | rng.getrandbits(80)
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@dataclass
class Loaded:
    tasks: int = 0
    instances: int = 0
    viewer_step_ids: list[str] = field(default_factory=list)  # steps holding a task the viewer may see


async def deploy_inbox_definition(dsn: str) -> None:
    """The inbox definition, deployed through the engine (the tasks below are bulk-loaded under it)."""
    engine = Engine(Database(sqlalchemy_url(dsn)), default_registry())
    try:
        await engine.deploy(inbox_definition(), VIEWER)
    finally:
        await engine.db.dispose()


async def seed_inbox(dsn: str, connection: asyncpg.Connection, tasks: int) -> Loaded:
    """What most benchmarks start from: the definition deployed, the directory and ``tasks`` tasks."""
    await deploy_inbox_definition(dsn)
    await load_directory(connection)
    loaded = Loaded()
    await load_tasks(connection, tasks, seed=1, loaded=loaded)
    return loaded


async def seed_inbox_alone(dsn: str, tasks: int) -> Loaded:
    """:func:`seed_inbox` on a connection of its own, for benchmarks that need none afterwards."""
    connection = await asyncpg.connect(dsn)
    try:
        return await seed_inbox(dsn, connection, tasks)
    finally:
        await connection.close()


async def load_directory(connection: asyncpg.Connection) -> None:
    """2,000 users, each with a role (same Zipf spread) and a third in a group; plus the viewer."""
    rng = random.Random(7)
    await connection.copy_records_to_table("roles", records=[(r, r.title()) for r in ROLES], columns=("key", "title"))
    await connection.copy_records_to_table("groups", records=[(g, g.title()) for g in GROUPS], columns=("key", "title"))
    users = [(user_id(n), f"User {n}", f"{user_id(n)}@example.com", NOW) for n in range(USERS)]
    users.append((VIEWER, "Bench Viewer", "viewer@example.com", NOW))
    await connection.copy_records_to_table("users", records=users, columns=("id", "name", "email", "created_at"))
    user_roles = [(user_id(n), ROLE_PICK.pick(rng)) for n in range(USERS)] + [(VIEWER, VIEWER_ROLE)]
    await connection.copy_records_to_table("user_roles", records=user_roles, columns=("user_id", "role_key"))
    user_groups = [(user_id(n), rng.choice(GROUPS)) for n in range(USERS) if n % 3 == 0]
    await connection.copy_records_to_table("user_groups", records=user_groups, columns=("user_id", "group_key"))


async def load_tasks(connection: asyncpg.Connection, count: int, seed: int, loaded: Loaded) -> None:
    """Append ``count`` tasks (``count / 4`` instances) spread over the past year."""
    rng = random.Random(seed)
    instances: list[tuple[Any, ...]] = []
    steps: list[tuple[Any, ...]] = []
    task_rows: list[tuple[Any, ...]] = []
    empty = json.dumps({})
    # A settled system: waiting and pending system tasks are due later (delays, retry back-offs), not
    # a backlog that the server's embedded worker would start working through while we measure.
    scheduled = datetime.now(UTC) + timedelta(days=30)
    for _ in range(count // TASKS_PER_INSTANCE):
        started = NOW - timedelta(seconds=rng.random() * 365 * DAY_SECONDS)
        instance_id = time_ordered_id(started, rng)
        starter = VIEWER if rng.random() < 0.0005 else user_id(rng.randrange(USERS))
        name = f"INV-{rng.randrange(10**6):06d}"
        viewer_sees = starter == VIEWER
        instance_open = False
        for step_number, step_key in enumerate(("decide", "wrap_up")):
            step_at = started + timedelta(hours=step_number * rng.uniform(1, 48))
            step_id = time_ordered_id(step_at, rng)
            steps.append((step_id, instance_id, "review", step_key, step_at))
            step_visible = False
            for _ in range(2):
                created = step_at + timedelta(seconds=rng.random() * 3600)
                system = rng.random() < 0.15
                role = group = assignee = None
                if system:
                    status = SYSTEM_STATUS.pick(rng)
                    node, kind, type_, schema, title = "notify", "SYSTEM", "ECHO", "echo", "Notify"
                else:
                    status = USER_STATUS.pick(rng)
                    routing = ROUTING.pick(rng)
                    if routing == "role":
                        role = ROLE_PICK.pick(rng)
                    elif routing == "group":
                        group = rng.choice(GROUPS)
                    else:
                        assignee = user_id(rng.randrange(USERS))
                    if status in ("CLAIMED", "COMPLETED") and assignee is None:
                        assignee = user_id(rng.randrange(USERS))
                    if step_key == "decide":
                        node, type_, schema, title = "approvalDecision", "APPROVAL", "userTask.approval", "Approve"
                    else:
                        node, type_, schema, title = "archive", "FORM", "userTask.form", "Archive"
                    kind = "USER"
                    step_visible = step_visible or role == VIEWER_ROLE
                done = status in ("COMPLETED", "CANCELLED", "FAILED", "EXPIRED")
                instance_open = instance_open or not done
                updated = created + timedelta(seconds=rng.random() * 3 * DAY_SECONDS) if done else created
                due = created + timedelta(days=rng.randint(1, 14)) if rng.random() < 0.4 else None
                output = json.dumps({"decision": "approved", "comment": "ok"}) if status == "COMPLETED" else "null"
                task_rows.append((
                    time_ordered_id(created, rng), instance_id, step_id, time_ordered_id(created, rng), node, kind,
                    type_, schema, title, f"{title} {name}", f"Review {name} for {starter}" if not system else None,
                    None, role, assignee, group, status, PRIORITY.pick(rng), empty, output, "null",
                    1 if done else 0, created, updated, due, None, updated if status == "COMPLETED" else None,
                    assignee if status == "COMPLETED" else None, 1 if system else 0,
                    scheduled if system and status in ("PENDING", "WAITING") else None, None, None,
                    "boom: HTTP 500" if status == "FAILED" else None,
                ))  # fmt: skip
            if step_visible or viewer_sees:
                loaded.viewer_step_ids.append(step_id)
        instances.append((
            instance_id, DEFINITION_KEY, 1, "WAITING_FOR_SIGNAL" if instance_open else "COMPLETED",
            json.dumps({"entityName": name, "amount": rng.randrange(10, 10_000)}), "[]", starter, started,
            started, None if instance_open else started + timedelta(days=3), 4, None,
        ))  # fmt: skip
    await connection.copy_records_to_table("workflow_instances", records=instances, columns=INSTANCE_COLUMNS)
    await connection.copy_records_to_table("step_instances", records=steps, columns=STEP_COLUMNS)
    await connection.copy_records_to_table("tasks", records=task_rows, columns=TASK_COLUMNS)
    # What autovacuum does after a bulk insert (PostgreSQL 13+ vacuums insert-only tables too): fresh
    # statistics, and a visibility map, so counts can be index-only scans as in a settled database.
    await connection.execute("VACUUM ANALYZE workflow_instances, step_instances, tasks")
    # And the load's dirty pages written out now: otherwise the checkpointer writes a million rows'
    # worth of pages (spread over minutes) while the requests are being timed.
    await connection.execute("CHECKPOINT")
    loaded.tasks += len(task_rows)
    loaded.instances += len(instances)


async def task_spread(connection: asyncpg.Connection) -> str:
    """One line on what was loaded: the viewer's role's open tasks and the status spread."""
    open_for_role = await connection.fetchval(
        "SELECT count(*) FROM tasks WHERE assigned_role = $1 AND status NOT IN ('COMPLETED', 'CANCELLED')",
        VIEWER_ROLE,
    )
    rows = await connection.fetch("SELECT status, count(*) AS n FROM tasks GROUP BY status ORDER BY n DESC")
    total = sum(r["n"] for r in rows)
    spread = " ".join(f"{r['status']}={100 * r['n'] / total:.0f}%" for r in rows)
    return f"{total} tasks; {spread}; open tasks routed to role {VIEWER_ROLE!r}: {open_for_role}"
