"""The inbox, ``tasks(filter, orderBy, first, after)``, through the real HTTP app.

One small world of eight tasks whose creation times, due dates, priorities and update times the
test sets itself (the clock is manual), so every expected order below comes from this file's own
table, not from what the server answers. Ties are broken by id, ascending with ASC and descending
with DESC, so a DESC page is exactly the ASC page reversed.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

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


@pytest.fixture
async def world(gql: GraphQL, app_engine: Engine, clock: ManualClock) -> World:
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


async def test_the_world_is_as_the_table_says(gql: GraphQL, world: World) -> None:
    """The sort values the order tests rely on, as the API reports them."""
    every = await page(gql, "dana", filter={"includeCompleted": True})
    rank = {"LOW": 0, "NORMAL": 1, "HIGH": 2, "URGENT": 3}

    def minutes(stamp: str) -> float:
        return (datetime.fromisoformat(stamp) - world.start) / timedelta(minutes=1)

    for edge in every["edges"]:
        node = edge["node"]
        spec = WORLD[world.label(node["id"])]
        assert minutes(node["createdAt"]) == spec.created, node
        assert (minutes(node["dueAt"]) if node["dueAt"] else INF) == spec.due, node
        assert rank[node["priority"]] == spec.priority and minutes(node["updatedAt"]) == spec.updated, node
    assert every["totalCount"] == len(WORLD)


async def test_without_a_filter_each_user_sees_exactly_what_they_may(gql: GraphQL, world: World) -> None:
    for user, visible in VISIBLE.items():
        assert set(await labels(gql, world, user, filter={"includeCompleted": True})) == visible, user
        assert set(await labels(gql, world, user)) == visible & set(OPEN), f"{user}: completed, cancelled hidden"


FILTERS: list[tuple[str, dict[str, Any], set[str]]] = [
    ("dana", {"role": "approver"}, {"low", "urgent"}),
    ("dana", {"role": "approver", "includeCompleted": True}, {"low", "urgent", "done", "cancelled"}),
    ("bob", {"role": "approver"}, {"low", "urgent"}),
    ("dana", {"role": "requester"}, {"request"}),
    ("dana", {"userId": "bob"}, {"low", "for_bob"}),
    ("dana", {"userId": "bob", "includeCompleted": True}, {"low", "for_bob", "done"}),
    ("dana", {"groupId": "finance"}, {"finance"}),
    ("erin", {"groupId": "finance"}, {"finance"}),
    ("dana", {"status": ["CLAIMED"]}, {"low"}),
    ("dana", {"status": ["PENDING"]}, {"urgent", "finance", "for_bob", "request", "echo"}),
    ("dana", {"status": ["COMPLETED", "CANCELLED"]}, {"done", "cancelled"}),  # an explicit list needs no flag
    ("alice", {"status": ["COMPLETED"]}, {"done"}),
    ("dana", {"priority": ["URGENT", "HIGH"]}, {"urgent", "finance"}),
    ("dana", {"priority": ["LOW"]}, {"low"}),
    ("dana", {"priority": ["NORMAL"], "includeCompleted": True}, {"for_bob", "request", "echo", "done", "cancelled"}),
    ("dana", {"kind": "SYSTEM"}, {"echo"}),
    ("dana", {"kind": "USER"}, {"low", "urgent", "finance", "for_bob", "request"}),
    ("alice", {"kind": "SYSTEM"}, {"echo"}),
    ("bob", {"assignedToMe": True}, {"low", "for_bob"}),
    ("bob", {"assignedToMe": True, "includeCompleted": True}, {"low", "for_bob", "done"}),
    ("dana", {"assignedToMe": True}, set()),
    ("dana", {"includeCompleted": False}, set(OPEN)),
    ("dana", {"includeCompleted": True}, set(WORLD)),
    ("dana", {"dueBefore": "2026-01-06T09:03:00Z"}, {"low"}),  # strictly before: for_bob is due at 09:03
    ("dana", {"dueBefore": "2026-01-06T09:03:00.000001+00:00"}, {"low", "for_bob"}),
    ("dana", {"dueBefore": "2026-01-06T10:03:00+01:00"}, {"low"}),  # any offset: the same instant as 09:03Z
    ("dana", {"dueBefore": "2026-01-06T05:04:00-04:00"}, {"low", "for_bob"}),
    ("dana", {"dueBefore": "2030-01-01T00:00:00Z"}, {"low", "for_bob", "urgent"}),  # no due date never matches
    ("dana", {"type": ["APPROVAL"]}, {"low", "urgent", "finance", "for_bob"}),
    ("dana", {"type": ["FORM", "APPROVAL"]}, {"low", "urgent", "finance", "for_bob", "request"}),
    ("dana", {"type": ["FORM"], "includeCompleted": True}, {"request"}),
    ("dana", {"type": ["ECHO"]}, {"echo"}),
    ("dana", {"type": ["DOCUMENT_UPLOAD"]}, set()),
    ("bob", {"type": ["APPROVAL"], "priority": ["URGENT"]}, {"urgent"}),
    ("alice", {"type": ["FORM"]}, {"request"}),
    ("dana", {"role": "approver", "priority": ["URGENT"], "kind": "USER"}, {"urgent"}),  # filters combine (AND)
    ("bob", {"role": "approver", "status": ["CLAIMED"], "assignedToMe": True}, {"low"}),
]


async def filter_mismatches(
    gql: GraphQL, world: World, cases: list[tuple[str, dict[str, Any], set[str]]]
) -> list[tuple[str, dict[str, Any], list[str], set[str]]]:
    """Every case whose answer is not the expected set (with no duplicates), as (user, filter, found, expected)."""
    wrong = []
    for user, filter, expected in cases:
        assert expected <= VISIBLE[user], (user, filter)
        found = await labels(gql, world, user, filter=filter)
        if set(found) != expected or len(found) != len(expected):
            wrong.append((user, filter, found, expected))
    return wrong


async def test_each_filter_narrows_to_the_matching_tasks(gql: GraphQL, world: World) -> None:
    assert await filter_mismatches(gql, world, FILTERS) == []


DELEGATE = "mutation($id: ID!, $to: ID!) { delegateTask(input: {taskId: $id, to: $to}) { __typename } }"
RESOLVE = "mutation($id: ID!) { resolveTask(input: {taskId: $id}) { __typename } }"
STEP_TASKS = """query($id: ID!) { stepInstance(id: $id) { tasks(assignedToMe: true) { edges { node { id } } } } }"""


async def step_page_mine(gql: GraphQL, world: World, user: str, label: str) -> list[str]:
    body = await gql(STEP_TASKS, user=user, id=world.steps[label])
    assert "errors" not in body, body
    return [world.label(edge["node"]["id"]) for edge in body["data"]["stepInstance"]["tasks"]["edges"]]


async def test_assigned_to_me_holds_what_is_delegated_to_me_and_what_i_own(gql: GraphQL, world: World) -> None:
    """While delegated, the task is the delegate's to work on and still its owner's to complete: both
    find it under "assigned to me" (the inbox filter and the step page's toggle); once resolved back,
    only the owner does."""
    delegated = await gql(DELEGATE, user="bob", id=world.ids["for_bob"], to="erin")
    assert delegated["data"]["delegateTask"]["__typename"] == "TaskSuccess", delegated
    assert set(await labels(gql, world, "erin", filter={"assignedToMe": True})) == {"for_bob"}
    assert set(await labels(gql, world, "bob", filter={"assignedToMe": True})) == {"low", "for_bob"}
    assert await step_page_mine(gql, world, "erin", "for_bob") == ["for_bob"]
    assert await step_page_mine(gql, world, "bob", "for_bob") == ["for_bob"]
    resolved = await gql(RESOLVE, user="erin", id=world.ids["for_bob"])
    assert resolved["data"]["resolveTask"]["__typename"] == "TaskSuccess", resolved
    assert await labels(gql, world, "erin", filter={"assignedToMe": True}) == []
    assert set(await labels(gql, world, "bob", filter={"assignedToMe": True})) == {"low", "for_bob"}


async def test_instance_and_step_filters(gql: GraphQL, world: World) -> None:
    for label in ("low", "finance", "echo"):
        assert await labels(gql, world, "dana", filter={"workflowInstanceId": world.instances[label]}) == [label]
        assert await labels(gql, world, "dana", filter={"stepInstanceId": world.steps[label]}) == [label]
    done = {"workflowInstanceId": world.instances["done"]}
    assert await labels(gql, world, "alice", filter=done) == [], "completed: hidden by default"
    assert await labels(gql, world, "alice", filter={**done, "includeCompleted": True}) == ["done"]
    assert await labels(gql, world, "dana", filter={"workflowInstanceId": "no-such-instance"}) == []


WIDENING: list[tuple[str, dict[str, Any], set[str]]] = [
    ("erin", {"role": "approver", "includeCompleted": True}, set()),
    ("erin", {"userId": "bob", "includeCompleted": True}, set()),
    ("erin", {"kind": "SYSTEM"}, set()),
    ("alice", {"groupId": "finance"}, set()),
    ("alice", {"role": "approver", "includeCompleted": True}, {"low", "done", "cancelled"}),  # not carol's urgent
    ("alice", {"userId": "bob", "includeCompleted": True}, {"low", "done"}),  # not dana's for_bob
    ("bob", {"groupId": "finance"}, set()),
    ("bob", {"role": "requester"}, set()),
    ("bob", {"kind": "SYSTEM"}, set()),  # echo is in alice's instance
    ("stranger", {"includeCompleted": True}, set()),
    ("stranger", {"role": "approver", "includeCompleted": True}, set()),
    ("stranger", {"userId": "bob"}, set()),
    ("stranger", {"status": ["PENDING", "CLAIMED", "COMPLETED", "CANCELLED"]}, set()),
]


async def test_a_filter_never_widens_what_the_viewer_sees(gql: GraphQL, world: World) -> None:
    """Asking for a role, user or group one does not hold gets only what one could see anyway."""
    assert await filter_mismatches(gql, world, WIDENING) == []


async def test_instance_and_step_filters_do_not_reveal_other_instances(gql: GraphQL, world: World) -> None:
    """alice neither started ``urgent``'s instance nor holds a task in it; erin has nothing in ``low``."""
    for user, label in (("alice", "urgent"), ("alice", "finance"), ("alice", "for_bob"), ("erin", "low"),
                        ("bob", "finance"), ("stranger", "low")):  # fmt: skip
        for filter in ({"workflowInstanceId": world.instances[label]}, {"stepInstanceId": world.steps[label]}):
            connection = await page(gql, user, filter={**filter, "includeCompleted": True})
            assert connection == {"totalCount": 0, "pageInfo": {"hasNextPage": False, "endCursor": None},
                                  "edges": []}, (user, label)  # fmt: skip


def sort_value(spec: Spec, field: str) -> float:
    values = {"CREATED_AT": spec.created, "DUE_AT": spec.due, "PRIORITY": spec.priority, "UPDATED_AT": spec.updated}
    return values[field]


def expected_order(world: World, field: str, labels: list[str]) -> list[str]:
    """Ascending by the table's sort value, ties broken by id."""
    return sorted(labels, key=lambda label: (sort_value(WORLD[label], field), world.ids[label]))


FIELDS = ("CREATED_AT", "DUE_AT", "PRIORITY", "UPDATED_AT")
ORDERS = [(field, direction) for field in FIELDS for direction in ("ASC", "DESC")]


async def test_order_by_each_field_and_direction(gql: GraphQL, world: World) -> None:
    for field, direction in ORDERS:
        order = {"field": field, "direction": direction}
        expected = expected_order(world, field, OPEN)
        everything = expected_order(world, field, list(WORLD))
        if direction == "DESC":
            expected.reverse()
            everything.reverse()
        assert await labels(gql, world, "dana", order=order) == expected, order
        assert await labels(gql, world, "dana", order=order, filter={"includeCompleted": True}) == everything, order
        mine = [label for label in expected if label in VISIBLE["bob"]]
        assert await labels(gql, world, "bob", order=order) == mine, order


async def test_the_table_orders_are_the_ones_people_expect(gql: GraphQL, world: World) -> None:
    """The model above, spelled out where it has no ties: so the model itself is checked too."""
    asc = {"field": "CREATED_AT", "direction": "ASC"}
    assert (await labels(gql, world, "dana", order=asc))[:4] == ["low", "urgent", "finance", "for_bob"]
    assert (await labels(gql, world, "dana"))[:4] == ["low", "urgent", "finance", "for_bob"], "CREATED_AT ASC"
    due = await labels(gql, world, "dana", order={"field": "DUE_AT", "direction": "ASC"})
    assert due[:3] == ["low", "for_bob", "urgent"], "soonest first, no due date last"
    due_desc = await labels(gql, world, "dana", order={"field": "DUE_AT", "direction": "DESC"})
    assert due_desc[3:] == ["urgent", "for_bob", "low"], "DESC: no due date first (it is 'never')"
    urgent_first = await labels(gql, world, "dana", order={"field": "PRIORITY", "direction": "DESC"})
    assert urgent_first[:2] == ["urgent", "finance"] and urgent_first[-1] == "low"
    recent = await labels(gql, world, "dana", order={"field": "UPDATED_AT", "direction": "DESC"})
    assert recent[0] == "low", "bob's claim touched it last"


async def walk(gql: GraphQL, world: World, user: str, first: int, **variables: Any) -> list[str]:
    """Every page, following ``endCursor`` until ``hasNextPage`` is false."""
    seen: list[str] = []
    after = None
    for _ in range(100):
        connection = await page(gql, user, first=first, after=after, **variables)
        assert len(connection["edges"]) <= first
        seen += [world.label(edge["node"]["id"]) for edge in connection["edges"]]
        if connection["edges"]:
            assert connection["pageInfo"]["endCursor"] == connection["edges"][-1]["cursor"]
        if not connection["pageInfo"]["hasNextPage"]:
            return seen
        after = connection["pageInfo"]["endCursor"]
    raise AssertionError("the pages never ended")


async def test_pages_of_two_give_every_visible_task_once(gql: GraphQL, world: World) -> None:
    filter = {"includeCompleted": True}
    for user in ("dana", "bob", "alice"):
        for field, direction in ORDERS:
            order = {"field": field, "direction": direction}
            whole = await labels(gql, world, user, order=order, filter=filter)
            assert set(whole) == VISIBLE[user]
            assert await walk(gql, world, user, 2, order=order, filter=filter) == whole, (user, order)
            first_page = await page(gql, user, first=2, order=order, filter=filter)
            assert first_page["totalCount"] == len(VISIBLE[user]), "totalCount counts every match, not the page"
            assert first_page["pageInfo"]["hasNextPage"] is (len(VISIBLE[user]) > 2)


async def test_pages_stay_correct_when_tasks_are_inserted_between_fetches(
    gql: GraphQL, world: World, app_engine: Engine, clock: ManualClock
) -> None:
    """Keyset cursors: each task that existed before a walk is seen exactly once and in order, whatever
    lands in between (the new urgent tasks, due in a minute, sort first or last depending on the order)."""
    await app_engine.deploy({"key": "inbox_more", "start": "more", "nodes": [
        {"id": "more", "type": "userTask", "assignToRole": "approver", "priority": "urgent", "dueIn": "PT1M"}]},
        deployed_by="dana")  # fmt: skip
    inserted: set[str] = set()

    async def insert(number: int) -> None:
        """After each of the first three pages: two at the same instant, or each a minute later."""
        for _ in range(2 if number < 3 else 0):
            if number % 2:
                clock.advance(timedelta(minutes=1))
            instance = await app_engine.start("inbox_more", {}, "carol")
            [token] = instance.tokens
            assert token.task_id is not None
            inserted.add(token.task_id)

    for field, direction in ORDERS:
        order = {"field": field, "direction": direction}
        before = [edge["node"]["id"] for edge in (await page(gql, "dana", order=order, first=200))["edges"]]
        inserted_before = len(inserted)
        seen: list[str] = []
        after = None
        for number in range(50):
            connection = await page(gql, "dana", first=2, after=after, order=order)
            seen += [edge["node"]["id"] for edge in connection["edges"]]
            if not connection["pageInfo"]["hasNextPage"]:
                break
            after = connection["pageInfo"]["endCursor"]
            await insert(number)
        else:
            raise AssertionError("the pages never ended")
        assert len(inserted) > inserted_before, "tasks were inserted during the walk"
        assert len(seen) == len(set(seen)), f"{order}: no task twice"
        assert [task_id for task_id in seen if task_id in before] == before, f"{order}: every old task, in order"
        assert set(seen) - set(before) <= inserted


async def test_first_zero_counts_without_a_page(gql: GraphQL, world: World) -> None:
    connection = await page(gql, "dana", first=0)
    assert connection == {"totalCount": len(OPEN), "pageInfo": {"hasNextPage": True, "endCursor": None},
                          "edges": []}  # fmt: skip
    only = await page(gql, "erin", first=1)
    assert only["pageInfo"] == {"hasNextPage": False, "endCursor": only["edges"][0]["cursor"]}
    assert len((await page(gql, "dana", first=200, filter={"includeCompleted": True}))["edges"]) == len(WORLD)


def cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode()


BAD_CURSORS: list[tuple[str, dict[str, Any] | None]] = [
    ("not a cursor", None),
    ("bm90IGpzb24=", None),  # base64 of "not json"
    (cursor("CREATED_AT", "2026-01-05T09:00:00+00:00"), None),  # two parts
    (base64.urlsafe_b64encode(b'{"a": 1}').decode(), None),  # not a list
    (cursor("CREATED_AT", "2026-01-05T09:00:00+00:00", 7), None),  # the id is not a string
    (cursor("CREATED_AT", "yesterday", "x"), None),
    (cursor("CREATED_AT", "2026-01-05T09:00:00", "x"), None),  # no UTC offset: cannot be compared
    (cursor("CREATED_AT", 12, "x"), None),
    (cursor("PRIORITY", "high", "x"), {"field": "PRIORITY", "direction": "ASC"}),
    (cursor("PRIORITY", 9, "x"), {"field": "PRIORITY", "direction": "DESC"}),
    (cursor("PRIORITY", True, "x"), {"field": "PRIORITY", "direction": "ASC"}),
    (cursor("PRIORITY", 1, "x"), {"field": "DUE_AT", "direction": "ASC"}),  # another ordering's cursor
]


async def test_a_bad_after_cursor_is_a_bad_user_input_error(gql: GraphQL, world: World) -> None:
    """A query has no result union: bad arguments are a top-level error, not masked as a bug."""
    for after, order in BAD_CURSORS:
        body = await gql(TASKS, user="dana", after=after, order=order)
        [error] = body["errors"]
        assert body["data"] is None and error["path"] == ["tasks"], after
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert error["message"].startswith("after is not a cursor of this query"), error
        assert [f["field"] for f in error["extensions"]["fieldErrors"]] == ["after"], error


async def test_first_out_of_range_and_a_naive_due_date_are_bad_user_input(gql: GraphQL, world: World) -> None:
    for first in (-1, 201, 10_000):
        body = await gql(TASKS, user="dana", first=first)
        [error] = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT" and "first" in error["message"], error
        assert error["extensions"]["fieldErrors"][0]["field"] == "first"
    body = await gql(TASKS, user="dana", filter={"dueBefore": "2026-01-06T00:00:00"})
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "dueBefore" in error["message"], error


async def test_a_cursor_from_another_direction_or_filter_still_pages_consistently(gql: GraphQL, world: World) -> None:
    """A cursor is a position (sort value, id): with the other direction it pages through what lies
    before it, and in anyone's hands it is only a position, never a widening."""
    asc = {"field": "CREATED_AT", "direction": "ASC"}
    desc = {"field": "CREATED_AT", "direction": "DESC"}
    whole = await labels(gql, world, "dana", order=asc)
    middle = (await page(gql, "dana", first=3, order=asc))["pageInfo"]["endCursor"]
    rest = await page(gql, "dana", order=asc, after=middle)
    assert [world.label(e["node"]["id"]) for e in rest["edges"]] == whole[3:]
    assert rest["totalCount"] == len(whole), "totalCount is the whole match, whatever the cursor"
    back = await page(gql, "dana", order=desc, after=middle)
    assert [world.label(e["node"]["id"]) for e in back["edges"]] == list(reversed(whole[:2]))
    erin = await page(gql, "erin", order=asc, after=cursor("CREATED_AT", world.start.isoformat(), ""))
    assert [world.label(e["node"]["id"]) for e in erin["edges"]] == ["finance"]
