"""What the schema does with errors that are not bugs: bad text refused up front, outages typed, one log line each.

- **Text a database cannot store** — a NUL (PostgreSQL refuses it in text and JSON) or a lone
  surrogate (no UTF-8 for it) in any string of the variables or the document's arguments — is
  refused before any resolver runs: ``VALIDATION_FAILED`` with ``field`` naming where it is
  (``input.values.description``), so nothing reaches a driver that would answer with a 500.
- **Outages** — the database not answering (``engine.database_unavailable``), the files directory
  not writable, a token issuer down (``UnavailableError``) — are ``UNAVAILABLE`` (HTTP 503 under the
  server), not a masked "Unexpected error.".
- **Anonymous callers** (``STEPWISE_ANONYMOUS_INTROSPECTION`` off) may not introspect the schema
  (``__schema``, ``__type``; ``__typename`` is fine) nor read "Did you mean …?" suggestions, which
  spell out field and type names one guess at a time. Signed-in callers (GraphiQL with a token in
  its Headers tab) and development see both.
- **Logging**: an expected error (one with a code, a client's request error, an outage) is one
  line, without a traceback; only a bug's keeps its traceback.

schema/pipeline.py applies the first three around every operation.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any

import strawberry
from graphql import (
    ArgumentNode,
    DocumentNode,
    GraphQLError,
    ListValueNode,
    ObjectValueNode,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
)
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


def literal_unstorable(document: DocumentNode) -> str | None:
    """Where the first string literal among ``document``'s arguments no database can store is, or None."""
    literals = (
        found for definition in document.definitions
        for found in _literal_strings(getattr(definition, "selection_set", None))
    )  # fmt: skip
    return next((w for literal, name in literals if (w := _unstorable_literal(literal, name))), None)


def outage(error: GraphQLError) -> bool:
    original = error.original_error
    return original is not None and (isinstance(original, UnavailableError) or database_unavailable(original))


def unavailable(error: GraphQLError) -> GraphQLError:
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
                log.warning("%s (%s)", unavailable(error).message, type(error.original_error).__name__)
            else:
                log.info(error)  # server.logs writes a GraphQL error as one line: where and what kind


def has_outage(errors: list[Any] | None) -> bool:
    return any((getattr(error, "extensions", None) or {}).get("code") == UNAVAILABLE for error in errors or [])


SUGGESTION = re.compile(r" Did you mean .*\?$")
"""graphql-core's "Did you mean …?": cut from an anonymous caller's errors when the schema is hidden
from them (``STEPWISE_ANONYMOUS_INTROSPECTION`` off, schema/pipeline.py), as introspection is."""
