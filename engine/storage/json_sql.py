"""The SQL :mod:`engine.storage.data_search` builds its conditions and orderings from: the JSON value at a
checked path of a JSON column, its JSON type, a date-time at it, and bound JSON and time parameters, each
compiled once for PostgreSQL (``jsonb`` operators, which a definition's ``searchable`` expression indexes
serve) and once for SQLite (``json_extract`` and ``json_type``).

The path is a literal in the SQL (the planner matches an expression index only so): callers check it
segment by segment first (:mod:`engine.definitions.datapaths`); values are always bound parameters.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, String, bindparam
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import Boolean, NullType


class JsonKind(StrEnum):
    NUMBER = "number"
    STRING = "string"
    BOOLEAN = "boolean"
    DATE = "date"


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class _AtPath(ColumnElement[Any]):
    """Something of the JSON value at a checked path of a JSON column, compiled per dialect."""

    inherit_cache = True
    type = NullType()
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("segments", InternalTraversal.dp_string_list),
    ]

    def __init__(self, column: ColumnElement[Any], segments: Sequence[str]) -> None:
        self.column = column
        self.segments = list(segments)


class JsonAt(_AtPath):
    """The value: ``jsonb`` on PostgreSQL, what ``json_extract`` gives on SQLite (SQL NULL when absent)."""

    inherit_cache = True


class JsonTypeAt(_AtPath):
    """Its type, named alike on both databases (``number``, ``string``, ``boolean``, ``array``,
    ``object``, ``null``; SQL NULL when absent)."""

    inherit_cache = True


class JsonTimeAt(_AtPath):
    """Its instant, for a string in ISO 8601 form (else NULL): ``timestamptz`` on PostgreSQL, a Julian day on SQLite."""

    inherit_cache = True


class JsonParam(ColumnElement[Any]):
    """A bound JSON text, as the type :class:`JsonAt` compares with: ``jsonb`` on PostgreSQL, on
    SQLite the value ``json_extract`` reads from it."""

    inherit_cache = True
    type = NullType()
    _traverse_internals = [("param", InternalTraversal.dp_clauseelement)]

    def __init__(self, value: Any) -> None:
        self.param = bindparam(None, json.dumps(value), type_=String(), unique=True)


class TimeParam(ColumnElement[Any]):
    """A bound ISO 8601 instant, as :class:`JsonTimeAt` gives it."""

    inherit_cache = True
    type = NullType()
    _traverse_internals = [("param", InternalTraversal.dp_clauseelement)]

    def __init__(self, moment: datetime) -> None:
        self.param: BindParameter[str] = bindparam(None, moment.isoformat(), type_=String(), unique=True)


def _pg_path(element: _AtPath, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.column, **kw)} #> {_sql_string('{' + ','.join(element.segments) + '}')})"


def _sqlite_path(element: _AtPath) -> str:
    return _sql_string("$." + ".".join(element.segments))


@compiles(JsonAt, "postgresql")
def _json_at_pg(element: JsonAt, compiler: SQLCompiler, **kw: Any) -> str:
    return _pg_path(element, compiler, **kw)


@compiles(JsonAt, "sqlite")
def _json_at_sqlite(element: JsonAt, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_extract({compiler.process(element.column, **kw)}, {_sqlite_path(element)})"


@compiles(JsonTypeAt, "postgresql")
def _json_type_pg(element: JsonTypeAt, compiler: SQLCompiler, **kw: Any) -> str:
    return f"jsonb_typeof({_pg_path(element, compiler, **kw)})"


@compiles(JsonTypeAt, "sqlite")
def _json_type_sqlite(element: JsonTypeAt, compiler: SQLCompiler, **kw: Any) -> str:
    found = f"json_type({compiler.process(element.column, **kw)}, {_sqlite_path(element)})"
    return (f"(CASE {found} WHEN 'integer' THEN 'number' WHEN 'real' THEN 'number' WHEN 'text' THEN 'string' "
            f"WHEN 'true' THEN 'boolean' WHEN 'false' THEN 'boolean' ELSE {found} END)")  # fmt: skip


@compiles(JsonTimeAt, "postgresql")
def _json_time_pg(element: JsonTimeAt, compiler: SQLCompiler, **kw: Any) -> str:
    return f"stepwise_json_timestamp({_pg_path(element, compiler, **kw)})"


@compiles(JsonTimeAt, "sqlite")
def _json_time_sqlite(element: JsonTimeAt, compiler: SQLCompiler, **kw: Any) -> str:
    # julianday() also reads a bare number as a day number: only date-shaped text is a date here.
    column, path = compiler.process(element.column, **kw), _sqlite_path(element)
    return (
        f"(CASE WHEN json_type({column}, {path}) = 'text' AND json_extract({column}, {path}) GLOB "
        f"'[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' THEN julianday(json_extract({column}, {path})) END)"
    )


@compiles(JsonParam, "postgresql")
def _json_param_pg(element: JsonParam, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.param, **kw)} AS JSONB)"


@compiles(JsonParam, "sqlite")
def _json_param_sqlite(element: JsonParam, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_extract({compiler.process(element.param, **kw)}, '$')"


@compiles(TimeParam, "postgresql")
def _time_param_pg(element: TimeParam, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.param, **kw)} AS TIMESTAMPTZ)"


@compiles(TimeParam, "sqlite")
def _time_param_sqlite(element: TimeParam, compiler: SQLCompiler, **kw: Any) -> str:
    return f"julianday({compiler.process(element.param, **kw)})"


class ArrayHas(ColumnElement[bool]):
    """Whether the value at the path is an array with an element of ``kind`` equal to a scalar."""

    inherit_cache = True
    type = Boolean()
    _traverse_internals = [
        ("at", InternalTraversal.dp_clauseelement),
        ("element", InternalTraversal.dp_clauseelement),
        ("kind", InternalTraversal.dp_string),
    ]

    def __init__(self, at: JsonAt, value: Any, kind: JsonKind) -> None:
        self.at, self.element, self.kind = at, JsonParam(value), kind.value


@compiles(ArrayHas, "postgresql")
def _array_has_pg(element: ArrayHas, compiler: SQLCompiler, **kw: Any) -> str:
    at = compiler.process(element.at, **kw)
    return f"(jsonb_typeof({at}) = 'array' AND {at} @> jsonb_build_array({compiler.process(element.element, **kw)}))"


_SQLITE_TYPES = {"number": "('integer', 'real')", "string": "('text')", "boolean": "('true', 'false')"}


@compiles(ArrayHas, "sqlite")
def _array_has_sqlite(element: ArrayHas, compiler: SQLCompiler, **kw: Any) -> str:
    column, path = compiler.process(element.at.column, **kw), _sqlite_path(element.at)
    return (
        f"(json_type({column}, {path}) = 'array' AND EXISTS (SELECT 1 FROM json_each({column}, {path}) AS e "
        f"WHERE e.type IN {_SQLITE_TYPES[element.kind]} AND e.value = {compiler.process(element.element, **kw)}))"
    )


class ContainsText(ColumnElement[bool]):
    """Whether the string at the path contains a substring (case-sensitive)."""

    inherit_cache = True
    type = Boolean()
    _traverse_internals = [("at", InternalTraversal.dp_clauseelement), ("param", InternalTraversal.dp_clauseelement)]

    def __init__(self, at: JsonAt, text: str) -> None:
        self.at = at
        self.param = bindparam(None, text, type_=String(), unique=True)


@compiles(ContainsText, "postgresql")
def _contains_pg(element: ContainsText, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(strpos({compiler.process(element.at, **kw)} #>> '{{}}', {compiler.process(element.param, **kw)}) > 0)"


@compiles(ContainsText, "sqlite")
def _contains_sqlite(element: ContainsText, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(instr({compiler.process(element.at, **kw)}, {compiler.process(element.param, **kw)}) > 0)"


class JsonSortKey(_AtPath):
    """The value to order by: ``jsonb`` (absent: JSON null) on PostgreSQL, ``json_extract``'s (absent: 0) on SQLite."""

    inherit_cache = True


@compiles(JsonSortKey, "postgresql")
def _sort_key_pg(element: JsonSortKey, compiler: SQLCompiler, **kw: Any) -> str:
    return f"coalesce({_pg_path(element, compiler, **kw)}, 'null'::jsonb)"


@compiles(JsonSortKey, "sqlite")
def _sort_key_sqlite(element: JsonSortKey, compiler: SQLCompiler, **kw: Any) -> str:
    return f"coalesce({_json_at_sqlite(JsonAt(element.column, element.segments), compiler, **kw)}, 0)"
