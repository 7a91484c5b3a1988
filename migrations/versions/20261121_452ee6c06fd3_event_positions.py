"""event positions

Revision ID: 452ee6c06fd3
Revises: 5a0c3e9d1b47
Create Date: 2026-11-21 20:10:00.000000

Readers follow the event log by ``position`` instead of ``id`` (engine/events/numbering.py).
On PostgreSQL a transition inserts its events without a position, and a numbering round
(``stepwise_number_events``, under the event lock) gives every committed event without one the next
positions, in id order, and announces the highest with ``NOTIFY``; so commits no longer queue for
the lock and NOTIFY, only the rounds do, each numbering what committed since the last. On SQLite,
which has one writer at a time, an event's position is its id, set in its own transaction.

Existing events keep their id as their position, and PostgreSQL's positions continue after the
highest id: a cursor a client was given before this migration resumes exactly where it did.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "452ee6c06fd3"
down_revision: str | None = "5a0c3e9d1b47"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("task_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("position", sa.BigInteger(), nullable=True))
    op.execute("UPDATE task_events SET position = id")
    with op.batch_alter_table("task_events", schema=None) as batch_op:
        batch_op.create_index("ux_task_events_position", ["position"], unique=True)
        batch_op.create_index(
            "ix_task_events_unnumbered", ["id"],
            postgresql_where=sa.text("position IS NULL"), sqlite_where=sa.text("position IS NULL"),
        )  # fmt: skip
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE SEQUENCE task_event_positions AS bigint")
    op.execute("SELECT setval('task_event_positions', (SELECT coalesce(max(id), 0) + 1 FROM task_events), false)")
    # VOLATILE: each statement after the lock reads a snapshot taken after it, in which every earlier
    # round (which held the lock until its commit was visible) has committed. Positions are drawn
    # only under the lock, so a round's are higher than every committed round's and become visible
    # after them: a reader's cursor (position > cursor) never passes a position still to appear.
    op.execute(
        """
        CREATE FUNCTION stepwise_number_events(lock_key bigint, channel text) RETURNS bigint
        LANGUAGE plpgsql VOLATILE AS $$
        DECLARE
            unnumbered bigint[];
            first bigint;
            last bigint;
        BEGIN
            PERFORM pg_advisory_xact_lock(lock_key);
            SELECT array_agg(id ORDER BY id) INTO unnumbered FROM task_events WHERE position IS NULL;
            IF unnumbered IS NULL THEN
                RETURN NULL;
            END IF;
            first := nextval('task_event_positions');
            last := first + cardinality(unnumbered) - 1;
            PERFORM setval('task_event_positions', last);
            UPDATE task_events AS e SET position = first + u.n - 1
            FROM unnest(unnumbered) WITH ORDINALITY AS u(id, n) WHERE e.id = u.id;
            PERFORM pg_notify(channel, last::text);
            RETURN last;
        END
        $$
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION stepwise_number_events(bigint, text)")
        op.execute("DROP SEQUENCE task_event_positions")
    with op.batch_alter_table("task_events", schema=None) as batch_op:
        batch_op.drop_index("ix_task_events_unnumbered")
        batch_op.drop_index("ux_task_events_position")
        batch_op.drop_column("position")
