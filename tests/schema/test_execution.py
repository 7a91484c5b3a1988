"""The executor's shortcuts (schema.execution) answer exactly what graphql-core's own path answers."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import weakref
from datetime import UTC, datetime
from enum import Enum
from typing import Any, ClassVar, cast

import pytest
import strawberry
from graphql import GraphQLEnumType, GraphQLObjectType
from strawberry.permission import BasePermission
from strawberry.types import ExecutionResult

from schema.execution import PlainFieldsExecutionContext, prepare
from schema.library_internals import graphql_schema_of
from schema.plain_fields import (
    DIRECT_LISTS,
    DIRECT_OBJECTS,
    PLAIN_LEAVES,
    enum_names,
    plain_leaves,
    serve_prefetched,
)
from schema.schema import build_schema


@strawberry.enum
class Colour(Enum):
    RED = "red"
    BLUE = "blue"


class Never(BasePermission):
    message = "never"

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        return False


resolver_calls: list[str] = []


@strawberry.type
class Owner:
    name: str


@strawberry.type
class Inner:
    label: str

    @strawberry.field
    async def loud(self) -> str:
        await asyncio.sleep(0)
        return self.label.upper()


@strawberry.type
class Row:
    id: strawberry.ID
    title: str
    note: str | None
    colour: Colour
    at: datetime
    count: int
    inner: Inner = dataclasses.field(default_factory=lambda: Inner(label="in"))
    maybe: Inner | None = None
    prefetched: strawberry.Private[dict[str, object]] = dataclasses.field(default_factory=dict)
    PREFETCHABLE: ClassVar[frozenset[str]] = frozenset({"owner"})

    @strawberry.field
    def shout(self) -> str:
        return self.title.upper()

    @strawberry.field(permission_classes=[Never])
    def secret(self) -> str | None:
        return "hidden"

    @strawberry.field
    async def owner(self) -> Owner:
        resolver_calls.append(self.id)
        return Owner(name=f"loaded for {self.id}")


GOOD = Row(id=strawberry.ID("1"), title="one", note=None, colour=Colour.BLUE, at=datetime(2026, 11, 21, tzinfo=UTC),
           count=3)  # fmt: skip
# What a bug could hand the executor: a null for a non-null field, a value the enum does not know,
# a string where an Int belongs. Each must become the same located error as without the shortcut.
BROKEN = [
    dataclasses.replace(GOOD, id=strawberry.ID("2"), title=None),  # type: ignore[arg-type]
    dataclasses.replace(GOOD, id=strawberry.ID("3"), colour="green"),  # type: ignore[arg-type]
    dataclasses.replace(GOOD, id=strawberry.ID("4"), count="many"),  # type: ignore[arg-type]
]
ROWS: list[Row] = []


@strawberry.type
class Query:
    @strawberry.field
    def rows(self) -> list[Row | None]:
        return list(ROWS)

    @strawberry.field
    async def gathered(self, info: strawberry.Info) -> list[str]:
        # graphql-core's helper for resolvers awaiting several things as one unit of work
        gathered: list[str] = await info._raw_info.async_helpers.gather([_later("a"), _later("b")])
        return gathered


@strawberry.type
class Page:
    rows: list[Row | None]
    strict: list[Row]
    """non-null items: the tests hand it a null too"""


STRICT: list[Row | None] = []


@strawberry.type
class PagedQuery:
    @strawberry.field
    def page(self) -> Page | None:
        return Page(rows=[*ROWS, None], strict=cast(list[Row], list(STRICT)))


async def _later(value: str) -> str:
    await asyncio.sleep(0)
    return value


QUERY = "{ rows { id title note colour at count shout secret owner { name } } }"


def make_schema(shortcuts: bool) -> strawberry.Schema:
    schema = strawberry.Schema(query=Query, execution_context_class=PlainFieldsExecutionContext)
    if shortcuts:
        prepare(graphql_schema_of(schema))
    return schema


def comparable(result: ExecutionResult) -> tuple[Any, list[tuple[str, list[Any]]]]:
    errors = sorted((e.message, list(e.path or ())) for e in result.errors or ())
    return result.data, errors


def test_plain_leaves_are_the_basic_scalar_and_enum_fields_only() -> None:
    found = plain_leaves(graphql_schema_of(make_schema(False)))
    assert found["Row"] == {
        "id": ("id", found["Row"]["id"][1]), "title": ("title", found["Row"]["title"][1]),
        "note": ("note", found["Row"]["note"][1]), "colour": ("colour", found["Row"]["colour"][1]),
        "at": ("at", found["Row"]["at"][1]), "count": ("count", found["Row"]["count"][1]),
    }  # fmt: skip
    # resolvers (shout), permission-checked fields (secret) and objects (owner) are not leaves to read
    assert {"shout", "secret", "owner"}.isdisjoint(found["Row"])
    assert "Query" not in found  # its one field has a resolver


PAGE_QUERY = "{ page { rows { id title colour count inner { loud } } strict { id title inner { loud } } } }"


# A null in a list of non-null items is what a bug could hand the executor, like BROKEN's rows.
STRICT_CASES: list[list[Row | None]] = [[GOOD, GOOD], [GOOD, BROKEN[0]], [GOOD, None]]


@pytest.mark.parametrize("strict", STRICT_CASES, ids=["good", "error", "null"])
async def test_a_plain_list_of_objects_completes_as_graphql_core_completes_it(strict: list[Row | None]) -> None:
    ROWS[:] = [GOOD, *BROKEN]
    STRICT[:] = strict

    def paged(shortcuts: bool) -> strawberry.Schema:
        schema = strawberry.Schema(query=PagedQuery, execution_context_class=PlainFieldsExecutionContext)
        if shortcuts:
            prepare(graphql_schema_of(schema))
        return schema

    fast_schema = paged(True)
    assert graphql_schema_of(fast_schema).extensions[DIRECT_LISTS]["Page"] == {"rows": "rows", "strict": "strict"}
    standard = await paged(False).execute(PAGE_QUERY)
    fast = await fast_schema.execute(PAGE_QUERY)
    assert comparable(fast) == comparable(standard)
    if strict == [GOOD, GOOD]:
        assert fast.data is not None
        good = {"id": "1", "title": "one", "inner": {"loud": "IN"}}
        assert fast.data["page"]["strict"] == [good, good]
        assert fast.data["page"]["rows"][0] == {**good, "colour": "BLUE", "count": 3}
        assert fast.data["page"]["rows"][1:] == [None, None, None, None]
    else:
        assert fast.data == {"page": None}, "a bad item of a non-null list nulls the nearest nullable parent"


def test_enum_leaves_are_named_by_member_as_strawberry_names_them() -> None:
    schema = graphql_schema_of(make_schema(False))
    colour = schema.type_map["Colour"]
    assert isinstance(colour, GraphQLEnumType)
    assert enum_names(schema)["Colour"] == {id(Colour.RED): "RED", id(Colour.BLUE): "BLUE"}
    assert [colour.coerce_output_value(member) for member in Colour] == ["RED", "BLUE"]


async def test_shortcuts_answer_what_the_standard_path_answers_including_errors() -> None:
    ROWS[:] = [GOOD, *BROKEN]
    standard = await make_schema(False).execute(QUERY)
    fast = await make_schema(True).execute(QUERY)
    assert comparable(fast) == comparable(standard)
    data = fast.data
    assert data is not None
    assert data["rows"][0] == {"id": "1", "title": "one", "note": None, "colour": "BLUE",
                               "at": "2026-11-21T00:00:00+00:00", "count": 3, "shout": "ONE", "secret": None,
                               "owner": {"name": "loaded for 1"}}  # fmt: skip
    assert data["rows"][1:4] == [None, None, None], "each broken row is nulled by its non-null error"
    messages = {tuple(path): message for message, path in comparable(fast)[1]}
    assert "Cannot return null for non-nullable field Row.title." in messages[("rows", 1, "title")]
    assert "Enum 'Colour' cannot represent value: 'green'" in messages[("rows", 2, "colour")]
    assert "Int cannot represent non-integer value: 'many'" in messages[("rows", 3, "count")]


async def test_fields_keep_the_query_order_when_leaves_and_other_fields_interleave() -> None:
    ROWS[:] = [GOOD, dataclasses.replace(GOOD, id=strawberry.ID("6"), note="a note")]
    query = "{ rows { owner { name } id shout label: title note again: id colour } }"
    standard = await make_schema(False).execute(query)
    fast = await make_schema(True).execute(query)
    assert fast.errors is None and standard.errors is None
    assert json.dumps(fast.data) == json.dumps(standard.data), "same values in the same order"
    assert fast.data is not None
    assert list(fast.data["rows"][1]) == ["owner", "id", "shout", "label", "note", "again", "colour"]
    assert fast.data["rows"][1]["note"] == "a note" and fast.data["rows"][0]["note"] is None


@pytest.mark.parametrize("inner_fields", ["label", "label loud"])
async def test_objects_completed_directly_report_errors_as_the_standard_path_does(inner_fields: str) -> None:
    broken = Inner(label=None)  # type: ignore[arg-type]
    owned: dict[str, object] = {"owner": Owner(name="o")}  # prefetched for every row: no row falls back for want of it
    ROWS[:] = [
        dataclasses.replace(GOOD, maybe=Inner(label="m"), prefetched=owned),
        dataclasses.replace(GOOD, id=strawberry.ID("7"), inner=broken, prefetched=owned),  # the row goes null
        dataclasses.replace(GOOD, id=strawberry.ID("8"), maybe=broken, prefetched=owned),  # only maybe does
        dataclasses.replace(GOOD, id=strawberry.ID("9"), inner=None, prefetched=owned),  # type: ignore[arg-type]
    ]
    query = f"{{ rows {{ id inner {{ {inner_fields} }} maybe {{ {inner_fields} }} owner {{ name }} }} }}"
    standard_schema = make_schema(False)
    serve_prefetched(graphql_schema_of(standard_schema))  # the same values, through graphql-core's own path
    standard = await standard_schema.execute(query)
    fast = await make_schema(True).execute(query)
    assert comparable(fast) == comparable(standard)
    assert json.dumps(fast.data) == json.dumps(standard.data)
    assert fast.data is not None
    loud = {"loud": "IN"} if "loud" in inner_fields else {}
    assert fast.data["rows"][0] == {"id": "1", "inner": {"label": "in", **loud},
                                    "maybe": {"label": "m", **({"loud": "M"} if loud else {})},
                                    "owner": {"name": "o"}}  # fmt: skip
    assert fast.data["rows"][1] is None and fast.data["rows"][3] is None
    assert fast.data["rows"][2] is not None and fast.data["rows"][2]["maybe"] is None
    paths = sorted(tuple(path) for _, path in comparable(fast)[1])
    assert ("rows", 1, "inner", "label") in paths and ("rows", 2, "maybe", "label") in paths
    assert ("rows", 3, "inner") in paths


async def test_a_prefetched_relation_is_served_without_calling_its_resolver() -> None:
    ROWS[:] = [GOOD, dataclasses.replace(GOOD, id=strawberry.ID("5"), prefetched={"owner": Owner(name="prefetched")})]
    resolver_calls.clear()
    result = await make_schema(True).execute("{ rows { id owner { name } } }")
    assert result.errors is None and result.data is not None
    assert result.data["rows"] == [{"id": "1", "owner": {"name": "loaded for 1"}},
                                   {"id": "5", "owner": {"name": "prefetched"}}]  # fmt: skip
    assert resolver_calls == ["1"], "only the row without a prefetched owner called the resolver"


class Held:
    """A query's context: what must go when the query ends."""


async def test_a_finished_query_lets_go_of_its_context_without_the_cycle_collector() -> None:
    ROWS[:] = [GOOD]
    context = Held()
    released = weakref.ref(context)
    gc.disable()  # only reference counting frees now: a cycle would keep the context
    try:
        result = await make_schema(True).execute("{ rows { id owner { name } } gathered }", context_value=context)
        assert result.errors is None and result.data is not None
        assert result.data["gathered"] == ["a", "b"], "the resolver helpers still reach their executor"
        del context, result
        assert released() is None, "the executor (and with it the context) was kept alive by a reference cycle"
    finally:
        gc.enable()


@strawberry.type
class Guarded:
    prefetched: strawberry.Private[dict[str, object]]
    PREFETCHABLE: ClassVar[frozenset[str]] = frozenset({"secret"})

    @strawberry.field(permission_classes=[Never])
    def secret(self) -> str:
        return "x"


@strawberry.type
class Misnamed:
    prefetched: strawberry.Private[dict[str, object]]
    PREFETCHABLE: ClassVar[frozenset[str]] = frozenset({"nothing"})
    name: str


@strawberry.type
class GuardedRoot:
    item: Guarded


@strawberry.type
class MisnamedRoot:
    item: Misnamed


@pytest.mark.parametrize(("root", "problem"), [(GuardedRoot, "has extensions"), (MisnamedRoot, "unknown fields")])
def test_prefetching_must_not_skip_a_permission_or_name_unknown_fields(root: type, problem: str) -> None:
    with pytest.raises(TypeError, match=problem):
        serve_prefetched(graphql_schema_of(strawberry.Schema(query=root)))


def test_the_served_schema_takes_both_shortcuts() -> None:
    schema = graphql_schema_of(build_schema(fast_execution=True))  # the shortcut itself is the subject
    leaves = schema.extensions[PLAIN_LEAVES]
    assert {"id", "title", "status", "createdAt"} <= leaves["Task"].keys()
    assert not {"assignee", "step", "viewerCanClaim", "form"} & leaves["Task"].keys()
    direct = schema.extensions[DIRECT_OBJECTS]
    assert direct["Task"] == {"assignee": ("assignee", True), "step": ("step", True)}
    assert direct["TaskEdge"] == {"node": ("node", False)}
    assert "edges" not in direct["TaskConnection"], "lists go through graphql-core"
    task = schema.type_map["Task"]
    assert isinstance(task, GraphQLObjectType)
    assert getattr(task.fields["assignee"].resolve, "__name__", None) == "resolve_prefetched"
    assert getattr(task.fields["step"].resolve, "__name__", None) == "resolve_prefetched"
