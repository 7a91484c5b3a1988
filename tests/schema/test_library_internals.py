"""The shapes of graphql-core and Strawberry that schema/library_internals.py relies on beyond their
documented API: an upgrade that changes one fails here, by name (`make test-latest` runs this on the
newest releases)."""

from __future__ import annotations

import inspect

import strawberry
from graphql import GraphQLSchema, parse, specified_rules
from graphql.execution import Executor
from strawberry.types.execution import ExecutionContext
from strawberry.types.field import StrawberryField

from schema.library_internals import (
    EXECUTOR_METHODS,
    StrawberryGraphQLCoreExecutionContext,
    forget_subfield_memo,
    graphql_schema_of,
    middlewares_of,
    requested_operation_name,
    resolver_function_of,
    strawberry_definition_of,
    validate_document,
)


@strawberry.type
class Query:
    plain: str = "plain"

    @strawberry.field
    def resolved(self) -> str:
        return "resolved"


def test_the_executor_methods_relied_on_have_the_parameters_relied_on() -> None:
    assert issubclass(StrawberryGraphQLCoreExecutionContext, Executor)
    for name, parameters in EXECUTOR_METHODS.items():
        method = getattr(StrawberryGraphQLCoreExecutionContext, name, None)
        assert method is not None, f"graphql-core's Executor has no {name} any more"
        assert tuple(inspect.signature(method).parameters) == parameters, name


def test_strawberrys_definitions_and_resolvers_are_where_they_are_looked_for() -> None:
    schema = graphql_schema_of(strawberry.Schema(query=Query))
    assert isinstance(schema, GraphQLSchema)
    query = schema.query_type
    assert query is not None
    assert getattr(strawberry_definition_of(query), "origin", None) is Query
    plain, resolved = (
        strawberry_definition_of(query.fields["plain"]),
        strawberry_definition_of(query.fields["resolved"]),
    )
    assert isinstance(plain, StrawberryField) and isinstance(resolved, StrawberryField)
    assert plain.is_basic_field and not resolved.is_basic_field
    assert resolver_function_of(plain) is None
    assert resolver_function_of(resolved).__name__ == "resolved"


def test_strawberry_keeps_the_operation_name_a_request_named() -> None:
    named = ExecutionContext(query="query a { plain } query b { plain }", schema=strawberry.Schema(query=Query),
                             allowed_operations=(), provided_operation_name="b")  # fmt: skip
    assert requested_operation_name(named) == "b"


def test_an_executor_has_the_subfield_memo_and_middleware_relied_on() -> None:
    schema = graphql_schema_of(strawberry.Schema(query=Query))
    executor = StrawberryGraphQLCoreExecutionContext.build(schema, parse("{ plain }"))
    assert isinstance(executor, StrawberryGraphQLCoreExecutionContext), executor
    assert isinstance(executor._relevant_sub_fields, dict)  # what forget_subfield_memo replaces
    memo = executor._relevant_sub_fields
    forget_subfield_memo(executor)
    assert executor._relevant_sub_fields is not memo
    assert middlewares_of(executor) == ()


def test_strawberrys_validation_appends_its_own_rules_to_the_ones_given() -> None:
    schema = graphql_schema_of(strawberry.Schema(query=Query))
    assert validate_document(schema, parse("{ plain }"), tuple(specified_rules)) == []
    [error] = validate_document(schema, parse("{ missing }"), tuple(specified_rules))
    assert "Cannot query field 'missing'" in error.message
    # with no rules given, Strawberry's own still run (and graphql-core's do not)
    assert validate_document(schema, parse("{ missing }"), ()) == []
