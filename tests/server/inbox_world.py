"""The inbox tests' world (tests/server/test_inbox.py, test_inbox_paging.py): eight tasks whose creation
times, due dates, priorities and update times the tests set themselves (the clock is manual), the table
that says what each user may see, and the helpers that read a page of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from engine.clock import ManualClock
from engine.storage.directory import DirectoryRepository
from engine.transitions.engine import Engine
from tests.server.conftest import GraphQL

TASKS = """query($filter: TaskFilter, $order: TaskOrder, $first: Int, $after: String) {
  tasks(filter: $filter, orderBy: $order, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { cursor node { id nodeId status priority dueAt createdAt updatedAt } } } }"""
CLAIM = "mutation($id: ID!) { claimTask(input: {taskId: $id}) { __typename } }"
APPROVE = 'mutation($id: ID!) { approveTask(input: {taskId: $id, comment: "ok"}) { __typename } }'
CANCEL = "mutation($id: ID!) { cancelWorkflow(input: {workflowInstanceId: $id}) { __typename } }"

INF = float("inf")


@dataclass(frozen=True)
class Spec:
    """One task of the world: its node, who starts its instance, and the sort values the test expects."""

    node: dict[str, Any]
    starter: str
    created: int  # minutes after the clock's start
    due: float  # minutes after the clock's start; INF: no due date
    priority: int  # LOW 0 … URGENT 3
    updated: int
    open: bool = True


def user_task(**fields: Any) -> dict[str, Any]:
    return {"type": "userTask", "schemaType": "userTask.approval", **fields}


DAY = 24 * 60
WORLD: dict[str, Spec] = {
    "low": Spec(user_task(assignToRole="approver", priority="low", dueIn="PT4H"), "alice", 0, 240, 0, 10),
    "urgent": Spec(user_task(assignToRole="approver", priority="urgent", dueIn="P2D"), "carol", 1, 2 * DAY + 1, 3, 1),
    "finance": Spec(user_task(assignToGroup="finance", priority="high"), "carol", 2, INF, 2, 2),
    "for_bob": Spec(user_task(assignToUser="bob", dueIn="P1D"), "dana", 3, DAY + 3, 1, 3),
    "request": Spec(user_task(assignToRole="requester", schemaType="userTask.form"), "carol", 4, INF, 1, 4),
    "echo": Spec({"type": "echo", "config": {"output": {"said": "hi"}}}, "alice", 4, INF, 1, 4),
    "done": Spec(user_task(assignToRole="approver"), "alice", 5, INF, 1, 11, open=False),
    "cancelled": Spec(user_task(assignToRole="approver"), "alice", 6, INF, 1, 12, open=False),
}  # fmt: skip
OPEN = [label for label, spec in WORLD.items() if spec.open]
# Who sees what (docs/design.md §5): role holders, group members, the assignee, the instance's starter.
VISIBLE = {
    "alice": {"low", "echo", "done", "cancelled", "request"},  # started four; holds role requester
    "bob": {"low", "urgent", "for_bob", "done", "cancelled"},  # role approver; for_bob is his
    "erin": {"finance"},  # group finance
    "carol": set(WORLD),
    "dana": set(WORLD),
    "stranger": set(),
}


@dataclass
class World:
    ids: dict[str, str]  # label → task id
    instances: dict[str, str]  # label → workflow instance id
    steps: dict[str, str]  # label → step instance id
    start: datetime

    def label(self, task_id: str) -> str:
        return next(label for label, known in self.ids.items() if known == task_id)


async def add_stranger(engine: Engine) -> None:
    """A signed-in user with no roles and no groups, who started nothing."""
    async with engine.db.transaction() as session:
        await DirectoryRepository(session).save_user("sam", "Sam Stranger", "sam@example.com", (), (),
                                                     engine.clock.now())  # fmt: skip


async def build_world(gql: GraphQL, app_engine: Engine, clock: ManualClock) -> World:
    """The world of the table above, made through the API as its people would."""
    start = clock.now()
    ids, instances = {}, {}
    for label, spec in WORLD.items():
        clock.advance(start + timedelta(minutes=spec.created) - clock.now())
        document = {"key": f"inbox_{label}", "start": label, "nodes": [{"id": label, **spec.node}]}
        await app_engine.deploy(document, deployed_by="dana")
        instance = await app_engine.start(f"inbox_{label}", {}, spec.starter)
        [token] = instance.tokens
        assert token.task_id is not None
        ids[label], instances[label] = token.task_id, instance.id
    clock.advance(start + timedelta(minutes=10) - clock.now())
    assert (await gql(CLAIM, user="bob", id=ids["low"]))["data"]["claimTask"]["__typename"] == "TaskSuccess"
    clock.advance(timedelta(minutes=1))
    assert (await gql(APPROVE, user="bob", id=ids["done"]))["data"]["approveTask"]["__typename"] == "TaskSuccess"
    clock.advance(timedelta(minutes=1))
    cancelled = await gql(CANCEL, user="alice", id=instances["cancelled"])
    assert cancelled["data"]["cancelWorkflow"]["__typename"] == "WorkflowSuccess"
    await add_stranger(app_engine)
    steps = {}
    for label, task_id in ids.items():
        body = await gql("query($id: ID!) { task(id: $id) { step { id } } }", user="dana", id=task_id)
        steps[label] = body["data"]["task"]["step"]["id"]
    return World(ids=ids, instances=instances, steps=steps, start=start)


def user_of(name: str) -> str:
    return "sam" if name == "stranger" else name


async def page(gql: GraphQL, user: str, **variables: Any) -> dict[str, Any]:
    body = await gql(TASKS, user=user_of(user), **variables)
    assert "errors" not in body, body
    connection: dict[str, Any] = body["data"]["tasks"]
    return connection


async def labels(gql: GraphQL, world: World, user: str, **variables: Any) -> list[str]:
    connection = await page(gql, user, **variables)
    found = [world.label(edge["node"]["id"]) for edge in connection["edges"]]
    assert connection["totalCount"] == len(found), "a page that holds everything counts everything"
    return found
