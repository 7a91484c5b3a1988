"""How operations execute: Strawberry's executor, completing plain fields and prefetched relations itself.

Most fields of a page are leaves read straight off a type's attribute (``Task.title``,
``Task.status``): 550 of the 740 fields of a 50-task inbox page. graphql-core gives each of them a
resolve info, a resolver call, two awaitable checks and a walk through ``complete_value``; that is
about a third of the page's CPU (bench/profiling.py inbox). :func:`plain_leaves` finds these fields
once per schema, and :class:`PlainFieldsExecutionContext` reads and serializes an object's selected leaves in
one loop. Fields of an object type whose value needs no resolver — a plain attribute
(``TaskEdge.node``) or a relation the page prefetched (below) — are found by
:func:`direct_objects`, and their objects completed the same way, without a resolve info. Only
the other fields go to graphql-core. An object with anything that is not the plain case — no value
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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Protocol, cast

from graphql import (
    GraphQLEnumType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfoHelpers,
    GraphQLScalarType,
    GraphQLSchema,
    Undefined,
    get_nullable_type,
)
from graphql.pyutils import Path, gather_with_cancel
from strawberry.types.field import StrawberryField

from schema.library_internals import (
    FieldDetailsList,
    GroupedFieldSet,
    StrawberryGraphQLCoreExecutionContext,
    middlewares_of,
    strawberry_definition_of,
)

PLAIN_LEAVES = "stepwise.plain-leaves"
DIRECT_OBJECTS = "stepwise.direct-objects"
_ABSENT = object()


class Prefetching(Protocol):
    """A type whose rows may carry relations their page loaded for all of them (by Python field name)."""

    PREFETCHABLE: ClassVar[frozenset[str]]
    prefetched: dict[str, object]


# (attribute name, the leaf type that serializes it)
Leaf = tuple[str, GraphQLScalarType | GraphQLEnumType]


# (attribute name, whether it is read from the row's ``prefetched``)
DirectObject = tuple[str, bool]


class _Direct(NamedTuple):
    """A selected field :meth:`PlainFieldsExecutionContext.execute_fields` completes itself."""

    response_name: str
    attribute: str
    prefetched: bool
    leaf: GraphQLScalarType | GraphQLEnumType | None
    """the leaf type serializing it; None for an object (its own fields are completed the same way)"""
    object_type: GraphQLObjectType | None
    field_type: GraphQLOutputType
    nullable: bool
    field_details_list: FieldDetailsList


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
    serve_prefetched(schema)
    schema.extensions[DIRECT_OBJECTS] = direct_objects(schema)


def plain_leaves(schema: GraphQLSchema) -> dict[str, dict[str, Leaf]]:
    """Per object type, its fields that are a plain attribute of a scalar or enum type.

    Plain means what Strawberry itself calls a basic field (``StrawberryField.is_basic_field``: no
    resolver, no field extension, no permission) read with ``getattr`` (the default resolver) and
    taking no arguments.
    """
    found: dict[str, dict[str, Leaf]] = {}
    for type_ in schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        for name, field in type_.fields.items():
            definition = strawberry_definition_of(field)
            leaf = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
            if (
                isinstance(definition, StrawberryField)
                and definition.is_basic_field
                and definition.default_resolver is getattr
                and not field.args
                and isinstance(leaf, GraphQLScalarType | GraphQLEnumType)
            ):
                found.setdefault(type_.name, {})[name] = (definition.python_name, leaf)
    return found


def serve_prefetched(schema: GraphQLSchema) -> None:
    """Answer the ``PREFETCHABLE`` fields of :class:`Prefetching` types from ``prefetched`` when it has them.

    Only fields without field extensions qualify: a permission check must never be skipped.
    """
    for type_ in schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType):
            continue
        origin = getattr(strawberry_definition_of(type_), "origin", None)
        names: frozenset[str] = getattr(origin, "PREFETCHABLE", frozenset())
        served = set()
        for field in type_.fields.values():
            definition = strawberry_definition_of(field)
            if isinstance(definition, StrawberryField) and definition.python_name in names:
                if definition.extensions or field.resolve is None:
                    raise TypeError(f"{type_.name}.{definition.python_name} cannot be prefetched: it has extensions")
                field.resolve = _prefetched_or(definition.python_name, field.resolve)
                served.add(definition.python_name)
        if served != names:
            raise TypeError(f"{type_.name} names unknown fields as prefetchable: {sorted(names - served)}")


def direct_objects(schema: GraphQLSchema) -> dict[str, dict[str, DirectObject]]:
    """Per object type, its fields of an object type whose value needs no resolver call.

    That is a plain attribute (as in :func:`plain_leaves`) or a field a page prefetches (see
    :func:`serve_prefetched`), of an object type that does not check its values (``is_type_of``);
    not a list, no arguments, no field extension.
    """
    found: dict[str, dict[str, DirectObject]] = {}
    for type_ in schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        origin = getattr(strawberry_definition_of(type_), "origin", None)
        prefetchable: frozenset[str] = getattr(origin, "PREFETCHABLE", frozenset())
        for name, field in type_.fields.items():
            definition = strawberry_definition_of(field)
            target = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
            if (
                not isinstance(definition, StrawberryField)
                or definition.extensions
                or field.args
                or not isinstance(target, GraphQLObjectType)
                or target.is_type_of is not None
            ):
                continue
            if definition.python_name in prefetchable:
                found.setdefault(type_.name, {})[name] = (definition.python_name, True)
            elif definition.is_basic_field and definition.default_resolver is getattr:
                found.setdefault(type_.name, {})[name] = (definition.python_name, False)
    return found


def _prefetched_or(name: str, resolve: Callable[..., Any]) -> Callable[..., Any]:
    def resolve_prefetched(source: Prefetching, info: Any, **arguments: Any) -> Any:
        found = source.prefetched.get(name, _ABSENT)
        return resolve(source, info, **arguments) if found is _ABSENT else found

    return resolve_prefetched


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
                    objects.append((direct, value))
                    results[direct.response_name] = None  # completed below, in its place
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
                completed = self._complete_object(parent_type, direct, path, value, position_context)
                if self.is_awaitable(completed):
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
        assert direct.object_type is not None
        try:
            completed = self.collect_and_execute_subfields(
                direct.object_type, direct.field_details_list, field_path, value, position_context
            )
        except Exception as raw_error:
            self.handle_field_error(raw_error, direct.field_type, direct.field_details_list, field_path)
            return None
        if self.is_awaitable(completed):
            return self._completed_later(direct, field_path, completed)
        return completed

    async def _completed_later(self, direct: _Direct, path: Path, completed: Awaitable[Any]) -> Any:
        try:
            return await completed
        except Exception as raw_error:
            self.handle_field_error(raw_error, direct.field_type, direct.field_details_list, path)
            return None

    def _plan(self, parent_type: GraphQLObjectType, grouped_field_set: GroupedFieldSet) -> _Plan | None:
        leaves = self._plain_leaves.get(parent_type.name, {})
        objects = self._direct_objects.get(parent_type.name, {})
        if not leaves and not objects:
            return None
        direct, rest = [], {}
        for response_name, field_details_list in grouped_field_set.items():
            field_name = field_details_list[0].node.name.value
            kind: GraphQLScalarType | GraphQLEnumType | GraphQLObjectType
            if field_name in leaves:
                attribute, kind = leaves[field_name]
                prefetched = False
            elif field_name in objects:
                attribute, prefetched = objects[field_name]
                kind = cast(GraphQLObjectType, get_nullable_type(parent_type.fields[field_name].type))
            else:
                rest[response_name] = field_details_list
                continue
            field_type = parent_type.fields[field_name].type
            leaf = None if isinstance(kind, GraphQLObjectType) else kind
            object_type = kind if isinstance(kind, GraphQLObjectType) else None
            nullable = not isinstance(field_type, GraphQLNonNull)
            direct.append(_Direct(response_name, attribute, prefetched, leaf, object_type, field_type, nullable,
                                  field_details_list))  # fmt: skip
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
