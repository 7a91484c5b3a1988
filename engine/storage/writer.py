"""How a transition's last writes land: the rows and updates it deferred, its instance, its events.

One :class:`TransitionWriter` per dialect does it: :class:`SqliteTransitionWriter` here, a statement
per table and update (SQLite has one writer at a time, so a transaction's statements need no
checks beyond their own), and :class:`~engine.storage.postgres.finish.PostgresTransitionWriter`, one
statement that checks every revision itself. :func:`finish_transition` picks the one for the
executor's database.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from engine.events.numbering import write_events
from engine.state import WorkflowInstance
from engine.storage.database import Executor, dialect_of
from engine.storage.deferred import DeferredUpdate, Rows, TransitionConnection
from engine.storage.instances import InstanceRepository, instance_values
from engine.storage.models import instances
from engine.storage.postgres.finish import AssumedMembers, PostgresTransitionWriter
from engine.storage.task_events import NewTaskEvent


class TransitionWriter(Protocol):
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
        """Write ``deferred`` (the instance among its inserts when it is new), else update ``instance``
        if still at ``expected_revision``, then ``events``; the highest event id (None for none)."""
        ...


class SqliteTransitionWriter:
    """A statement per table and per update, then the instance's revision-checked update, then the
    events (which get their positions in the same transaction)."""

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
        assert not assumed_members, "SQLite never remembers members: a transaction reads them"
        inserts, updates = deferred
        if isinstance(executor, TransitionConnection):
            await executor.write(inserts, updates)
        if not any(table is instances for table, _ in inserts):
            await InstanceRepository(executor).update(instance, expected_revision)
        return await write_events(executor, events)


_WRITERS: dict[str, TransitionWriter] = {"sqlite": SqliteTransitionWriter(), "postgresql": PostgresTransitionWriter()}


def writer_for(dialect: str) -> TransitionWriter:
    return _WRITERS[dialect]


async def finish_transition(
    executor: Executor,
    instance: WorkflowInstance,
    expected_revision: int,
    events: Sequence[NewTaskEvent],
    remembered_tasks: Sequence[str] | None = None,
    assumed_members: Sequence[AssumedMembers] = (),
) -> int | None:
    """A transition's last writes: the rows and updates it deferred (on a
    :class:`~engine.storage.deferred.TransitionConnection`), ``instance`` as it ends — inserted if it
    is one of those rows, else updated if nobody changed it since ``expected_revision`` (else
    :class:`~engine.errors.ConcurrentUpdateError`) — then ``events`` as
    :func:`~engine.events.numbering.write_events` writes them. Returns the highest event id (None
    when there were none).

    ``remembered_tasks`` (PostgreSQL only): the transition started from remembered state
    (:mod:`engine.transitions.remembered`) whose open tasks were these ``id:revision``; if the
    instance's open tasks are no longer exactly these, nothing is written
    (:class:`~engine.errors.RememberedStateChanged`).

    ``assumed_members`` (PostgreSQL only): ``(kind, key, members)`` of each role (``kind`` ``"role"``) or
    group the transition counted as its process remembered them
    (:class:`~engine.transitions.remembered.RememberedMembers`); if one's members are no longer exactly
    these, nothing is written (:class:`~engine.errors.RememberedMembersChanged`)."""
    inserts, updates = executor.take_deferred() if isinstance(executor, TransitionConnection) else ([], [])
    if any(table is instances for table, _ in inserts):  # written once, as the transition leaves it
        inserts = [(table, [instance_values(instance)] if table is instances else rows) for table, rows in inserts]
    writer = _WRITERS[dialect_of(executor)]
    return await writer.finish(executor, instance, expected_revision, (inserts, updates), events, remembered_tasks,
                               assumed_members)  # fmt: skip
