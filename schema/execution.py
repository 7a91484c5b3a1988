"""How operations execute: Strawberry's executor, with plain leaves and prefetched relations taken directly.

Most fields of a page are leaves read straight off a type's attribute (``Task.title``,
``Task.status``): 550 of the 740 fields of a 50-task inbox page. graphql-core gives each of them a
resolve info, a resolver call, two awaitable checks and a walk through ``complete_value``; that is
about a third of the page's CPU (bench/profiling.py inbox). :func:`plain_leaves` finds these fields
once per schema, and :class:`ExecutionContext` reads and serializes an object's selected leaves in
one loop, handing only its other fields to graphql-core. An object with anything that is not the
plain case — no value for a non-null field, a value the scalar refuses, a missing attribute — goes
through graphql-core's own path whole, so errors read exactly as before.

A page that loads a relation for all its rows at once (``TaskConnection.page``: each task's step
and assignee) leaves the values in the row's ``prefetched`` dict. :func:`serve_prefetched` puts a
resolver in front of those fields that returns the prefetched value, so the 100 such fields of a
50-task page skip Strawberry's per-call resolver set-up (an ``Info``, argument conversion, the
extension chain); a row without the value calls the field's own resolver.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, cast

from graphql import (
    GraphQLEnumType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfoHelpers,
    GraphQLScalarType,
    GraphQLSchema,
    Undefined,
)
from graphql.execution.collect_fields import GroupedFieldSet
from graphql.pyutils import Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

PLAIN_LEAVES = "stepwise.plain-leaves"
_ABSENT = object()


class Prefetching(Protocol):
    """A type whose rows may carry relations their page loaded for all of them (by Python field name)."""

    PREFETCHABLE: ClassVar[frozenset[str]]
    prefetched: dict[str, object]


# (attribute name, the leaf type that serializes it)
Leaf = tuple[str, GraphQLScalarType | GraphQLEnumType]


@dataclass(frozen=True)
class _Plan:
    """How :meth:`ExecutionContext.execute_fields` completes one selection of an object type."""

    leaves: tuple[tuple[str, str, GraphQLScalarType | GraphQLEnumType, bool], ...]
    """(response name, attribute, leaf type, nullable) of the selected plain leaves"""
    rest: GroupedFieldSet
    """the other selected fields, for graphql-core"""
    order: tuple[str, ...] | None
    """the response names in the query's order, when leaves-then-rest is not it"""


def prepare(schema: GraphQLSchema) -> None:
    """Set ``schema`` up for :class:`ExecutionContext`: its plain leaves found, its prefetched fields served."""
    schema.extensions[PLAIN_LEAVES] = plain_leaves(schema)
    serve_prefetched(schema)


def plain_leaves(schema: GraphQLSchema) -> dict[str, dict[str, Leaf]]:
    """Per object type, its fields that are a plain attribute of a scalar or enum type.

    Plain means what Strawberry itself calls a basic field (no resolver, no field extension, no
    permission) read with ``getattr`` (the default resolver) and taking no arguments.
    """
    found: dict[str, dict[str, Leaf]] = {}
    for type_ in schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        for name, field in type_.fields.items():
            definition = field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
            leaf = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
            if (
                isinstance(definition, StrawberryField)
                and getattr(field.resolve, "_is_default", False)
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
        origin = getattr(type_.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF), "origin", None)
        names: frozenset[str] = getattr(origin, "PREFETCHABLE", frozenset())
        served = set()
        for field in type_.fields.values():
            definition = field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
            if isinstance(definition, StrawberryField) and definition.python_name in names:
                if definition.extensions or field.resolve is None:
                    raise TypeError(f"{type_.name}.{definition.python_name} cannot be prefetched: it has extensions")
                field.resolve = _prefetched_or(definition.python_name, field.resolve)
                served.add(definition.python_name)
        if served != names:
            raise TypeError(f"{type_.name} names unknown fields as prefetchable: {sorted(names - served)}")


def _prefetched_or(name: str, resolve: Callable[..., Any]) -> Callable[..., Any]:
    def resolve_prefetched(source: Prefetching, info: Any, **arguments: Any) -> Any:
        found = source.prefetched.get(name, _ABSENT)
        return resolve(source, info, **arguments) if found is _ABSENT else found

    return resolve_prefetched


class ExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, reading plain leaves (see :func:`plain_leaves`) directly.

    Without :func:`prepare` on the schema it executes exactly as Strawberry's own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        leaves = self.schema.extensions.get(PLAIN_LEAVES)
        # Middleware (a schema extension's ``resolve``) wraps every resolver; with any, every field
        # takes the standard path. Strawberry passes a manager always, empty when there is none.
        middleware = self.middleware_manager.middlewares if self.middleware_manager else ()
        self._plain_leaves: dict[str, dict[str, Leaf]] = leaves if leaves and not middleware else {}
        self.async_helpers = _helpers_of(weakref.proxy(self))
        # by the selection's id: its dict is the executor's (cached per object type and nodes) and
        # lives as long as the executor, like this cache
        self._plans: dict[int, _Plan | None] = {}

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> Any:
        """Complete an object's plain leaves in one loop, the other fields through graphql-core.

        A leaf without a value the plain path can give (a null where the type forbids one, a value
        the scalar refuses, a missing attribute) sends the whole object through graphql-core's own
        path, which reports it located, as before.
        """
        plan = self._plans.get(id(grouped_field_set), _ABSENT)
        if plan is _ABSENT:
            plan = self._plans[id(grouped_field_set)] = self._plan(parent_type, grouped_field_set)
        if plan is None:
            return super().execute_fields(parent_type, source_value, path, grouped_field_set, position_context)
        assert isinstance(plan, _Plan)
        results: dict[str, Any] = {}
        try:
            for response_name, attribute, leaf, nullable in plan.leaves:
                value = getattr(source_value, attribute)
                if value is None:
                    if not nullable:
                        raise _NotPlain
                    results[response_name] = None
                    continue
                serialized = leaf.coerce_output_value(value)
                if serialized is None or serialized is Undefined:
                    raise _NotPlain
                results[response_name] = serialized
        except Exception:
            return super().execute_fields(parent_type, source_value, path, grouped_field_set, position_context)
        if not plan.rest:
            return results
        others = super().execute_fields(parent_type, source_value, path, plan.rest, position_context)
        if self.is_awaitable(others):
            return _merged_later(results, others, plan.order)
        return _merged(results, cast(dict[str, Any], others), plan.order)

    def _plan(self, parent_type: GraphQLObjectType, grouped_field_set: GroupedFieldSet) -> _Plan | None:
        by_name = self._plain_leaves.get(parent_type.name)
        if by_name is None:
            return None
        leaves, rest = [], {}
        for response_name, field_details_list in grouped_field_set.items():
            field_name = field_details_list[0].node.name.value
            leaf = by_name.get(field_name)
            if leaf is None:
                rest[response_name] = field_details_list
            else:
                nullable = not isinstance(parent_type.fields[field_name].type, GraphQLNonNull)
                leaves.append((response_name, leaf[0], leaf[1], nullable))
        if not leaves:
            return None
        order = tuple(grouped_field_set)
        in_order = order == tuple(name for name, *_ in leaves) + tuple(rest)
        return _Plan(tuple(leaves), rest, None if in_order else order)


class _NotPlain(Exception):
    """A leaf the plain path cannot complete (graphql-core's path reports it)."""


def _merged(leaves: dict[str, Any], others: dict[str, Any], order: tuple[str, ...] | None) -> dict[str, Any]:
    if order is None:
        leaves.update(others)
        return leaves
    return {name: leaves[name] if name in leaves else others[name] for name in order}


async def _merged_later(
    leaves: dict[str, Any], others: Awaitable[dict[str, Any]], order: tuple[str, ...] | None
) -> dict[str, Any]:
    return _merged(leaves, await others, order)


def _helpers_of(executor: Any) -> GraphQLResolveInfoHelpers:
    """graphql-core's resolver helpers, reaching the executor through ``executor`` (a weak proxy).

    graphql-core binds them to the executor it stores them on: a reference cycle that kept each
    query's executor, its context, DataLoaders and every row they loaded alive until the next
    collection (~500 objects a request; young collections of 20,000 such objects took 12 ms here,
    the inbox's p99 in bench.inbox_scaling). Without the cycle, a request's objects go when it ends.
    An executor outlives every call of its helpers: they run while it executes (a subscription's
    per-event copies share its original's, which lasts as long as the subscription).
    """

    def gather(values: Sequence[Awaitable[Any]]) -> Awaitable[list[Any]]:
        return executor.gather_async_work(values)  # type: ignore[no-any-return]

    def track(values: Sequence[Any]) -> None:
        executor.track_async_work(values)

    return GraphQLResolveInfoHelpers(gather=gather, track=track)
