"""How operations execute: Strawberry's executor, with plain leaves and prefetched relations taken directly.

Most fields of a page are leaves read straight off a type's attribute (``Task.title``,
``Task.status``): 550 of the 740 fields of a 50-task inbox page. graphql-core gives each of them a
resolve info, a resolver call, two awaitable checks and a walk through ``complete_value``; that is
about a third of the page's CPU (bench/profiling.py inbox). :func:`plain_leaves` finds these fields
once per schema, and :class:`ExecutionContext` reads and serializes them directly. Anything that
is not the plain case — no value for a non-null field, a value the scalar refuses, a missing
attribute — goes through graphql-core's own path, so errors read exactly as before.

A page that loads a relation for all its rows at once (``TaskConnection.page``: each task's step
and assignee) leaves the values in the row's ``prefetched`` dict. :func:`serve_prefetched` puts a
resolver in front of those fields that returns the prefetched value, so the 100 such fields of a
50-task page skip Strawberry's per-call resolver set-up (an ``Info``, argument conversion, the
extension chain); a row without the value calls the field's own resolver.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Protocol

from graphql import (
    GraphQLEnumType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfoHelpers,
    GraphQLScalarType,
    GraphQLSchema,
    Undefined,
)
from graphql.execution.collect_fields import FieldDetailsList
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

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any = None,
    ) -> Any:
        by_name = self._plain_leaves.get(parent_type.name)
        if by_name is not None:
            leaf = by_name.get(field_details_list[0].node.name.value)
            if leaf is not None:
                try:
                    value = getattr(source, leaf[0])
                    if value is not None:
                        serialized = leaf[1].coerce_output_value(value)
                        if serialized is not None and serialized is not Undefined:
                            return serialized
                except Exception:  # noqa: S110 — the standard path below reports it, located
                    pass
        return super().execute_field(parent_type, source, field_details_list, path, position_context)


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
