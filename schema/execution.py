"""How operations execute: Strawberry's executor, completing plain fields and prefetched relations itself.

Most fields of a page are leaves read straight off a type's attribute (``Task.title``,
``Task.status``): 550 of the 740 fields of a 50-task inbox page. graphql-core gives each of them a
resolve info, a resolver call, two awaitable checks and a walk through ``complete_value``; that is
about a third of the page's CPU (bench/profiling.py inbox). :func:`plain_leaves` finds these fields
once per schema, and :class:`PlainFieldsExecutionContext` reads and serializes an object's selected leaves in
one loop. Fields of an object type whose value needs no resolver — a plain attribute
(``TaskEdge.node``) or a relation the page prefetched (below) — are found by
:func:`direct_objects`, and their objects completed the same way, without a resolve info. Only
the other fields go to graphql-core. A list of such objects held as a plain attribute
(``TaskConnection.edges``, :func:`direct_lists`) has its items completed the same way, without
graphql-core's four calls per item before its loop, and each direct object's selection is collected once
per plan, not once per object. A String or ID leaf holding a ``str`` is that string (what graphql-core's
serializers return), and an enum member is named from a table made once (:func:`enum_names`), where
Strawberry's serializer compares the member with each of the enum's values. (These finders are in
``schema/plain_fields.py``.) An object with anything that is not the plain case — no value
for a non-null field, a value the scalar refuses, a missing attribute, a relation not prefetched —
goes through graphql-core's own path whole, so errors read exactly as before.

A page that loads a relation for all its rows at once (``TaskConnection.page``: each task's step
and assignee) leaves the values in the row's ``prefetched`` dict. :func:`serve_prefetched` puts a
resolver in front of those fields that returns the prefetched value (for an executor without the
shortcuts above), and a row without the value calls the field's own resolver.

What it earned (docs/adr/0001-executor-shortcut.md): a 50-task inbox page 47.1 → 40.1 M instructions
(round 10), most of round 3's 74.2 → 56.2 M, and −15 to −19% server CPU per inbox request over HTTP.
It reads graphql-core and Strawberry beyond their public API (see ``make test-latest``);
``STEPWISE_FAST_EXECUTION=false`` turns it off (``build_schema`` then leaves :func:`prepare` out, and
every field runs through its resolver as on Strawberry's own executor).
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from graphql import (
    GraphQLEnumType,
    GraphQLID,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfoHelpers,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
    Undefined,
    get_nullable_type,
)
from graphql.pyutils import Path, gather_with_cancel

from schema.library_internals import (
    CollectedFields,
    FieldDetailsList,
    GroupedFieldSet,
    StrawberryGraphQLCoreExecutionContext,
    middlewares_of,
)
from schema.plain_fields import (
    DIRECT_LISTS,
    DIRECT_OBJECTS,
    ENUM_NAMES,
    PLAIN_LEAVES,
    DirectObject,
    Leaf,
    direct_lists,
    direct_objects,
    enum_names,
    plain_leaves,
    serve_prefetched,
)

_ABSENT = object()


class _Direct(NamedTuple):
    """A selected field :meth:`PlainFieldsExecutionContext.execute_fields` completes itself."""

    response_name: str
    attribute: str
    prefetched: bool
    leaf: GraphQLScalarType | GraphQLEnumType | None
    """the leaf type serializing it; None for an object (its own fields are completed the same way)"""
    text: bool
    """a String or ID leaf: a ``str`` value serializes as itself"""
    names: dict[int, str] | None
    """an enum leaf's names by the id of each member of its Python enum (:func:`enum_names`)"""
    object_type: GraphQLObjectType | None
    field_type: GraphQLOutputType
    nullable: bool
    field_details_list: FieldDetailsList
    subfields: CollectedFields | None
    """an object's (or each listed object's) selection, collected once per plan"""
    item_type: GraphQLOutputType | None
    """a list of objects: the type of its items (None: not a list)"""


@dataclass(frozen=True)
class _Plan:
    """How :meth:`PlainFieldsExecutionContext.execute_fields` completes one selection of an object type."""

    direct: tuple[_Direct, ...]
    rest: GroupedFieldSet
    """the other selected fields, for graphql-core"""
    order: tuple[str, ...] | None
    """the response names in the query's order, when direct-then-rest is not it"""


def prepare(schema: GraphQLSchema) -> None:
    """Set ``schema`` up for :class:`PlainFieldsExecutionContext`: its plain leaves found, its prefetched
    fields served."""
    schema.extensions[PLAIN_LEAVES] = plain_leaves(schema)
    schema.extensions[ENUM_NAMES] = enum_names(schema)
    serve_prefetched(schema)
    schema.extensions[DIRECT_OBJECTS] = direct_objects(schema)
    schema.extensions[DIRECT_LISTS] = direct_lists(schema)


class PlainFieldsExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, completing plain leaves and direct objects itself.

    Without :func:`prepare` on the schema it executes exactly as Strawberry's own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        leaves = self.schema.extensions.get(PLAIN_LEAVES)
        # Middleware (a schema extension's ``resolve``) wraps every resolver; with any, every field
        # takes the standard path.
        standard = not leaves or bool(middlewares_of(self))
        self._plain_leaves: dict[str, dict[str, Leaf]] = {} if standard else cast(dict[str, dict[str, Leaf]], leaves)
        self._direct_objects: dict[str, dict[str, DirectObject]] = (
            {} if standard else self.schema.extensions.get(DIRECT_OBJECTS, {})
        )
        self._enum_names: dict[str, dict[int, str]] = self.schema.extensions.get(ENUM_NAMES, {})
        self._direct_lists: dict[str, dict[str, str]] = {} if standard else self.schema.extensions.get(DIRECT_LISTS, {})
        self.async_helpers = _helpers_of(weakref.proxy(self))
        self._plans: dict[int, tuple[GroupedFieldSet, _Plan | None]] = {}
        """By the selection's id; each entry keeps its selection alive, so that id is not reused
        while the entry lasts (graphql-core's own subfield cache does the same)."""

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> Any:
        """Complete an object's plain leaves and direct objects itself, its other fields through graphql-core.

        First every direct field's value is read, without running anything: a value the direct path
        cannot complete (a null where the type forbids one, a value the scalar refuses, a missing
        attribute, a relation the page did not prefetch) sends the whole object through graphql-core's
        own path, which reports it located, as before. Then the direct objects' fields are completed
        (their errors handled as graphql-core handles a field's), then the rest.
        """
        planned = self._plans.get(id(grouped_field_set))
        if planned is None:
            planned = self._plans[id(grouped_field_set)] = (
                grouped_field_set,
                self._plan(parent_type, grouped_field_set),
            )
        plan = planned[1]
        if plan is None:
            return super().execute_fields(parent_type, source_value, path, grouped_field_set, position_context)
        results: dict[str, Any] = {}
        objects: list[tuple[_Direct, Any]] = []
        try:
            for direct in plan.direct:
                if direct.prefetched:
                    value = source_value.prefetched.get(direct.attribute, _ABSENT)
                    if value is _ABSENT:
                        raise _NotPlain
                else:
                    value = getattr(source_value, direct.attribute)
                if value is None:
                    if not direct.nullable:
                        raise _NotPlain
                    results[direct.response_name] = None
                elif direct.leaf is None:
                    if direct.item_type is not None:
                        if type(value) is not list:
                            raise _NotPlain
                        if isinstance(direct.item_type, GraphQLNonNull):
                            for item in value:
                                if item is None:
                                    raise _NotPlain
                    objects.append((direct, value))
                    results[direct.response_name] = None  # completed below, in its place
                elif direct.text and type(value) is str:  # what serialize_string and serialize_id return
                    results[direct.response_name] = value
                elif direct.names is not None and id(value) in direct.names:
                    results[direct.response_name] = direct.names[id(value)]
                else:
                    serialized = direct.leaf.coerce_output_value(value)
                    if serialized is None or serialized is Undefined:
                        raise _NotPlain
                    results[direct.response_name] = serialized
        except Exception:
            return super().execute_fields(parent_type, source_value, path, grouped_field_set, position_context)
        pending: list[tuple[str, Awaitable[Any]]] = []
        try:
            for direct, value in objects:
                completed = (
                    self._complete_object(parent_type, direct, path, value, position_context)
                    if direct.item_type is None
                    else self._complete_list(parent_type, direct, path, value, position_context)
                )
                # Mostly completed already (a dict, or a null): ``is_awaitable`` is a Python call, asked only
                # otherwise (some 400 calls fewer a 50-task page, cProfile).
                if type(completed) is not dict and completed is not None and self.is_awaitable(completed):
                    pending.append((direct.response_name, completed))
                results[direct.response_name] = completed
            others = (
                super().execute_fields(parent_type, source_value, path, plan.rest, position_context)
                if plan.rest
                else {}
            )
        except Exception:
            if pending:  # as graphql-core does with its fields' pending work
                self.settle_in_background([awaitable for _, awaitable in pending])
            raise
        if pending or self.is_awaitable(others):
            return _merged_later(results, pending, others, plan.order)
        return _merged(results, cast(dict[str, Any], others), plan.order)

    def _complete_object(
        self, parent_type: GraphQLObjectType, direct: _Direct, path: Path | None, value: Any, position_context: Any
    ) -> Any:
        """``direct``'s object completed as graphql-core's ``execute_field`` would once resolved."""
        field_path = Path(path, direct.response_name, parent_type.name)
        assert direct.object_type is not None and direct.subfields is not None
        try:
            completed = self.execute_collected_subfields(
                direct.object_type, value, field_path, direct.subfields.grouped_field_set,
                direct.subfields.new_defer_usages, position_context,
            )  # fmt: skip
        except Exception as raw_error:
            self.handle_field_error(raw_error, direct.field_type, direct.field_details_list, field_path)
            return None
        if type(completed) is not dict and completed is not None and self.is_awaitable(completed):
            return self._completed_later(direct, field_path, completed)
        return completed

    def _complete_list(
        self,
        parent_type: GraphQLObjectType,
        direct: _Direct,
        path: Path | None,
        items: list[Any],
        position_context: Any,
    ) -> Any:
        """``direct``'s list of objects completed as graphql-core's ``complete_iterable_value`` would:
        an item's error nulls the item (or, when its type is non-null, the list, as the field's error)."""
        field_path = Path(path, direct.response_name, parent_type.name)
        assert direct.object_type is not None and direct.subfields is not None and direct.item_type is not None
        object_type, item_type = direct.object_type, direct.item_type
        grouped, defer_usages = direct.subfields.grouped_field_set, direct.subfields.new_defer_usages
        completed: list[Any] = []
        pending: list[int] = []
        try:
            for index, item in enumerate(items):
                item_path = Path(field_path, index, None)
                try:
                    value = (
                        None
                        if item is None
                        else self.execute_collected_subfields(
                            object_type, item, item_path, grouped, defer_usages, position_context
                        )
                    )
                except Exception as raw_error:
                    self.handle_field_error(raw_error, item_type, direct.field_details_list, item_path)
                    value = None
                if type(value) is not dict and value is not None and self.is_awaitable(value):
                    pending.append(index)
                    value = self._item_later(item_type, direct, item_path, value)
                completed.append(value)
        except Exception as raw_error:
            if pending:
                self.settle_in_background([completed[index] for index in pending])
            self.handle_field_error(raw_error, direct.field_type, direct.field_details_list, field_path)
            return None
        if pending:
            return self._completed_later(direct, field_path, _list_later(completed, pending))
        return completed

    async def _item_later(
        self, item_type: GraphQLOutputType, direct: _Direct, path: Path, completed: Awaitable[Any]
    ) -> Any:
        try:
            return await completed
        except Exception as raw_error:
            self.handle_field_error(raw_error, item_type, direct.field_details_list, path)
            return None

    async def _completed_later(self, direct: _Direct, path: Path, completed: Awaitable[Any]) -> Any:
        try:
            return await completed
        except Exception as raw_error:
            self.handle_field_error(raw_error, direct.field_type, direct.field_details_list, path)
            return None

    def _plan(self, parent_type: GraphQLObjectType, grouped_field_set: GroupedFieldSet) -> _Plan | None:
        leaves = self._plain_leaves.get(parent_type.name, {})
        objects = self._direct_objects.get(parent_type.name, {})
        lists = self._direct_lists.get(parent_type.name, {})
        if not leaves and not objects and not lists:
            return None
        direct, rest = [], {}
        for response_name, field_details_list in grouped_field_set.items():
            field_name = field_details_list[0].node.name.value
            kind: GraphQLScalarType | GraphQLEnumType | GraphQLObjectType
            item_type: GraphQLOutputType | None = None
            if field_name in leaves:
                attribute, kind = leaves[field_name]
                prefetched = False
            elif field_name in objects:
                attribute, prefetched = objects[field_name]
                kind = cast(GraphQLObjectType, get_nullable_type(parent_type.fields[field_name].type))
            elif field_name in lists and not any(details.node.directives for details in field_details_list):
                attribute, prefetched = lists[field_name], False  # a directive (``@stream``): graphql-core's
                listed = cast(GraphQLList[GraphQLOutputType], get_nullable_type(parent_type.fields[field_name].type))
                item_type = listed.of_type
                kind = cast(GraphQLObjectType, get_nullable_type(item_type))
            else:
                rest[response_name] = field_details_list
                continue
            field_type = parent_type.fields[field_name].type
            leaf = None if isinstance(kind, GraphQLObjectType) else kind
            object_type = kind if isinstance(kind, GraphQLObjectType) else None
            nullable = not isinstance(field_type, GraphQLNonNull)
            text = leaf is GraphQLString or leaf is GraphQLID
            names = self._enum_names.get(leaf.name) if isinstance(leaf, GraphQLEnumType) else None
            subfields = None if object_type is None else self.collect_subfields(object_type, field_details_list)
            direct.append(_Direct(response_name, attribute, prefetched, leaf, text, names, object_type, field_type,
                                  nullable, field_details_list, subfields, item_type))  # fmt: skip
        if not direct:
            return None
        order = tuple(grouped_field_set)
        in_order = order == tuple(d.response_name for d in direct) + tuple(rest)
        return _Plan(tuple(direct), rest, None if in_order else order)


class _NotPlain(Exception):
    """A leaf the plain path cannot complete (graphql-core's path reports it)."""


def _merged(leaves: dict[str, Any], others: dict[str, Any], order: tuple[str, ...] | None) -> dict[str, Any]:
    if order is None:
        leaves.update(others)
        return leaves
    return {name: leaves[name] if name in leaves else others[name] for name in order}


async def _merged_later(
    results: dict[str, Any],
    pending: list[tuple[str, Awaitable[Any]]],
    others: Awaitable[dict[str, Any]] | dict[str, Any],
    order: tuple[str, ...] | None,
) -> dict[str, Any]:
    awaitables = [awaitable for _, awaitable in pending]
    if not isinstance(others, dict):
        awaitables.append(others)
    done = await gather_with_cancel(*awaitables)
    results.update((name, value) for (name, _), value in zip(pending, done[: len(pending)], strict=True))
    return _merged(results, others if isinstance(others, dict) else done[-1], order)


async def _list_later(completed: list[Any], pending: list[int]) -> list[Any]:
    """``completed`` once its items at ``pending`` (awaitables) are awaited, as graphql-core gathers them."""
    done = await gather_with_cancel(*(completed[index] for index in pending))
    for index, value in zip(pending, done, strict=True):
        completed[index] = value
    return completed


def _helpers_of(executor: Any) -> GraphQLResolveInfoHelpers:
    """graphql-core's resolver helpers, reaching the executor through ``executor`` (a weak proxy).

    graphql-core binds them to the executor it stores them on (``Executor.__init__``:
    ``self.async_helpers = GraphQLResolveInfoHelpers(gather=self.gather_async_work,
    track=self.track_async_work)``, https://github.com/graphql-python/graphql-core/blob/v3.3.2/src/graphql/execution/executor.py;
    docs/adr/0007-reference-cycles-and-collector.md): a reference cycle that kept each
    query's executor, its context, DataLoaders and every row they loaded alive until the next
    collection (~500 objects a request; young collections of 20,000 such objects took 12 ms here,
    the inbox's p99 in bench.inbox_scaling). Without the cycle, a request's objects go when it ends.
    An executor outlives every call of its helpers: they run while it executes (a subscription's
    per-event copies share its original's, which lasts as long as the subscription).
    """

    def gather(values: Sequence[Awaitable[Any]]) -> Awaitable[list[Any]]:
        gathered: Awaitable[list[Any]] = executor.gather_async_work(values)
        return gathered

    def track(values: Sequence[Any]) -> None:
        executor.track_async_work(values)

    return GraphQLResolveInfoHelpers(gather=gather, track=track)
