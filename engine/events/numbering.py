"""The event log's writing and numbering (docs/design.md §4): how committed task events get the positions
readers follow.

A :class:`~engine.transitions.transition.Transition` buffers the events it records and the engine writes them
as the transaction's last work, just before ``COMMIT`` (:func:`engine.storage.writer.finish_transition`;
on its own, :func:`write_events`). Readers follow the log by ``position``, not by ``id``.

Why positions: id order (the identity sequence) is not commit order. A transaction holding id 10 may
commit after one holding id 11, and a reader that had already moved its cursor past 11 would never
see 10. A reader needs every event to become visible in cursor order, so that one integer cursor
(``position > cursor``, which is also a client's resume cursor) misses nothing.

Numbering (PostgreSQL). A transition inserts its events without a position, takes no lock and sends
no notification, so committing transitions flush their WAL together as PostgreSQL groups commits.
After the commit its process runs a numbering round (:class:`engine.events.sequencer.EventSequencer`): the
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
nothing for a while (:mod:`engine.events.hub`).

SQLite has one writer at a time (``BEGIN IMMEDIATE``), so there id order is commit order: an event's
position is its id, set in its own transaction.

The alternatives, rejected: taking the lock in every transaction (what this did until numbering: it
and NOTIFY made commits single file); a watermark on transaction ids (an ``xid8`` column and
``pg_snapshot_xmin``) lets any long write transaction hold back every subscriber; tracking gaps and
re-reading them for a grace period is unsound (a transaction slower than the grace is skipped for
good) and sees a gap for every rolled-back id, which are common here (lost races are retried).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text

from engine.storage.database import Database, Executor, dialect_of
from engine.storage.task_events import NewTaskEvent, TaskEventRepository

CHANNEL = "stepwise_events"
EVENT_LOCK_KEY = 0x5354_4550_5749_5345  # "STEPWISE": the only advisory lock Stepwise takes
_NUMBER_EVENTS = text("SELECT stepwise_number_events(:lock_key, :channel) AS latest")


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
