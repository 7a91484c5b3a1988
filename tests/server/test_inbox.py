"""The inbox, ``tasks(filter, orderBy, first, after)``, through the real HTTP app: who sees what, and
what each filter narrows to (ordering and paging: test_inbox_paging.py; the world: inbox_world.py).

One small world of eight tasks whose creation times, due dates, priorities and update times the
tests set themselves (the clock is manual), so what each user should see comes from that file's own
table, not from what the server answers.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tests.server.conftest import GraphQL
from tests.server.inbox_world import (
    INF,
    OPEN,
    VISIBLE,
    WORLD,
    World,
    labels,
    page,
)


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
