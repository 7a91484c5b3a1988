"""What the schema does with errors that are not bugs: bad text refused up front, outages typed, one log line each.

- **Text a database cannot store** — a NUL (PostgreSQL refuses it in text and JSON) or a lone
  surrogate (no UTF-8 for it) in any string of the variables or the document's arguments — is
  refused before any resolver runs: ``VALIDATION_FAILED`` with ``field`` naming where it is
  (``input.values.description``), so nothing reaches a driver that would answer with a 500.
- **Outages** — the database not answering (``engine.database_unavailable``), the files directory
  not writable, a token issuer down (``UnavailableError``) — are ``UNAVAILABLE`` (HTTP 503 under the
  server), not a masked "Unexpected error.".
- **Logging**: an expected error (one with a code, a client's request error, an outage) is one
  line, without a traceback; only a bug's keeps its traceback.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any

import strawberry
from graphql import (
    ArgumentNode,
    GraphQLError,
    ListValueNode,
    NoSchemaIntrospectionCustomRule,
    ObjectValueNode,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
)
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext

from engine import StepwiseError, UnavailableError, database_unavailable

log = logging.getLogger("strawberry.execution")
UNAVAILABLE = "UNAVAILABLE"
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def unstorable(value: object, path: str) -> str | None:
    """The path of the first string in ``value`` (JSON: keys too) no database can store, or None."""
    pending: list[tuple[object, str]] = [(value, path)]
    while pending:
        item, where = pending.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                return where
        elif isinstance(item, Mapping):
            for key, inner in item.items():
                if isinstance(key, str) and _UNSTORABLE.search(key):
                    return f"{where}.{key!r}"
                pending.append((inner, f"{where}.{key}"))
        elif isinstance(item, list | tuple):
            pending.extend((inner, f"{where}.{index}") for index, inner in enumerate(item))
    return None


def _literal_strings(selections: SelectionSetNode | None) -> Iterator[tuple[ValueNode, str]]:
    pending: list[SelectionSetNode] = [selections] if selections is not None else []
    while pending:
        for selection in pending.pop().selections:
            for argument in getattr(selection, "arguments", None) or ():
                assert isinstance(argument, ArgumentNode)
                yield argument.value, argument.name.value
            inner = getattr(selection, "selection_set", None)
            if inner is not None:
                pending.append(inner)


def _unstorable_literal(value: ValueNode, path: str) -> str | None:
    pending: list[tuple[ValueNode, str]] = [(value, path)]
    while pending:
        node, where = pending.pop()
        if isinstance(node, StringValueNode) and _UNSTORABLE.search(node.value):
            return where
        if isinstance(node, ObjectValueNode):
            pending.extend((field.value, f"{where}.{field.name.value}") for field in node.fields)
        elif isinstance(node, ListValueNode):
            pending.extend((inner, f"{where}.{index}") for index, inner in enumerate(node.values))
    return None


class RefuseUnstorableText(SchemaExtension):
    """See the module docstring: runs once the operation validated, before its first resolver."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        where = unstorable(context.variables or {}, "variables")
        if where is not None:
            where = where.removeprefix("variables.")
        else:
            document = context.graphql_document
            literals = (
                found
                for definition in (document.definitions if document is not None else ())
                for found in _literal_strings(getattr(definition, "selection_set", None))
            )
            where = next((w for literal, name in literals if (w := _unstorable_literal(literal, name))), None)
        if where is not None:
            raise GraphQLError(
                f"{where}: text may not contain NUL characters or unpaired surrogates",
                extensions={"code": "VALIDATION_FAILED", "field": where},
            )
        yield


def outage(error: GraphQLError) -> bool:
    original = error.original_error
    return original is not None and (isinstance(original, UnavailableError) or database_unavailable(original))


class TypeOutages(SchemaExtension):
    """Turns a resolver's outage into ``UNAVAILABLE``; listed after MaskErrors, so it runs first."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and result.errors:
            result.errors = [_unavailable(error) if outage(error) else error for error in result.errors]


def _unavailable(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    message = original.message if isinstance(original, UnavailableError) else (
        "the database is not answering; try again shortly"
    )  # fmt: skip
    return GraphQLError(message, nodes=error.nodes, path=error.path, extensions={"code": UNAVAILABLE})


def expected(error: GraphQLError) -> bool:
    """Whether ``error`` is the client's or the world's doing rather than a bug of ours."""
    original = error.original_error
    if original is None or isinstance(original, GraphQLError | StepwiseError):
        return True
    return bool((error.extensions or {}).get("code")) or outage(error)


class StepwiseSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        for error in errors:
            if not expected(error):
                log.error(error, exc_info=error.original_error)
            elif outage(error):
                log.warning("%s (%s)", _unavailable(error).message, type(error.original_error).__name__)
            else:
                log.info(error)  # server.logs writes a GraphQL error as one line: where and what kind


def has_outage(errors: list[Any] | None) -> bool:
    return any((getattr(error, "extensions", None) or {}).get("code") == UNAVAILABLE for error in errors or [])


_SUGGESTION = re.compile(r" Did you mean .*\?$")


class HideSchemaFromAnonymous(SchemaExtension):
    """An anonymous caller may not introspect the schema (``__schema``, ``__type``; ``__typename`` is
    fine) nor read "Did you mean …?" suggestions, which spell out field and type names one guess at a
    time. Signed-in callers (GraphiQL with a token in its Headers tab) and development see both."""

    def on_operation(self) -> Iterator[None]:
        if getattr(self.execution_context.context, "viewer", None) is None:
            rules = self.execution_context.validation_rules
            self.execution_context.validation_rules = (*rules, NoSchemaIntrospectionCustomRule)
        yield

    def on_validate(self) -> Iterator[None]:
        yield
        if getattr(self.execution_context.context, "viewer", None) is None:
            for error in self.execution_context.pre_execution_errors or []:
                error.message = _SUGGESTION.sub("", error.message)
