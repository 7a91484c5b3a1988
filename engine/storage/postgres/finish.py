"""A transition's last writes on PostgreSQL: one statement (see :mod:`engine.storage.writer`).

A transition ends with :func:`finish_transition`: on PostgreSQL the instance's UPDATE (or a new
instance's INSERT), the rows and task updates the transition deferred
(:mod:`engine.storage.deferred`) and the events' insert are one statement, and a signal is two
statements in all (one when its process remembers the instance, :mod:`engine.transitions.remembered`), besides
its share of a numbering round. Every check runs before the events are inserted, which they are
only when all passed. A lost race (the UPDATE matched nothing) inserts no row and no event, and the
statement's own revision check then fails it as a whole (SQLSTATE ``SW409``), so nothing stays even
in autocommit, where transitions first run. A start's statement also checks that no newer version
of its definition has been deployed than the one it ran on (which its process did not read again),
a transition from remembered state that the instance's open tasks are still as remembered, and one
that counted a role's or group's members as its process remembers them that they are still those;
each fails the statement as a whole, and the engine runs the transition again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from asyncpg import PostgresError
from sqlalchemy import ARRAY, Table, Text, TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError

from engine.errors import NewerDefinitionDeployed, RememberedMembersChanged, RememberedStateChanged
from engine.state import WorkflowInstance
from engine.storage.database import Executor
from engine.storage.deferred import DeferredUpdate, Rows, TransitionConnection
from engine.storage.instances import OPEN_TASKS_SQL, changed_concurrently, update_values
from engine.storage.models import definitions, instances, tasks, user_groups, user_roles
from engine.storage.postgres.statements import insert_from_json, json_row, update_from_parameters, update_parameters
from engine.storage.task_events import NewTaskEvent

_INSTANCE_COLUMNS = tuple(column.key for column in instances.c if column.key != "id")
_EVENT_COLUMNS = "kind, task_id, step_instance_id, workflow_instance_id, actor_id, occurred_at, data"
_EVENTS = f"""
inserted AS (
    INSERT INTO task_events ({_EVENT_COLUMNS})
    SELECT e.kind, e.task_id, e.step_instance_id, e.workflow_instance_id, e.actor_id, e.occurred_at,
           coalesce(e.data, 'null')
    FROM checks AS c, ROWS FROM (jsonb_to_recordset(:events) AS (
        kind text, task_id text, step_instance_id text, workflow_instance_id text, actor_id text,
        occurred_at timestamptz, data jsonb
    )) WITH ORDINALITY AS e({_EVENT_COLUMNS}, position)
    WHERE {{passed}}
    ORDER BY e.position
    RETURNING id
)"""
_CHANGED = "(SELECT coalesce(array_agg(id), '{{}}') FROM ({}) AS changed)"
# Every revision check of the statement, in the statement, evaluated once, before the events are
# inserted (which they are only when all pass): it fails as a whole (SQLSTATE SW409, the counts as
# its detail) when one fails, so that in autocommit nothing it wrote stays.
_CHECKS = """checks AS MATERIALIZED (
    SELECT (SELECT count(*) FROM updated) AS updated, {changed} AS changed, {newer} AS newer,
           {changed_since} AS changed_since, {members_changed} AS members_changed
)"""
_PASSED = (
    "c.updated = 1 AND cardinality(c.changed) = {updates} AND NOT c.newer AND NOT c.changed_since "
    "AND NOT c.members_changed"
)
_CHECKED = """
SELECT (SELECT max(id) FROM {inserted}) AS latest, stepwise_conflict_unless(
    {passed},
    json_build_object('updated', c.updated, 'changed', c.changed, 'newer', c.newer,
                      'changed_since', c.changed_since, 'members_changed', c.members_changed)::text
) AS checked FROM checks AS c"""
# A new instance starts on the version of its definition its process last saw without reading it
# again; the check fails the start when another process deployed a newer one (see Engine.start).
_NEWER_DEFINITION = (
    f"EXISTS (SELECT FROM {definitions.name} WHERE key = :definition_key AND version > :definition_version)"
)
# A transition that started from what its process remembered (engine.remembered) rather than a read:
# the instance's open tasks must still be those, at the same revisions, listed as the runner lists
# them (sorted by code point: "C"). The statement's subqueries see the tasks as they were before its
# own writes.
_CHANGED_SINCE = (
    f"((SELECT coalesce(array_agg(id || ':' || revision ORDER BY id COLLATE \"C\"), '{{}}') FROM {tasks.name} "
    f"WHERE workflow_instance_id = :b_id AND {OPEN_TASKS_SQL}) IS DISTINCT FROM CAST(:remembered_tasks AS text[]))"
)
# A transition that counted roles' or groups' members as its process remembered them
# (engine.transitions.remembered.RememberedMembers): each must still have exactly those, sorted as
# Python sorts them (by code point: "C").
_MEMBERS_CHANGED = f"""EXISTS (
    SELECT FROM jsonb_to_recordset(:assumed_members) AS a(kind text, key text, members jsonb)
    WHERE a.members IS DISTINCT FROM coalesce(CASE a.kind
        WHEN 'role' THEN (SELECT jsonb_agg(user_id ORDER BY user_id COLLATE "C") FROM {user_roles.name}
                          WHERE role_key = a.key)
        ELSE (SELECT jsonb_agg(user_id ORDER BY user_id COLLATE "C") FROM {user_groups.name}
              WHERE group_key = a.key)
    END, '[]'::jsonb)
)"""
AssumedMembers = tuple[str, str, Sequence[str]]
"""A role's (kind ``"role"``) or group's (``"group"``) key and the members a transition counted."""
REVISION_CHECK_FAILED = "SW409"
Shape = tuple[tuple[Table, tuple[str, ...]], ...]
ShapeKey = tuple[tuple[str, tuple[str, ...]], ...]
_FINISH_STATEMENTS: dict[tuple[bool, bool, bool, bool, ShapeKey, ShapeKey], TextClause] = {}


def _finish_on_postgres(
    new_instance: bool, with_events: bool, remembered: bool, members: bool, inserts: Shape, updates: Shape
) -> TextClause:
    """The statement for one shape of transition: the instance's UPDATE, or its INSERT when it is new;
    the rows and revision-checked updates the transition deferred
    (:class:`~engine.storage.deferred.TransitionConnection`): each table's inserts as one statement
    from a JSON array, each update by its row's key; then the check of every revision (a
    ``remembered`` transition's open tasks too, and the ``members`` it counted as remembered) and,
    only if it passed, the events (without positions: a numbering round gives them theirs after the
    commit). Foreign keys are checked at the end of the statement, so parents and children may arrive
    together."""
    key = (new_instance, with_events, remembered, members, _names(inserts), _names(updates))
    statement = _FINISH_STATEMENTS.get(key)
    if statement is None:
        writes = {} if new_instance else {"updated": update_from_parameters(instances, _INSTANCE_COLUMNS, "")}
        # A new instance's INSERT first: every other insert names it (only_after), wherever its table sorts.
        for table, columns in sorted(inserts, key=lambda insert: insert[0] is not instances):
            if table is instances:
                writes["updated"] = insert_from_json(table, columns, f"rows_{table.name}")
            else:  # after a lost race, no insert: a step the winner created would be a duplicate key
                writes[f"new_{table.name}"] = insert_from_json(table, columns, f"rows_{table.name}",
                                                               only_after="updated")  # fmt: skip
        for number, (table, columns) in enumerate(updates):
            writes[f"changed_{number}"] = update_from_parameters(table, columns, f"c{number}_")
        ctes = [f"{name} AS ({sql})" for name, sql in writes.items()]
        changed_ids = " UNION ALL ".join(f"SELECT id FROM changed_{number}" for number in range(len(updates)))
        ctes.append(_CHECKS.format(
            changed=_CHANGED.format(changed_ids) if updates else "'{}'::text[]",
            newer=_NEWER_DEFINITION if new_instance else "false",
            changed_since=_CHANGED_SINCE if remembered else "false",
            members_changed=_MEMBERS_CHANGED if members else "false",
        ))  # fmt: skip
        passed = _PASSED.format(updates=len(updates))
        if with_events:
            ctes.append(_EVENTS.replace("{passed}", passed))
        checked = _CHECKED.format(
            inserted="inserted" if with_events else "(SELECT NULL::bigint AS id) AS no_events", passed=passed
        )
        statement = text("WITH " + ",\n".join(ctes) + checked).bindparams(
            *([] if new_instance else update_parameters(instances, _INSTANCE_COLUMNS, "")),
            *(bindparam(f"rows_{table.name}", type_=JSONB()) for table, _ in inserts),
            *(p for n, (table, columns) in enumerate(updates) for p in update_parameters(table, columns, f"c{n}_")),
            *([bindparam("events", type_=JSONB())] if with_events else []),
            *([bindparam("definition_key", type_=definitions.c.key.type),
               bindparam("definition_version", type_=definitions.c.version.type)] if new_instance else []),
            *([bindparam("remembered_tasks", type_=ARRAY(Text()))] if remembered else []),
            *([bindparam("assumed_members", type_=JSONB())] if members else []),
        )  # fmt: skip
        _FINISH_STATEMENTS[key] = statement
    return statement


_COLUMN_ORDERS: dict[tuple[Table, tuple[str, ...]], tuple[str, ...]] = {}


def _in_column_order(table: Table, keys: Iterable[str]) -> tuple[str, ...]:
    """``keys`` that are columns of ``table``, in the table's order (known once per set of keys: the
    code writes rows of a few fixed shapes, as :data:`_FINISH_STATEMENTS` knows)."""
    found_by = (table, tuple(keys))
    found = _COLUMN_ORDERS.get(found_by)
    if found is None:
        present = set(found_by[1])
        found = _COLUMN_ORDERS[found_by] = tuple(column.key for column in table.c if column.key in present)
    return found


def _names(shape: Shape) -> ShapeKey:
    return tuple((table.name, columns) for table, columns in shape)


class PostgresTransitionWriter:
    """Writes a transition's deferred rows, its instance and its events in one statement that checks
    every revision itself (so it may run in autocommit)."""

    async def finish(
        self,
        executor: Executor,
        instance: WorkflowInstance,
        expected_revision: int,
        deferred: tuple[Rows, list[DeferredUpdate]],
        events: Sequence[NewTaskEvent],
        remembered_tasks: Sequence[str] | None,
        assumed_members: Sequence[AssumedMembers] = (),
    ) -> int | None:
        inserts, updates = deferred
        new_instance = any(table is instances for table, _ in inserts)
        insert_shape = tuple((table, _in_column_order(table, rows[0])) for table, rows in inserts)
        update_shape = tuple((change.table, _in_column_order(change.table, change.values)) for change in updates)
        parameters: dict[str, Any] = (
            {"definition_key": instance.definition_key, "definition_version": instance.definition_version}
            if new_instance
            else update_values(instance, expected_revision)
        )
        if events:
            parameters["events"] = [json_row(e.row()) for e in events]
        remembered = remembered_tasks is not None and not new_instance
        if remembered:
            parameters["remembered_tasks"] = list(remembered_tasks or ())
        if assumed_members:
            parameters["assumed_members"] = [{"kind": kind, "key": key, "members": list(members)}
                                             for kind, key, members in assumed_members]  # fmt: skip
        for table, columns in insert_shape:
            parameters[f"rows_{table.name}"] = [json_row(row, columns) for row in dict(inserts)[table]]
        for number, change in enumerate(updates):
            prefix = f"c{number}_"
            parameters.update({f"{prefix}{name}": value for name, value in change.values.items()})
            parameters.update({f"{prefix}b_id": change.row_id, f"{prefix}b_revision": change.expected_revision})
        statement = _finish_on_postgres(
            new_instance, bool(events), remembered, bool(assumed_members), insert_shape, update_shape
        )
        row: Mapping[Any, Any]
        try:
            if isinstance(executor, TransitionConnection):
                row = await executor.execute_last(statement, parameters)
            else:
                row = (await executor.execute(statement, parameters)).one()._mapping
        except (DBAPIError, PostgresError) as error:
            failed = _failed_checks(error)
            if failed is None:
                raise
            if failed.get("newer"):
                raise NewerDefinitionDeployed(instance.definition_key) from None
            if failed.get("changed_since"):
                raise RememberedStateChanged(instance.id) from None
            if failed.get("members_changed"):
                raise RememberedMembersChanged([(kind, key) for kind, key, _ in assumed_members]) from None
            if failed["updated"] != 1:
                raise changed_concurrently(instance) from None
            changed = set(failed["changed"])
            raise next(change.conflict for change in updates if change.row_id not in changed) from None
        return None if row["latest"] is None else int(row["latest"])


def _failed_checks(error: DBAPIError | PostgresError) -> dict[str, Any] | None:
    """The counts a failed revision check of :func:`_finish_on_postgres` reported, None for any other
    error. (SQLAlchemy wraps the driver's error; on the driver's own connection it comes as it is.)"""
    cause = error.orig.__cause__ if isinstance(error, DBAPIError) and error.orig is not None else error
    if not isinstance(cause, PostgresError) or cause.sqlstate != REVISION_CHECK_FAILED:
        return None
    found: dict[str, Any] = json.loads(cause.detail or "{}")
    return found
