"""The inbox query: tasks a viewer may see, filtered, ordered and keyset-paginated.

Visibility is part of the SQL, so a filter can only narrow what the viewer sees, never widen it.
Keyset cursors (sort value, id) stay stable when tasks are inserted between pages.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy import Boolean, ColumnElement, and_, func, literal, or_, select, true, tuple_

from engine.definitions.model import Priority
from engine.errors import FieldError, ValidationError
from engine.paging import check_first
from engine.state import PRIORITY_BY_RANK, PRIORITY_RANK, Task, TaskKind, TaskStatus, User
from engine.storage.data_search import (
    DataCondition,
    DataSort,
    check_sort,
    data_conditions,
    sort_columns,
)
from engine.storage.database import Database, Executor, ReadSessions
from engine.storage.json_sql import JsonParam
from engine.storage.lists import sql_literals
from engine.storage.models import FINISHED_TASK_STATUSES, instances, tasks
from engine.storage.tasks import TASK_SUMMARY_COLUMNS, candidate_pattern, task_from_row
from engine.tasks import permissions

_FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)
# Literals, so the planner can match the partial ``ix_tasks_*_unfinished`` indexes.
_UNFINISHED = tasks.c.status.not_in(sql_literals(FINISHED_TASK_STATUSES))


class TaskOrderField(StrEnum):
    CREATED_AT = "CREATED_AT"
    DUE_AT = "DUE_AT"
    PRIORITY = "PRIORITY"
    UPDATED_AT = "UPDATED_AT"
    DATA = "DATA"
    """By the value at a data path (``TaskQuery.order_data``)."""


@dataclass(frozen=True)
class TaskQuery:
    role: str | None = None
    user_id: str | None = None
    group: str | None = None
    statuses: Collection[TaskStatus] | None = None
    priorities: Collection[Priority] | None = None
    kind: TaskKind | None = None
    types: Collection[str] | None = None
    """Task types (the API's TaskType values: ``FORM``, ``APPROVAL``, ``HTTP``, …), any of which may match."""
    assigned_to_me: bool = False
    include_completed: bool = False
    workflow_instance_id: str | None = None
    step_instance_id: str | None = None
    due_before: datetime | None = None
    data: tuple[DataCondition, ...] = ()
    """Conditions on business data (:mod:`engine.storage.data_search`), all of which must hold."""
    order_by: TaskOrderField = TaskOrderField.CREATED_AT
    descending: bool = False
    order_data: DataSort | None = None
    """The data path of ``order_by=DATA``."""


def visibility(viewer: User) -> ColumnElement[bool]:
    """docs/design.md §5 as SQL: assignee, role holder, group member, the instance's starter, or a supervisor;
    and a delegate, or an approver named by user id."""
    if permissions.is_supervisor(viewer):
        return true()
    started = select(instances.c.id).where(instances.c.started_by == viewer.id)
    clauses = [
        tasks.c.assigned_user_id == viewer.id,
        tasks.c.workflow_instance_id.in_(started),
        tasks.c.delegated_to == viewer.id,
        tasks.c.candidate_users.like(candidate_pattern(viewer.id), escape="\\"),
    ]
    if viewer.roles:
        clauses.append(tasks.c.assigned_role.in_(sorted(viewer.roles)))
    if viewer.groups:
        clauses.append(tasks.c.assigned_group.in_(sorted(viewer.groups)))
    return or_(*clauses)


def assigned_to(viewer: User) -> ColumnElement[bool]:
    """:func:`engine.tasks.permissions.is_assigned_to` as SQL: the assignee (the owner, while it is
    delegated) or the delegate. Each side has its index; the planners read both and merge them."""
    return or_(tasks.c.assigned_user_id == viewer.id, tasks.c.delegated_to == viewer.id)


def _sort_column(field: TaskOrderField) -> ColumnElement[Any]:
    if field is TaskOrderField.DUE_AT:
        return func.coalesce(tasks.c.due_at, literal(_FAR_FUTURE, tasks.c.due_at.type))
    if field is TaskOrderField.PRIORITY:
        return tasks.c.priority
    if field is TaskOrderField.UPDATED_AT:
        return tasks.c.updated_at
    return tasks.c.created_at


def _sort_value(task: Task, field: TaskOrderField) -> Any:
    if field is TaskOrderField.DUE_AT:
        return (task.due_at or _FAR_FUTURE).isoformat()
    if field is TaskOrderField.PRIORITY:
        return PRIORITY_RANK[task.priority]
    if field is TaskOrderField.UPDATED_AT:
        return task.updated_at.isoformat()
    return task.created_at.isoformat()


_TASK_ID = re.compile(r"[\w-]{0,64}", re.ASCII)


def encode_cursor(task: Task, field: TaskOrderField) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([field.value, _sort_value(task, field), task.id])).decode()


def _decode_cursor(cursor: str, field: TaskOrderField, order_data: DataSort | None = None) -> tuple[Any, str]:
    """The (sort value, id) a cursor of ``field``'s ordering holds; anything else is the client's error.

    Every value is checked before it reaches SQL: a tampered cursor must be a validation error, not a
    driver error (PostgreSQL refuses a string for the priority rank; a naive timestamp cannot be stored).
    """
    try:
        kind, value, task_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if kind != field.value or not isinstance(task_id, str) or not _TASK_ID.fullmatch(task_id):
            raise ValueError(f"it is not a cursor of an ordering by {field.value}")
        if order_data is not None:
            if not isinstance(value, dict) or (value.get("path"), value.get("source")) != (
                order_data.path, order_data.source.value
            ) or not isinstance(value.get("missing"), bool) or "value" not in value:  # fmt: skip
                raise ValueError(f"it is not a cursor of an ordering by {order_data.path}")
            return (value["missing"], value["value"]), task_id
        if field is TaskOrderField.PRIORITY:
            if type(value) is not int or value not in PRIORITY_BY_RANK:
                raise ValueError("its priority is not a priority rank")
            return value, task_id
        if not isinstance(value, str):
            raise ValueError("its timestamp is not a string")
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError("its timestamp has no UTC offset")
        return moment, task_id
    except (ValueError, TypeError, RecursionError) as exc:  # binascii, Unicode and JSON errors are ValueErrors
        # Nothing more: what the decoder said about the bytes is no help to the client and shows internals.
        raise ValidationError(
            "after is not a cursor of this query", [FieldError("after", "not a cursor of this query", "INVALID_CURSOR")]
        ) from exc


def _implies_visibility(viewer: User, query: TaskQuery) -> bool:
    """Whether the filter alone admits only tasks the viewer may see (then the visibility OR, which
    no index serves, can be left out)."""
    return (
        (query.role is not None and query.role in viewer.roles)
        or (query.group is not None and query.group in viewer.groups)
        or query.user_id == viewer.id
        or query.assigned_to_me
    )


def _conditions(viewer: User, query: TaskQuery) -> list[ColumnElement[bool]]:
    where = [] if _implies_visibility(viewer, query) else [visibility(viewer)]
    if query.role is not None:
        where.append(tasks.c.assigned_role == query.role)
    if query.user_id is not None:
        where.append(tasks.c.assigned_user_id == query.user_id)
    if query.group is not None:
        where.append(tasks.c.assigned_group == query.group)
    if query.assigned_to_me:
        where.append(assigned_to(viewer))
    if query.statuses:
        where.append(tasks.c.status.in_([s.value for s in query.statuses]))
    elif not query.include_completed:
        where.append(_UNFINISHED)
    if query.priorities:
        where.append(tasks.c.priority.in_([PRIORITY_RANK[p] for p in query.priorities]))
    if query.kind is not None:
        where.append(tasks.c.kind == query.kind.value)
    if query.types:
        where.append(tasks.c.type.in_(list(query.types)))
    if query.workflow_instance_id is not None:
        where.append(tasks.c.workflow_instance_id == query.workflow_instance_id)
    if query.step_instance_id is not None:
        where.append(tasks.c.step_instance_id == query.step_instance_id)
    if query.due_before is not None:
        where.append(and_(tasks.c.due_at.is_not(None), tasks.c.due_at < query.due_before))
    where.extend(data_conditions(query.data))
    return where


@dataclass(frozen=True)
class TaskSearch:
    """One page of the inbox to read, its arguments checked: what :func:`count_tasks` and
    :func:`page_of_tasks` run (on one executor in turn, or on two at once)."""

    where: tuple[ColumnElement[bool], ...]
    order_by: TaskOrderField
    descending: bool
    first: int
    after: tuple[Any, str] | None
    """The (sort value, id) the page starts after; ordered by data, the value is (absent, value)."""
    order_data: DataSort | None = None


def task_search(viewer: User, query: TaskQuery, first: int, after: str | None) -> TaskSearch:
    """``viewer``'s search for ``query``; bad paging or filter arguments raise :class:`ValidationError`."""
    check_first(first)
    if query.due_before is not None and query.due_before.tzinfo is None:
        message = "dueBefore needs a UTC offset, e.g. 2026-01-05T09:00:00Z"
        raise ValidationError(message, [FieldError("filter.dueBefore", message, "INVALID_FORMAT")])
    order_data = check_sort(query.order_data) if query.order_by is TaskOrderField.DATA else None
    start = None if after is None else _decode_cursor(after, query.order_by, order_data)
    where = tuple(_conditions(viewer, query))
    return TaskSearch(where, query.order_by, query.descending, first, start, order_data)


async def count_tasks(executor: Executor, search: TaskSearch) -> int:
    """How many tasks the search finds (on every page)."""
    return int(await executor.scalar(select(func.count()).select_from(tasks).where(*search.where)) or 0)


async def page_of_tasks(executor: Executor, search: TaskSearch, *, summary: bool = False) -> tuple[list[Task], bool]:
    """The search's page, and whether another page follows; ``summary``: without the tasks' values (their
    input, output and draft, up to the size limit each), for a page that shows none of them."""
    page, has_next = await page_with_cursors(executor, search, summary=summary)
    return [task for task, _ in page], has_next


async def page_with_cursors(
    executor: Executor, search: TaskSearch, *, summary: bool = False
) -> tuple[list[tuple[Task, str]], bool]:
    """:func:`page_of_tasks`, each task with its cursor."""
    if search.order_data is not None:
        return await _page_by_data(executor, search, search.order_data, summary)
    sort = _sort_column(search.order_by)
    page = (select(*TASK_SUMMARY_COLUMNS) if summary else select(tasks)).where(*search.where)
    if search.after is not None:
        value, task_id = search.after
        # A row comparison: the index on (…, sort column, id) serves it as a range.
        key, bound = tuple_(sort, tasks.c.id), tuple_(literal(value, sort.type), literal(task_id, tasks.c.id.type))
        page = page.where(key < bound if search.descending else key > bound)
    ordering = (sort.desc(), tasks.c.id.desc()) if search.descending else (sort.asc(), tasks.c.id.asc())
    # One row more than asked tells whether another page follows (``first: 0`` too: a count-only query).
    rows = (await executor.execute(page.order_by(*ordering).limit(search.first + 1))).all()
    found = [task_from_row(row, summary=summary) for row in rows[: search.first]]
    return [(task, encode_cursor(task, search.order_by)) for task in found], len(rows) > search.first


async def _page_by_data(
    executor: Executor, search: TaskSearch, sort: DataSort, summary: bool
) -> tuple[list[tuple[Task, str]], bool]:
    """A page ordered by a data path: no index serves the order, so every matching task is sorted."""
    by = sort_columns(sort)
    columns = (*(TASK_SUMMARY_COLUMNS if summary else tasks.c), by.missing.label("sort_missing"),
               by.value.label("sort_value"))  # fmt: skip
    page = select(*columns).where(*search.where)
    if search.after is not None:
        (missing, value), task_id = search.after
        key = tuple_(by.missing, by.value, tasks.c.id)
        bound = tuple_(literal(missing, Boolean()), JsonParam(value), literal(task_id, tasks.c.id.type))
        page = page.where(key < bound if search.descending else key > bound)
    keys = (by.missing, by.value, tasks.c.id)
    rows = (await executor.execute(
        page.order_by(*(k.desc() if search.descending else k.asc() for k in keys)).limit(search.first + 1)
    )).all()  # fmt: skip
    found = []
    for row in rows[: search.first]:
        task = task_from_row(row, summary=summary)
        place = {"path": sort.path, "source": sort.source.value, "missing": bool(row.sort_missing),
                 "value": row.sort_value}  # fmt: skip
        found.append(
            (task, base64.urlsafe_b64encode(orjson.dumps([TaskOrderField.DATA.value, place, task.id])).decode())
        )
    return found, len(rows) > search.first


async def count_beside(db: Database, search: TaskSearch, own: ReadSessions) -> int:
    """The search's count for a unit of work that holds a connection and reads the page on it meanwhile.

    On a connection of its own when the pool has one to spare at once; else on ``own`` (the unit of
    work's, which hands it out to one user at a time), after the page: never waiting for a second
    connection beside a held one (see ``Database.spare_read``).

    Counting beside the page earned p50 −1.0 ms and p99 −2.3 ms of server time at 1M tasks (round 11,
    docs/adr/0004-count-beside.md), for a second connection per request and the hold-and-wait risk the
    never-wait rule contains. ``STEPWISE_FAST_COUNT_BESIDE=false`` turns it off: always on ``own``."""
    if db.fast_paths.count_beside:
        async with db.spare_read() as spare:
            if spare is not None:
                return await count_tasks(spare, search)
    async with own() as executor:
        return await count_tasks(executor, search)


async def search_tasks(
    executor: Executor, viewer: User, query: TaskQuery, first: int, after: str | None
) -> tuple[list[Task], int, bool]:
    """A page of visible tasks, counted and read in turn: ``(tasks, total_count, has_next_page)``."""
    search = task_search(viewer, query, first, after)
    total = await count_tasks(executor, search)
    found, has_next = await page_of_tasks(executor, search)
    return found, total, has_next
