"""Every use of graphql-core (3.3) and Strawberry beyond their documented API, in one module.

The executor shortcut (:mod:`schema.execution`) and one execution per event for many subscribers
(:mod:`schema.subscriptions`) need what neither library documents. Each name here says which
upstream code it is and what breaks if that changes. ``tests/schema/test_library_internals.py``
checks the shapes relied on (a change fails there, by name, rather than deep inside a query), and
``make test-latest`` runs the schema tests on the newest releases. With the executor shortcut off
(``STEPWISE_FAST_EXECUTION=false``) its overrides step aside; the reference-cycle fix and the
subscriptions' sharing still use what is named here.
"""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLField, GraphQLObjectType, GraphQLSchema

# graphql-core 3.3's field collection (graphql/execution/collect_fields.py), not exported by
# ``graphql.execution``: a selection is a ``GroupedFieldSet`` (response name → ``FieldDetailsList``,
# each ``FieldDetails`` a node with its ``defer_usage`` and ``fragment_variable_values``), and
# ``collect_subfields`` returns ``CollectedFields``. graphql-core 3.2 passed ``dict[str,
# list[FieldNode]]``; a change of these shapes breaks ``execute_fields``'s plan and the subfield memo.
from graphql.execution.collect_fields import CollectedFields, FieldDetailsList, GroupedFieldSet

# Strawberry's execution context (strawberry/schema/schema.py), graphql-core's ``Executor`` with
# Strawberry's hooks; ``strawberry.Schema(execution_context_class=…)`` expects a subclass of it.
# Renamed or re-based, both executors here stop importing.
# Strawberry's validation (strawberry/schema/schema.py): graphql-core's ``validate`` with Strawberry's
# own two rules appended (``Maybe`` nulls, ``@oneOf`` inputs), what its ``ValidationCache`` calls.
# schema/pipeline.py validates a document once per text with it; moved, the server fails at import.
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext, validate_document

# Strawberry's converter (strawberry/schema/schema_converter.py) leaves each GraphQL type and field's
# Strawberry definition in its ``extensions`` under this key. Without it, no field is found plain
# (the shortcut does nothing) and no selection is shared between subscribers (slower, not wrong).
from strawberry.schema.schema_converter import GraphQLCoreConverter

__all__ = [
    "CollectedFields", "FieldDetailsList", "GroupedFieldSet", "StrawberryGraphQLCoreExecutionContext",
    "EXECUTOR_METHODS", "graphql_schema_of", "strawberry_definition_of", "resolver_function_of",
    "forget_subfield_memo", "middlewares_of", "requested_operation_name", "validate_document",
]  # fmt: skip


def graphql_schema_of(schema: strawberry.Schema) -> GraphQLSchema:
    """The graphql-core schema behind a Strawberry one: ``Schema._schema`` (strawberry/schema/schema.py),
    for which Strawberry has no public accessor. Renamed, ``build_schema`` fails at start-up."""
    return schema._schema


def strawberry_definition_of(graphql: GraphQLField | GraphQLObjectType) -> Any:
    """The Strawberry definition (a ``StrawberryField``, or a type's definition with its ``origin``
    class) the converter keeps in ``extensions`` (:data:`GraphQLCoreConverter.DEFINITION_BACKREF`)."""
    return graphql.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)


def resolver_function_of(definition: Any) -> Any:
    """The function a Strawberry field's resolver wraps (``StrawberryResolver.wrapped_func``,
    strawberry/types/fields/resolver.py), or None for a field without a resolver: where
    ``schema.sharing``'s mark is read. Renamed, no resolver reads as marked (shared less, never wrongly)."""
    resolver = getattr(definition, "base_resolver", None)
    return None if resolver is None else resolver.wrapped_func


def forget_subfield_memo(executor: StrawberryGraphQLCoreExecutionContext) -> None:
    """Give a per-event executor a subfield memo of its own: graphql-core's ``Executor.__init__``
    (graphql/execution/executor.py) makes ``_relevant_sub_fields``, which
    ``build_per_event_executor`` shares with every per-event copy; keyed by the ids of per-event
    lists it never hits across events and grows for a subscription's life (bench.push_memory). If the
    attribute is renamed this assignment does nothing and that growth is back:
    ``tests/schema/test_library_internals.py`` checks that an executor has it."""
    executor._relevant_sub_fields = {}


def middlewares_of(executor: StrawberryGraphQLCoreExecutionContext) -> tuple[Any, ...]:
    """The field middleware the executor wraps every resolver in (``Executor.middleware_manager``,
    graphql/execution/middleware.py): with any, the shortcut steps aside so each runs. Strawberry passes
    a manager always, empty when there is none."""
    manager = executor.middleware_manager
    return tuple(manager.middlewares) if manager is not None else ()


def requested_operation_name(execution: Any) -> str | None:
    """The ``operationName`` a request named, or None: Strawberry's ``ExecutionContext`` keeps it as
    ``_provided_operation_name`` (strawberry/types/execution.py), where its public ``operation_name``
    falls back to the document's only operation. Renamed, every request reads as naming none, and a
    document of several operations is refused with ``OPERATION_NAME_REQUIRED`` (schema/limits.py)."""
    name: str | None = getattr(execution, "_provided_operation_name", None)
    return name


EXECUTOR_METHODS: dict[str, tuple[str, ...]] = {
    # graphql-core 3.3's ``Executor`` (graphql/execution/executor.py), public names with undocumented
    # signatures: the parameters each override or call here relies on, in order (checked by the test).
    # Overridden by PlainFieldsExecutionContext (the shortcut): a changed signature, and queries fail.
    "execute_fields": ("self", "parent_type", "source_value", "path", "grouped_field_set", "position_context"),
    # Called by it to complete an object (or a list's items) it reads itself, with the selection it
    # collected once per plan (``collect_subfields``, below), and to report an error where graphql-core would.
    "execute_collected_subfields": (
        "self", "parent_type", "source_value", "path", "grouped_field_set", "new_defer_usages", "delivery_group_map",
    ),
    "handle_field_error": ("self", "raw_error", "return_type", "field_details_list", "path"),
    "settle_in_background": ("self", "awaitables"),
    # Bound into ``async_helpers`` by ``__init__``: the reference cycle schema.execution breaks.
    "gather_async_work": ("self", "values"),
    "track_async_work": ("self", "values"),
    # Overridden by SubscriptionExecutionContext: one execution per event, the subfield memo.
    "build_per_event_executor": ("self", "payload"),
    "collect_subfields": ("self", "return_type", "field_details_list"),
    "execute_operation": ("self", "serially"),
}  # fmt: skip
