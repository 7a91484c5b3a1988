"""The event log (docs/design.md §4): how committed task events are written, and read back as deliveries.

Writing
-------
A :class:`~engine.transition.Transition` buffers the events it records and the engine writes them
as the transaction's last work, just before ``COMMIT`` (:func:`finish_transition`, below; on its
own, :func:`write_events`). Readers follow the log by ``position``, not by ``id``.

Why positions: id order (the identity sequence) is not commit order. A transaction holding id 10 may
commit after one holding id 11, and a reader that had already moved its cursor past 11 would never
see 10. A reader needs every event to become visible in cursor order, so that one integer cursor
(``position > cursor``, which is also a client's resume cursor) misses nothing.

Numbering (PostgreSQL). A transition inserts its events without a position, takes no lock and sends
no notification, so committing transitions flush their WAL together as PostgreSQL groups commits.
After the commit its process runs a numbering round (:class:`engine.sequencer.EventSequencer`): the
database function ``stepwise_number_events`` (migration ``452ee6c06fd3``) takes the transaction-level
advisory lock ``EVENT_LOCK_KEY``, gives every committed event without a position the next positions
from the sequence ``task_event_positions`` in id order, and sends ``NOTIFY stepwise_events, '<highest
position>'`` (a number, never a payload, so the 8 KB limit never bites). Rounds hold the lock until
their commit is visible and read what to number only after taking it, so a round's positions are
higher than every earlier round's and become visible after them; positions never go back. PostgreSQL
delivers a notification when its transaction commits, so none announces a position nobody can read.

What it costs: rounds serialize (lock → number → notify → commit), but a round numbers whatever
committed before it, so under load one round serves many transitions, and no transition waits for
one: its process runs them in the background, at most one every 10 ms. Before, each event-writing
transaction took the lock and notified itself, and PostgreSQL also serializes the commits of transactions that NOTIFY
(``PreCommit_Notify`` in ``async.c`` holds a cluster-wide lock until after the commit's WAL flush):
one flush at a time, ~1,500 commits/s on a 2-core machine where pgbench's grouped commits reach
6,000 (bench.engine_throughput). An event committed by a process that dies before its round is
numbered by the next round anyone runs; each server's event hub also runs one when it has heard
nothing for a while (:mod:`engine.events`).

SQLite has one writer at a time (``BEGIN IMMEDIATE``), so there id order is commit order: an event's
position is its id, set in its own transaction.

The alternatives, rejected: taking the lock in every transaction (what this did until numbering: it
and NOTIFY made commits single file); a watermark on transaction ids (an ``xid8`` column and
``pg_snapshot_xmin``) lets any long write transaction hold back every subscriber; tracking gaps and
re-reading them for a grace period is unsound (a transaction slower than the grace is skipped for
good) and sees a gap for every rolled-back id, which are common here (lost races are retried).

A transition ends with :func:`finish_transition`: on PostgreSQL the instance's UPDATE (or a new
instance's INSERT), the rows and task updates the transition deferred
(:mod:`engine.storage.deferred`) and the events' insert are one statement, and a signal is two
statements in all (one when its process remembers the instance, :mod:`engine.remembered`), besides
its share of a numbering round. Every check runs before the events are inserted, which they are
only when all passed. A lost race (the UPDATE matched nothing) inserts no row and no event, and the
statement's own revision check then fails it as a whole (SQLSTATE ``SW409``), so nothing stays even
in autocommit, where transitions first run. A start's statement also checks that no newer version
of its definition has been deployed than the one it ran on (which its process did not read again),
and a transition from remembered state that the instance's open tasks are still as remembered; each
fails the statement as a whole, and the engine runs the transition again.

Reading
-------
:func:`load_deliveries` reads the events after a cursor (a position) once, each with what subscribers need to judge
and show it (the task as it is now, the instance's starter, the users it mentions, the message of
``MESSAGE_POSTED``), in a handful of batched queries however many events and subscribers there are.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from asyncpg import PostgresError
from sqlalchemy import ARRAY, Table, Text, TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError

from engine.errors import NewerDefinitionDeployed, RememberedStateChanged
from engine.state import Task, TaskEvent, TaskEventKind, TaskMessage, User, WorkflowInstance
from engine.storage.database import Database, Executor, dialect_of
from engine.storage.deferred import (
    TransitionConnection,
    insert_from_json,
    json_row,
    update_from_parameters,
    update_parameters,
)
from engine.storage.directory import DirectoryRepository
from engine.storage.discussion import TaskDetailsRepository
from engine.storage.instances import (
    OPEN_TASKS_SQL,
    InstanceRepository,
    changed_concurrently,
    instance_values,
    update_values,
)
from engine.storage.models import definitions, instances, tasks
from engine.storage.tasks import NewTaskEvent, TaskEventRepository, TaskRepository

CHANNEL = "stepwise_events"
EVENT_LOCK_KEY = 0x5354_4550_5749_5345  # "STEPWISE": the only advisory lock Stepwise takes

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
_NUMBER_EVENTS = text("SELECT stepwise_number_events(:lock_key, :channel) AS latest")
_CHANGED = "(SELECT coalesce(array_agg(id), '{{}}') FROM ({}) AS changed)"
# Every revision check of the statement, in the statement, evaluated once, before the events are
# inserted (which they are only when all pass): it fails as a whole (SQLSTATE SW409, the counts as
# its detail) when one fails, so that in autocommit nothing it wrote stays.
_CHECKS = """checks AS MATERIALIZED (
    SELECT (SELECT count(*) FROM updated) AS updated, {changed} AS changed, {newer} AS newer,
           {changed_since} AS changed_since
)"""
_PASSED = "c.updated = 1 AND cardinality(c.changed) = {updates} AND NOT c.newer AND NOT c.changed_since"
_CHECKED = """
SELECT (SELECT max(id) FROM {inserted}) AS latest, stepwise_conflict_unless(
    {passed},
    json_build_object('updated', c.updated, 'changed', c.changed, 'newer', c.newer,
                      'changed_since', c.changed_since)::text
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
REVISION_CHECK_FAILED = "SW409"
Shape = tuple[tuple[Table, tuple[str, ...]], ...]
ShapeKey = tuple[tuple[str, tuple[str, ...]], ...]
_FINISH_STATEMENTS: dict[tuple[bool, bool, bool, ShapeKey, ShapeKey], TextClause] = {}


def _finish_on_postgres(
    new_instance: bool, with_events: bool, remembered: bool, inserts: Shape, updates: Shape
) -> TextClause:
    """The statement for one shape of transition: the instance's UPDATE, or its INSERT when it is new;
    the rows and revision-checked updates the transition deferred
    (:class:`~engine.storage.deferred.TransitionConnection`): each table's inserts as one statement
    from a JSON array, each update by its row's key; then the check of every revision (a
    ``remembered`` transition's open tasks too) and, only if it passed, the events (without
    positions: a numbering round gives them theirs after the commit). Foreign keys are checked at
    the end of the statement, so parents and children may arrive together."""
    key = (new_instance, with_events, remembered, _names(inserts), _names(updates))
    statement = _FINISH_STATEMENTS.get(key)
    if statement is None:
        writes = {} if new_instance else {"updated": update_from_parameters(instances, _INSTANCE_COLUMNS, "")}
        for table, columns in inserts:
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


async def finish_transition(
    executor: Executor,
    instance: WorkflowInstance,
    expected_revision: int,
    events: Sequence[NewTaskEvent],
    remembered_tasks: Sequence[str] | None = None,
) -> int | None:
    """A transition's last writes: the rows and updates it deferred (on a
    :class:`~engine.storage.deferred.TransitionConnection`), ``instance`` as it ends — inserted if it
    is one of those rows, else updated if nobody changed it since ``expected_revision`` (else
    :class:`~engine.errors.ConcurrentUpdateError`) — then ``events`` as :func:`write_events` writes
    them. Returns the highest event id (None when there were none).

    ``remembered_tasks`` (PostgreSQL only): the transition started from remembered state
    (:mod:`engine.remembered`) whose open tasks were these ``id:revision``; if the instance's open
    tasks are no longer exactly these, nothing is written
    (:class:`~engine.errors.RememberedStateChanged`)."""
    inserts, updates = executor.take_deferred() if isinstance(executor, TransitionConnection) else ([], [])
    new_instance = any(table is instances for table, _ in inserts)
    if new_instance:  # written once, as the transition leaves it (a new instance has no race to lose)
        inserts = [(table, [instance_values(instance)] if table is instances else rows) for table, rows in inserts]
    if dialect_of(executor) != "postgresql":
        if isinstance(executor, TransitionConnection):
            await executor.write(inserts, updates)
        if not new_instance:
            await InstanceRepository(executor).update(instance, expected_revision)
        return await write_events(executor, events)
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
    for table, columns in insert_shape:
        parameters[f"rows_{table.name}"] = [json_row(row, columns) for row in dict(inserts)[table]]
    for number, change in enumerate(updates):
        prefix = f"c{number}_"
        parameters.update({f"{prefix}{name}": value for name, value in change.values.items()})
        parameters.update({f"{prefix}b_id": change.row_id, f"{prefix}b_revision": change.expected_revision})
    statement = _finish_on_postgres(new_instance, bool(events), remembered, insert_shape, update_shape)
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


async def write_events(session: Executor, events: Sequence[NewTaskEvent]) -> int | None:
    """Insert ``events`` as the transaction's last work: on SQLite with their positions, on PostgreSQL
    for the next numbering round (:func:`number_events`) to number after the commit.

    Returns the highest id written (None when there was nothing to write).
    """
    if not events:
        return None
    latest = await TaskEventRepository(session).add_many(events)
    if dialect_of(session) != "postgresql":
        await session.execute(_POSITIONS_ARE_IDS)
    return latest


# SQLite writes one transaction at a time, so id order is commit order there.
_POSITIONS_ARE_IDS = text("UPDATE task_events SET position = id WHERE position IS NULL")


async def number_events(db: Database) -> int | None:
    """One numbering round (PostgreSQL; see "Numbering" above): every committed event without a
    position gets the next ones, in id order, announced by one NOTIFY. Returns the highest position
    it gave (None when every committed event had one, and always on SQLite)."""
    if db.is_sqlite:
        return None
    async with db.transition_connection(autocommit=True) as connection:
        row = await connection.execute_last(_NUMBER_EVENTS, {"lock_key": EVENT_LOCK_KEY, "channel": CHANNEL})
    return None if row["latest"] is None else int(row["latest"])


@dataclass(frozen=True, eq=False)
class Delivery:
    """A committed event with what subscribers need to judge and show it: the task as it is now (not
    as it was at the event), its instance's starter, the users it mentions and, for
    ``MESSAGE_POSTED``, the message.

    Compared by identity: one read of an event is fanned out as one object to every subscriber, so
    presentation layers can share per-event work among them (keyed weakly by the delivery).
    """

    event: TaskEvent
    task: Task
    started_by: str
    message: TaskMessage | None = None
    users: Mapping[str, User | None] = field(default_factory=dict)
    """The directory users :func:`mentioned_users` names, read with the event; None for an id that is
    not in the directory (e.g. a system actor). May be empty (read without users): load them then."""

    @property
    def position(self) -> int:
        """The event's place in the log, which cursors name (deliveries are read by position)."""
        return cast(int, self.event.position)


def mentioned_users(delivery: Delivery) -> set[str]:
    """Who an event names: its actor, the task's assignee and completer, the message's author."""
    task, message = delivery.task, delivery.message
    ids = {delivery.event.actor_id, task.assigned_user_id, task.completed_by}
    if message is not None:
        ids.add(message.author_id)
    return {user_id for user_id in ids if user_id is not None}


@dataclass(frozen=True)
class Batch:
    deliveries: list[Delivery]
    read_through: int
    """The highest position read (the starting cursor when there was none)."""
    full: bool
    """The read hit its limit: there may be more."""


async def load_deliveries(db: Database, after: int, limit: int, *, with_users: bool = True) -> Batch:
    """Events numbered after position ``after`` (at most ``limit``), each with its task as it is now and (unless
    ``with_users`` is false: nobody is listening) the users it mentions."""
    async with db.read() as session:
        events = await TaskEventRepository(session).after(after, limit)
        if not events:
            return Batch([], after, False)
        tasks = await TaskRepository(session).get_many({e.task_id for e in events})
        instances = await InstanceRepository(session).get_many({e.workflow_instance_id for e in events})
        message_ids = {message_id for e in events if (message_id := _message_id(e)) is not None}
        messages = await TaskDetailsRepository(session).get_messages(message_ids) if message_ids else {}
        deliveries = []
        for event in events:
            task, instance = tasks.get(event.task_id), instances.get(event.workflow_instance_id)
            if task is None or instance is None:  # deleted since (cascade): nothing left to show
                continue
            message_id = _message_id(event)
            message = messages.get(message_id) if message_id is not None else None
            deliveries.append(Delivery(event, task, instance.started_by, message))
        if with_users and deliveries:
            # Once per batch here rather than once per subscriber and event in the schema (a session
            # and three directory queries each): that made pushing to many subscribers CPU-bound.
            found = await DirectoryRepository(session).get_users(set().union(*map(mentioned_users, deliveries)))
            deliveries = [replace(d, users={u: found.get(u) for u in mentioned_users(d)}) for d in deliveries]
    return Batch(deliveries, cast(int, events[-1].position), len(events) == limit)


def _message_id(event: TaskEvent) -> str | None:
    value: Any = event.data.get("messageId") if event.kind is TaskEventKind.MESSAGE_POSTED else None
    return value if isinstance(value, str) else None
