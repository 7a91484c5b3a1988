"""Search by business data: inbox conditions on a path into the instance's data or the task's input
(``TaskFilter.data``), typed by the value they compare with, and ordering by such a path.

A condition is ``{source, path, op, value}``. The value's JSON type says how values compare: a
number compares with numbers only (numerically), a string with strings, an ISO 8601 date or
date-time string (``2026-01-05``, ``2026-01-05T09:00:00Z``) with stored dates and date-times as
instants (no offset: UTC), a boolean with booleans (``eq``/``ne`` only). A stored value of another
type, or none, does not match — except under ``ne``, which matches everything ``eq`` does not.

On PostgreSQL a condition compares the ``jsonb`` at the path (``data #> '{customer,id}'``), so an
expression index on that path (a definition's ``searchable``, :mod:`engine.storage.postgres.search_indexes`)
serves ``eq``, ``in``, ranges on numbers and strings, and ``exists``; on SQLite ``json_extract`` and
``json_type``. The path is written into the SQL as a literal, which is what lets the planner match
the index: it is checked segment by segment first (:mod:`engine.definitions.datapaths`: identifiers
only) and quoted; values are always bound parameters. The SQL expressions themselves, compiled per
database, are in :mod:`engine.storage.json_sql`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, not_, or_, select

from engine.definitions.datapaths import path_problem, segments_of
from engine.errors import FieldError, ValidationError
from engine.storage.json_sql import (
    ArrayHas,
    ContainsText,
    JsonAt,
    JsonKind,
    JsonParam,
    JsonSortKey,
    JsonTimeAt,
    JsonTypeAt,
    TimeParam,
)
from engine.storage.models import instances, tasks

MAX_CONDITIONS = 16
MAX_IN_VALUES = 100
MAX_STRING_LENGTH = 1_000
_INT64 = 2**63
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?")


class DataSource(StrEnum):
    INSTANCE_DATA = "INSTANCE_DATA"
    TASK_INPUT = "TASK_INPUT"


class DataOperator(StrEnum):
    EQ = "EQ"
    NE = "NE"
    LT = "LT"
    LTE = "LTE"
    GT = "GT"
    GTE = "GTE"
    IN = "IN"
    CONTAINS = "CONTAINS"
    EXISTS = "EXISTS"


_RANGES = {DataOperator.LT: "<", DataOperator.LTE: "<=", DataOperator.GT: ">", DataOperator.GTE: ">="}


@dataclass(frozen=True)
class DataCondition:
    path: str
    op: DataOperator
    value: Any = None
    source: DataSource = DataSource.INSTANCE_DATA


@dataclass(frozen=True)
class DataSort:
    """Order by the value at ``path``: tasks without one come after those with one (ascending)."""

    path: str
    source: DataSource = DataSource.INSTANCE_DATA


# -- conditions --------------------------------------------------------------------------------


def _invalid(field: str, message: str, code: str) -> ValidationError:
    return ValidationError(message, [FieldError(field, message, code)])


def _kind_of(value: Any, field: str) -> tuple[JsonKind, Any]:
    """The kind a scalar compares as, and the value to bind (a date as a UTC instant)."""
    if isinstance(value, bool):
        return JsonKind.BOOLEAN, value
    if isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise _invalid(field, "a number beyond 64-bit integers", "OUT_OF_RANGE")
        return JsonKind.NUMBER, value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _invalid(field, "not a finite number", "INVALID_VALUE")
        return JsonKind.NUMBER, value
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            raise _invalid(field, f"at most {MAX_STRING_LENGTH} characters", "TOO_LONG")
        moment = _instant(value)
        return (JsonKind.DATE, moment) if moment is not None else (JsonKind.STRING, value)
    raise _invalid(field, "must be a number, a string or a boolean", "WRONG_TYPE")


def _instant(text: str) -> datetime | None:
    """An ISO 8601 date or date-time as an aware UTC instant (a date: its midnight, UTC), else None."""
    if not _ISO_DATE.fullmatch(text):
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if len(text) == 10:
        parsed = datetime.combine(date.fromisoformat(text), datetime.min.time())
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _equal(
    at: JsonAt, kind: JsonKind, value: Any, column: ColumnElement[Any], segments: Sequence[str]
) -> ColumnElement[bool]:
    if kind is JsonKind.DATE:
        return JsonTimeAt(column, segments) == TimeParam(value)
    # Equal JSON of one type: numbers numerically (1000 = 1000.0), no conversion across types.
    return and_(JsonTypeAt(column, segments) == kind.value, at == JsonParam(value))


def _condition(column: ColumnElement[Any], condition: DataCondition, field: str) -> ColumnElement[bool]:
    segments = segments_of(condition.path)
    at = JsonAt(column, segments)
    op, value = condition.op, condition.value
    if op is DataOperator.EXISTS:
        if not isinstance(value, bool):
            raise _invalid(f"{field}.value", "exists takes true or false", "WRONG_TYPE")
        present = and_(at.is_not(None), JsonTypeAt(column, segments) != "null")
        return present if value else not_(present)
    if value is None:
        raise _invalid(f"{field}.value", f"{op.value.lower()} needs a value (use exists for presence)", "REQUIRED")
    if op is DataOperator.IN:
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_IN_VALUES:
            raise _invalid(f"{field}.value", f"in takes a list of 1 to {MAX_IN_VALUES} values", "WRONG_TYPE")
        # Listed values compare as themselves: a date-shaped string is the string it is.
        kinds = [_kind_of(v, f"{field}.value.{i}") for i, v in enumerate(value)]
        return or_(*(_equal(at, JsonKind.STRING if k is JsonKind.DATE else k, v, column, segments)
                     for (k, _), v in zip(kinds, value, strict=True)))  # fmt: skip
    kind, bound = _kind_of(value, f"{field}.value")
    if op is DataOperator.EQ:
        return _equal(at, kind, bound, column, segments)
    if op is DataOperator.NE:
        # Absent (NULL) is not equal: NOT of false, so ne matches it.
        return not_(func.coalesce(_equal(at, kind, bound, column, segments), false()))
    if op is DataOperator.CONTAINS:
        element_kind = JsonKind.STRING if kind is JsonKind.DATE else kind
        in_array = ArrayHas(at, value, element_kind)
        if element_kind is not JsonKind.STRING:
            return in_array
        substring = and_(JsonTypeAt(column, segments) == "string", ContainsText(at, value))
        return or_(substring, in_array)
    if kind is JsonKind.BOOLEAN:
        raise _invalid(f"{field}.op", "booleans are compared with eq or ne", "INVALID_OPERATOR")
    operator = _RANGES[op]
    if kind is JsonKind.DATE:
        return JsonTimeAt(column, segments).op(operator)(TimeParam(bound))
    return and_(JsonTypeAt(column, segments) == kind.value, at.op(operator)(JsonParam(bound)))


def data_conditions(conditions: Sequence[DataCondition]) -> list[ColumnElement[bool]]:
    """The WHERE clauses of ``conditions`` on ``tasks``; a bad path, operator or value raises
    :class:`ValidationError` naming it (``filter.data.<i>.path`` …)."""
    if len(conditions) > MAX_CONDITIONS:
        raise _invalid("filter.data", f"at most {MAX_CONDITIONS} conditions", "TOO_MANY")
    on_tasks: list[ColumnElement[bool]] = []
    on_instances: list[ColumnElement[bool]] = []
    for index, condition in enumerate(conditions):
        field = f"filter.data.{index}"
        if (problem := path_problem(condition.path)) is not None:
            raise _invalid(f"{field}.path", f"{condition.path!r}: {problem}", "INVALID_PATH")
        if condition.source is DataSource.TASK_INPUT:
            on_tasks.append(_condition(tasks.c.input, condition, field))
        else:
            on_instances.append(_condition(instances.c.data, condition, field))
    if on_instances:
        matching: Select[Any] = select(instances.c.id).where(*on_instances)
        on_tasks.append(tasks.c.workflow_instance_id.in_(matching))
    return on_tasks


# -- ordering ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SortColumns:
    """What a page ordered by a data path is sorted by: first whether the value is absent (or null),
    then the value, then the task's id (both databases order values within one JSON type alike)."""

    missing: ColumnElement[bool]
    value: ColumnElement[Any]


def sort_columns(sort: DataSort) -> SortColumns:
    """The ordering's columns on ``tasks`` (a checked path: see :func:`check_sort`)."""
    segments = segments_of(sort.path)
    column = tasks.c.input if sort.source is DataSource.TASK_INPUT else instances.c.data
    missing = func.coalesce(JsonTypeAt(column, segments), "null") == "null"
    value: ColumnElement[Any] = JsonSortKey(column, segments)
    if sort.source is DataSource.INSTANCE_DATA:
        of_instance = instances.c.id == tasks.c.workflow_instance_id
        missing = select(missing).where(of_instance).scalar_subquery()
        value = select(value).where(of_instance).scalar_subquery()
    return SortColumns(missing, value)


def check_sort(sort: DataSort | None) -> DataSort:
    """The data ordering a query asks for, its path checked (``orderBy.dataPath``)."""
    if sort is None:
        raise _invalid("orderBy.dataPath", "ordering by DATA needs a dataPath", "REQUIRED")
    if (problem := path_problem(sort.path)) is not None:
        raise _invalid("orderBy.dataPath", f"{sort.path!r}: {problem}", "INVALID_PATH")
    return sort
