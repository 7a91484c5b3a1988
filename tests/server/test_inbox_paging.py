"""The inbox's ordering and paging, ``tasks(orderBy, first, after)``, through the real HTTP app, over the
world of tests/server/inbox_world.py: every expected order comes from that table, not from what the server
answers. Ties are broken by id, ascending with ASC and descending with DESC, so a DESC page is exactly the
ASC page reversed.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

from engine.clock import ManualClock
from engine.transitions.engine import Engine
from tests.server.conftest import GraphQL
from tests.server.inbox_world import (
    OPEN,
    TASKS,
    VISIBLE,
    WORLD,
    Spec,
    World,
    labels,
    page,
)


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
