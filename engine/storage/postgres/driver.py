"""Statements run on asyncpg's own connection, past SQLAlchemy's execution (a transition's hot reads
and its last statement outside a transaction: :class:`~engine.storage.deferred.TransitionConnection`).

A statement is compiled once for the dialect; its parameters and result columns still go through
their types' processors, so values read and written are those SQLAlchemy's own execution gives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ClauseElement, Executable
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler


async def fetch_on_driver(
    driver: Any, statement: Executable, dialect: Dialect, parameters: dict[str, Any]
) -> list[dict[str, Any]]:
    """The rows of ``statement`` run on ``driver`` (an asyncpg connection), by column key."""
    prepared = _for_driver(statement, dialect)
    arguments = [parameters[name] if bind is None else bind(parameters[name]) for name, bind in prepared.parameters]
    records = await driver.fetch(prepared.sql, *arguments)
    rows = [dict(record.items()) for record in records]
    for row in rows:
        for key, result in prepared.results:
            row[key] = result(row[key])
    return rows


class DriverRow:
    """A row read on the driver's own connection, as the repositories use a SQLAlchemy ``Row``:
    attributes by column key, and ``_mapping``."""

    __slots__ = ("_mapping",)

    def __init__(self, mapping: dict[str, Any]) -> None:
        self._mapping = mapping

    def __getattr__(self, name: str) -> Any:
        try:
            return self._mapping[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(frozen=True)
class _DriverStatement:
    sql: str
    parameters: tuple[tuple[str, Callable[[Any], Any] | None], ...]
    """Each positional parameter's name and the bind processor of its type, if it has one."""
    results: tuple[tuple[str, Callable[[Any], Any]], ...]
    """The result columns whose types process what the driver returns, with their processors."""


_DRIVER_STATEMENTS: dict[Executable, _DriverStatement] = {}


def _for_driver(statement: Executable, dialect: Dialect) -> _DriverStatement:
    """``statement`` compiled for ``dialect``'s driver, once (statements passed here are long-lived)."""
    found = _DRIVER_STATEMENTS.get(statement)
    if found is None:
        assert isinstance(statement, ClauseElement), f"not a statement that compiles: {statement!r}"
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))  # a statement compiles with a SQLCompiler
        binds, positions = compiled.binds, compiled.positiontup
        assert positions is not None, "asyncpg's parameters are positional ($1, $2…)"
        columns = getattr(statement, "selected_columns", ())
        results = ((c.key, c.type.dialect_impl(dialect).result_processor(dialect, None)) for c in columns)
        found = _DRIVER_STATEMENTS[statement] = _DriverStatement(
            compiled.string,
            tuple((name, binds[name].type.dialect_impl(dialect).bind_processor(dialect))
                  for name in positions),
            tuple((key, processor) for key, processor in results if processor is not None),
        )  # fmt: skip
    return found
