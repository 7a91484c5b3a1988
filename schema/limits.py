"""Operation limits: what one GraphQL document may ask of the server, refused before any resolver runs.

Enforced by schema/pipeline.py, once per document text where the limit is the text's.

Each limit is a setting (the README's settings table) and a refusal is a request error whose
``extensions`` say which limit and its value: ``{"code": "MAX_DEPTH_EXCEEDED", "limit": 15}``.

- **Document size** (bytes of the query text) and **tokens** (graphql-core's ``max_tokens``: its
  lexer stops counting past it, so a huge document is never parsed whole).
- **Nesting**, checked on the text before it is parsed: the parser recurses per level, and a
  document nested a few hundred levels deep was Python's "maximum recursion depth exceeded".
- **Depth** (``QueryDepthLimiter``) and **aliases** (``MaxAliasesLimiter``) of the operation.
- **Cost**: every field selected costs 1; the fields under one that takes ``first`` cost ``first``
  times (its argument, its variable or its default), under a list without ``first``
  ``LIST_SIZE`` times, nested lists multiplicatively. Introspection (``__schema``, ``__type``) is free.
- **A field repeated** more than ``MAX_REPEATS`` times in one selection set (inline fragments
  included): graphql-core's check that repeated fields can be merged compares each pair, and a few
  hundred repeats within the token limit took half a second of validation each.
- **Several operations without ``operationName``** are refused rather than one of them run.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    is_leaf_type,
)

from engine import MAX_PAGE

LIST_SIZE = 10
"""What a list without ``first`` counts as (a task's documents, attempts, messages; an instance's tasks)."""
MAX_REPEATS = 10
# A larger ``first`` counts as the largest a connection takes (engine.paging), and the field itself
# refuses it with its typed error (``BAD_USER_INPUT`` naming ``first``) if the cost is within the limit.

DEPTH_ERROR = re.compile(r"exceeds maximum operation depth of (\d+)$")
ALIAS_ERROR = re.compile(r"^\d+ aliases found\. Allowed: (\d+)$")
TOKEN_ERROR = re.compile(r"Document contains more than (\d+) tokens")


@dataclass(frozen=True)
class OperationLimits:
    max_depth: int = 15
    max_aliases: int = 30
    max_tokens: int = 1_000
    max_document_bytes: int = 32_768
    max_cost: int = 25_000


def limit_error(code: str, message: str, limit: int, **more: object) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code, "limit": limit, **more})


def code_limit_errors(errors: Iterable[GraphQLError], pattern: re.Pattern[str], code: str) -> None:
    """Gives the errors of graphql-core's lexer and Strawberry's limiters, which carry only a message,
    the code and the limit."""
    for error in errors:
        found = pattern.search(error.message)
        if found is not None and "code" not in (error.extensions or {}):
            error.extensions = {"code": code, "limit": int(found.group(1))}


def most_repeated(definitions: Iterable[Any]) -> int:
    """The most times one response key is selected in one selection set, its inline fragments'
    fields counted with it (graphql-core merges them into one set of fields to compare)."""
    most = 0
    pending = [d.selection_set for d in definitions if getattr(d, "selection_set", None) is not None]
    while pending:
        keys: Counter[str] = Counter()
        flat = [pending.pop()]
        while flat:
            for selection in flat.pop().selections:
                if isinstance(selection, FieldNode):
                    keys[(selection.alias or selection.name).value] += 1
                    if selection.selection_set is not None:
                        pending.append(selection.selection_set)
                elif isinstance(selection, InlineFragmentNode):
                    flat.append(selection.selection_set)
        most = max(most, *keys.values(), 0)
    return most


def nesting(text: str) -> int:
    """The deepest nesting of ``{ ( [`` in a GraphQL text, outside strings and comments."""
    depth = deepest = 0
    i, end = 0, len(text)
    while i < end:
        char = text[i]
        if char == "#":
            newline = text.find("\n", i)
            i = end if newline < 0 else newline
        elif text.startswith('"""', i):
            close = text.find('"""', i + 3)
            i = end if close < 0 else close + 2
        elif char == '"':
            i += 1
            while i < end and text[i] not in '"\n':
                i += 2 if text[i] == "\\" else 1
        elif char in "{([":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "})]":
            depth -= 1
        i += 1
    return deepest


class Cost:
    """The estimated cost of one operation (module docstring); unknown fields (which validation will
    refuse) cost 1 and are not looked into."""

    def __init__(
        self, schema: GraphQLSchema, fragments: Mapping[str, FragmentDefinitionNode], variables: Mapping[str, Any],
        operation: OperationDefinitionNode,
    ) -> None:  # fmt: skip
        self.schema = schema
        self.fragments = fragments
        self.variables = dict(variables)
        for definition in operation.variable_definitions or ():
            name = definition.variable.name.value
            if name not in self.variables and isinstance(definition.default_value, IntValueNode):
                self.variables[name] = int(definition.default_value.value)

    def of(
        self, selections: SelectionSetNode, parent: GraphQLNamedType | None, seen: frozenset[str] = frozenset()
    ) -> int:
        total = 0
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                total += self._field(selection, parent, seen)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                total += self.of(selection.selection_set, inner, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is not None and name not in seen:
                    inner = self.schema.get_type(fragment.type_condition.name.value)
                    total += self.of(fragment.selection_set, inner, seen | {name})
        return total

    def _field(self, node: FieldNode, parent: GraphQLNamedType | None, seen: frozenset[str]) -> int:
        if node.name.value.startswith("__"):
            return 0
        fields = parent.fields if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType) else {}
        definition = fields.get(node.name.value)
        if definition is None or node.selection_set is None:
            return 1
        kind = get_named_type(definition.type)
        if is_leaf_type(kind):
            return 1
        return 1 + self._multiplier(node, definition) * self.of(node.selection_set, kind, seen)

    def _multiplier(self, node: FieldNode, definition: GraphQLField) -> int:
        if "first" in definition.args:
            return min(MAX_PAGE, max(1, self._first(node, definition)))
        kind = definition.type.of_type if isinstance(definition.type, GraphQLNonNull) else definition.type
        if isinstance(kind, GraphQLList) and node.name.value not in ("edges", "nodes"):
            return LIST_SIZE  # a connection's edges are counted by its `first`
        return 1

    def _first(self, node: FieldNode, definition: GraphQLField) -> int:
        for argument in node.arguments or ():
            if argument.name.value == "first":
                value = argument.value
                if isinstance(value, IntValueNode):
                    return int(value.value)
                if isinstance(value, VariableNode):
                    given = self.variables.get(value.name.value)
                    if isinstance(given, int) and not isinstance(given, bool):
                        return given
                break
        default = definition.args["first"].default_value
        return default if isinstance(default, int) else LIST_SIZE
