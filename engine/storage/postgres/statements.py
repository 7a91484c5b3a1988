"""A transition's deferred writes as JSON arrays and parameters of one PostgreSQL statement
(:mod:`engine.storage.postgres.finish`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BindParameter, Table, bindparam
from sqlalchemy.dialects import postgresql


def insert_from_json(table: Table, columns: tuple[str, ...], parameter: str, *, only_after: str | None = None) -> str:
    """``INSERT INTO table (columns)`` from the JSON array ``:parameter`` (rows of :func:`json_row`);
    with ``only_after``, only if that CTE of the same statement returned a row. It returns a row per
    row inserted (``true``: not every table has an ``id``), for the statement to count."""
    names = ", ".join(f'"{name}"' for name in columns)
    values = ", ".join(_from_json(table, name) for name in columns)
    rows = f"jsonb_to_recordset(:{parameter}) AS r({_typed_columns(table, columns)})"
    condition = f" WHERE EXISTS (SELECT FROM {only_after})" if only_after else ""
    return f"INSERT INTO {table.name} ({names}) SELECT {values} FROM {rows}{condition} RETURNING true"


def update_from_parameters(table: Table, columns: tuple[str, ...], prefix: str) -> str:
    """``UPDATE table SET columns`` of the row ``:<prefix>b_id`` if still at ``:<prefix>b_revision``,
    the values from ``:<prefix><column>``; returns its id. (A row at a time, not a JSON array: the
    planner then always finds the row by its key.)"""
    assignments = ", ".join(f'"{name}" = :{prefix}{name}' for name in columns)
    match = f"id = :{prefix}b_id AND revision = :{prefix}b_revision"
    return f"UPDATE {table.name} SET {assignments} WHERE {match} RETURNING id"


def update_parameters(table: Table, columns: tuple[str, ...], prefix: str) -> list[BindParameter[Any]]:
    """The typed parameters of :func:`update_from_parameters` (the columns' own types bind them)."""
    return [bindparam(f"{prefix}{name}", type_=table.c[name].type) for name in columns]


def json_row(row: dict[str, Any], columns: tuple[str, ...] | None = None) -> dict[str, Any]:
    """``row``'s ``columns`` (all by default) as a JSON object: times as ISO 8601 text, the rest as
    they are. A None is left out: ``jsonb_to_recordset`` reads a missing key as NULL, as it reads a
    JSON null (and :func:`insert_from_json` stores a JSON column's NULL as JSON ``null`` either way),
    and a task's row is a third nulls, which the statement's parameter would otherwise carry and
    PostgreSQL parse at every transition."""
    return {name: _json_value(value) for name in (row if columns is None else columns)
            if (value := row[name]) is not None}  # fmt: skip


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use an aware UTC datetime")
        return value.isoformat()
    return value


def _typed_columns(table: Table, columns: tuple[str, ...]) -> str:
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves it unannotated
    return ", ".join(f'"{name}" {table.c[name].type.compile(dialect=dialect)}' for name in columns)


def _from_json(table: Table, name: str) -> str:
    """A column's value from the JSON row ``r``. A JSON column's Python None is stored as JSON
    ``null``, as SQLAlchemy's own statements store it."""
    return f"""coalesce(r."{name}", 'null')""" if isinstance(table.c[name].type, JSON) else f'r."{name}"'
