"""Lists in SQL compiled once: ``any_of`` (a list bound as one parameter) and ``sql_literals``.

SQLAlchemy's ``IN`` with an expanding parameter renders one placeholder per value again on every
execution (its "post-compile" step), for the statement as for the driver's statement cache; a
50-task page's two batches (its assignees and steps) and authentication spent 1.9 M of 38.9 M
instructions on that (bench.instructions). Bound as one list, the SQL is compiled once:

* PostgreSQL: ``column = ANY($1::VARCHAR[])``, an array parameter (the planner's own form of ``IN``);
* SQLite: ``column IN (SELECT value FROM json_each(?))``, the list as JSON text (JSON1, built into
  SQLite since 3.38 and into the older builds Python ships with).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, Dialect, String, TypeDecorator, bindparam, literal_column
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Boolean


class StringList(TypeDecorator[Sequence[str]]):
    """A list of strings as one parameter: an array on PostgreSQL, JSON text on SQLite."""

    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        return dialect.type_descriptor(ARRAY(String()) if dialect.name == "postgresql" else String())

    def process_bind_param(self, value: Iterable[str] | None, dialect: Dialect) -> Any:
        values = list(value or ())
        return values if dialect.name == "postgresql" else json.dumps(values)


def sql_literals(values: Iterable[str]) -> list[ColumnElement[str]]:
    """Constant strings written into the SQL: compiled once with the statement (``in_`` with a list
    binds an expanding parameter), and visible to the planner, which matches partial indexes'
    predicates on them. Only for the engine's own constants (statuses), never for input."""
    quoted: list[ColumnElement[str]] = []
    for value in values:
        if "'" in value or "\\" in value:
            raise ValueError(f"not a constant to write into SQL: {value!r}")
        quoted.append(literal_column(f"'{value}'", String()))
    return quoted


class AnyOf(FunctionElement[bool]):
    """Compiled below per dialect (a function element, so statements that use it are cached)."""

    inherit_cache = True
    type = Boolean()
    name = "any_of"


def any_of(column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """``column`` equal to any of the strings bound as ``name`` (a list, given at execution)."""
    # A comparison, not a function returning a boolean: SQLite's WHERE would add "= 1" to the latter
    # (which no index serves).
    return AnyOf(column, bindparam(name, type_=StringList())).as_comparison(1, 2)


@compiles(AnyOf, "postgresql")
def _any_of_array(element: AnyOf, compiler: SQLCompiler, **kw: Any) -> str:
    column, values = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"{column} = ANY({values})"


@compiles(AnyOf)
def _any_of_json_list(element: AnyOf, compiler: SQLCompiler, **kw: Any) -> str:
    column, values = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"{column} IN (SELECT value FROM json_each({values}))"
