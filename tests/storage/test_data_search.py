"""Search by business data (engine/storage/data_search.py): every operator and type, on both databases,
combined with the other filters; bad paths, operators and values are validation errors naming the field."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from engine.errors import ValidationError
from engine.state import TaskStatus, User
from engine.storage.data_search import DataCondition, DataOperator, DataSort, DataSource
from engine.storage.database import Database
from engine.storage.inbox import TaskOrderField, TaskQuery, page_with_cursors, search_tasks, task_search
from engine.storage.instances import InstanceRepository
from engine.storage.tasks import TaskRepository
from tests.storage.test_repositories import a_task, an_instance, new_step

APPROVER = User(id="bob", name="Bob", roles=frozenset({"approver"}))
DATA: dict[int, dict[str, Any]] = {
    1: {"amount": 500, "customer": {"id": "c1", "name": "Acme"}, "due": "2026-01-05", "tags": ["red", "blue"],
        "urgent": True, "note": "big order", "score": [1, 2]},
    2: {"amount": 1500.5, "customer": {"id": "c2"}, "due": "2026-02-01T10:00:00Z", "tags": ["blue"], "urgent": False,
        "score": [3]},
    # A string that looks like a number is a string; a date-time with an offset is its instant (01:30 UTC on the 6th).
    3: {"amount": "2000", "customer": {"id": "c3"}, "due": "2026-01-05T23:30:00-02:00", "tags": [], "urgent": None},
    4: {"amount": 1000, "note": "small", "due": "not a date", "customer": "c4"},
    5: {},
}  # fmt: skip
INPUT: dict[int, dict[str, Any]] = {1: {"rank": 3}, 2: {"rank": 7}, 3: {"rank": "7"}}


async def seed(db: Database) -> None:
    """One approver task per instance (each named by its number), and a completed one in instance 2."""
    async with db.transaction() as session:
        for number, data in DATA.items():
            instance_id = f"wi-{number}"
            await InstanceRepository(session).insert(an_instance(instance_id, data=data))
            step = await new_step(session, instance_id, "review", "decision")
            await TaskRepository(session).insert(
                a_task(f"t-{number}", step, number, assigned_role="approver", input=INPUT.get(number, {}))
            )
        step = await new_step(session, "wi-2", "review", "wrap_up")
        await TaskRepository(session).insert(
            a_task("t-2-done", step, 9, TaskStatus.COMPLETED, assigned_role="approver")
        )


async def found(db: Database, *conditions: DataCondition, **query: Any) -> set[str]:
    async with db.read() as session:
        tasks, total, _ = await search_tasks(
            session, APPROVER, TaskQuery(role="approver", data=conditions, **query), 50, None
        )
    assert total == len(tasks)
    return {t.id for t in tasks}


def c(path: str, op: str, value: Any = None, source: DataSource = DataSource.INSTANCE_DATA) -> DataCondition:
    return DataCondition(path, DataOperator(op), value, source)


CASES: list[tuple[DataCondition, set[int]]] = [
    # numbers compare numerically, with numbers only (instance 3's "2000" is a string)
    (c("amount", "GT", 1000), {2}),
    (c("amount", "GTE", 1000), {2, 4}),
    (c("amount", "LT", 1000), {1}),
    (c("amount", "LTE", 1000), {1, 4}),
    (c("amount", "EQ", 1000), {4}),
    (c("amount", "EQ", 1000.0), {4}),
    (c("amount", "GT", 1500.25), {2}),
    (c("amount", "NE", 1000), {1, 2, 3, 5}),
    # strings with strings
    (c("amount", "EQ", "2000"), {3}),
    (c("customer.id", "EQ", "c2"), {2}),
    (c("customer.id", "GT", "c1"), {2, 3}),
    (c("customer.id", "LTE", "c2"), {1, 2}),
    (c("customer.id", "NE", "c2"), {1, 3, 4, 5}),
    (c("customer.name", "EQ", "Acme"), {1}),
    # ISO dates and date-times as instants
    (c("due", "LT", "2026-01-06"), {1}),
    (c("due", "GTE", "2026-01-06"), {2, 3}),
    (c("due", "EQ", "2026-01-05T00:00:00Z"), {1}),
    (c("due", "GT", "2026-01-05T23:00:00-02:00"), {2, 3}),
    (c("due", "LTE", "2026-02-01T12:00:00+02:00"), {1, 2, 3}),
    (c("due", "NE", "2026-01-05"), {2, 3, 4, 5}),
    # booleans
    (c("urgent", "EQ", True), {1}),
    (c("urgent", "EQ", False), {2}),
    (c("urgent", "NE", True), {2, 3, 4, 5}),
    # in: each listed value as itself
    (c("amount", "IN", [500, "2000"]), {1, 3}),
    (c("customer.id", "IN", ["c1", "c3", "nobody"]), {1, 3}),
    (c("urgent", "IN", [False]), {2}),
    (c("due", "IN", ["2026-01-05"]), {1}),
    # contains: a substring of a string, an element of an array
    (c("tags", "CONTAINS", "blue"), {1, 2}),
    (c("tags", "CONTAINS", "red"), {1}),
    (c("note", "CONTAINS", "order"), {1}),
    (c("note", "CONTAINS", "Order"), set()),
    (c("score", "CONTAINS", 3), {2}),
    (c("score", "CONTAINS", "3"), set()),
    # exists: present and not null
    (c("urgent", "EXISTS", True), {1, 2}),
    (c("urgent", "EXISTS", False), {3, 4, 5}),
    (c("customer", "EXISTS", False), {5}),
    (c("customer.name", "EXISTS", True), {1}),
    # a path through a non-object finds nothing
    (c("customer.id.deeper", "EXISTS", True), set()),
    (c("amount.value", "EQ", 1), set()),
    # the task's input
    (c("rank", "GT", 5, DataSource.TASK_INPUT), {2}),
    (c("rank", "EQ", "7", DataSource.TASK_INPUT), {3}),
    (c("rank", "EXISTS", False, DataSource.TASK_INPUT), {4, 5}),
]


@pytest.mark.parametrize(("condition", "expected"), CASES, ids=[f"{c.path}-{c.op}-{c.value!r}" for c, _ in CASES])
async def test_each_operator_and_type(db: Database, condition: DataCondition, expected: set[int]) -> None:
    await seed(db)
    assert await found(db, condition) == {f"t-{n}" for n in expected}


async def test_conditions_combine_with_each_other_and_every_filter(db: Database) -> None:
    await seed(db)
    assert await found(db, c("amount", "GTE", 500), c("tags", "CONTAINS", "blue")) == {"t-1", "t-2"}
    both_sources = (c("tags", "CONTAINS", "blue"), c("rank", "GT", 5, DataSource.TASK_INPUT))
    assert await found(db, *both_sources) == {"t-2"}
    # The completed task of instance 2 is found only when completed tasks are asked for.
    assert await found(db, c("customer.id", "EQ", "c2")) == {"t-2"}
    assert await found(db, c("customer.id", "EQ", "c2"), include_completed=True) == {"t-2", "t-2-done"}
    assert await found(db, c("customer.id", "EQ", "c2"), statuses=[TaskStatus.COMPLETED]) == {"t-2-done"}
    assert await found(db, c("amount", "GT", 0), workflow_instance_id="wi-1") == {"t-1"}
    # Visibility still applies: a stranger finds nothing, whatever the data says.
    stranger = User(id="erin", name="Erin")
    async with db.read() as session:
        tasks, _, _ = await search_tasks(session, stranger, TaskQuery(data=(c("amount", "GT", 0),)), 50, None)
    assert tasks == []


BAD: list[tuple[list[DataCondition], str, str]] = [
    ([c("a..b", "EQ", 1)], "filter.data.0.path", "INVALID_PATH"),
    ([c("", "EQ", 1)], "filter.data.0.path", "INVALID_PATH"),
    ([c("amount", "EQ", 1), c("a'b", "EQ", 1)], "filter.data.1.path", "INVALID_PATH"),
    ([c("x}') OR 1=1 --", "EQ", 1)], "filter.data.0.path", "INVALID_PATH"),
    ([c("tags[0]", "EQ", 1)], "filter.data.0.path", "INVALID_PATH"),
    ([c(".".join("abcdefghi"), "EQ", 1)], "filter.data.0.path", "INVALID_PATH"),
    ([c("urgent", "LT", True)], "filter.data.0.op", "INVALID_OPERATOR"),
    ([c("amount", "EQ")], "filter.data.0.value", "REQUIRED"),
    ([c("amount", "EQ", {"a": 1})], "filter.data.0.value", "WRONG_TYPE"),
    ([c("amount", "EQ", [1])], "filter.data.0.value", "WRONG_TYPE"),
    ([c("amount", "IN", 1)], "filter.data.0.value", "WRONG_TYPE"),
    ([c("amount", "IN", [])], "filter.data.0.value", "WRONG_TYPE"),
    ([c("amount", "IN", [1, [2]])], "filter.data.0.value.1", "WRONG_TYPE"),
    ([c("amount", "EXISTS", "yes")], "filter.data.0.value", "WRONG_TYPE"),
    ([c("amount", "GT", 2**70)], "filter.data.0.value", "OUT_OF_RANGE"),
    ([c("note", "CONTAINS", "x" * 1001)], "filter.data.0.value", "TOO_LONG"),
    ([c("amount", "EQ", 1)] * 17, "filter.data", "TOO_MANY"),
]


@pytest.mark.parametrize(
    ("conditions", "field", "code"), BAD, ids=[f"{f}-{code}-{i}" for i, (_, f, code) in enumerate(BAD)]
)
async def test_bad_conditions_are_validation_errors_naming_the_field(
    db: Database, conditions: list[DataCondition], field: str, code: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        await found(db, *conditions)
    assert [(e.field, e.code) for e in raised.value.field_errors] == [(field, code)]


async def page_ids(db: Database, query: TaskQuery, first: int) -> list[str]:
    """Every task ``query`` finds, page after page of ``first``, following the cursors."""
    seen: list[str] = []
    after = None
    while True:
        async with db.read() as session:
            page, has_next = await page_with_cursors(session, task_search(APPROVER, query, first, after))
        seen += [task.id for task, _ in page]
        if not has_next:
            return seen
        after = page[-1][1]


async def test_ordering_by_a_data_path_follows_cursors_with_absent_values_last(db: Database) -> None:
    await seed(db)
    by_customer = TaskQuery(role="approver", order_by=TaskOrderField.DATA, order_data=DataSort("customer.id"))
    assert await page_ids(db, by_customer, 50) == ["t-1", "t-2", "t-3", "t-4", "t-5"]
    assert await page_ids(db, by_customer, 2) == ["t-1", "t-2", "t-3", "t-4", "t-5"]
    descending = replace(by_customer, descending=True)
    assert await page_ids(db, descending, 2) == ["t-5", "t-4", "t-3", "t-2", "t-1"]
    numbers = replace(descending, order_data=DataSort("amount"), data=(c("amount", "GTE", 0),))
    assert await page_ids(db, numbers, 1) == ["t-2", "t-4", "t-1"]
    rank = DataSort("rank", DataSource.TASK_INPUT)
    ranked = (c("rank", "GT", 0, DataSource.TASK_INPUT),)
    by_rank = TaskQuery(role="approver", order_by=TaskOrderField.DATA, order_data=rank, data=ranked)
    assert await page_ids(db, by_rank, 1) == ["t-1", "t-2"]


async def test_a_bad_data_ordering_is_a_validation_error(db: Database) -> None:
    await seed(db)
    unnamed = TaskQuery(order_by=TaskOrderField.DATA)
    bad_path = replace(unnamed, order_data=DataSort("a b"))
    by_customer = replace(unnamed, order_data=DataSort("customer.id"))
    async with db.read() as session:
        [(_, cursor), *_] = (await page_with_cursors(session, task_search(APPROVER, by_customer, 1, None)))[0]
    for query, after, field, code in (
        (unnamed, None, "orderBy.dataPath", "REQUIRED"),
        (bad_path, None, "orderBy.dataPath", "INVALID_PATH"),
        (replace(by_customer, order_data=DataSort("amount")), cursor, "after", "INVALID_CURSOR"),
        (replace(by_customer, order_by=TaskOrderField.CREATED_AT), cursor, "after", "INVALID_CURSOR"),
    ):
        with pytest.raises(ValidationError) as raised:
            task_search(APPROVER, query, 10, after)
        assert [(e.field, e.code) for e in raised.value.field_errors] == [(field, code)]
