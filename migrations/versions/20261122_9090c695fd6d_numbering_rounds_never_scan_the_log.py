"""numbering rounds never scan the log

Revision ID: 9090c695fd6d
Revises: 452ee6c06fd3
Create Date: 2026-11-22 02:00:00.000000

A numbering round (``stepwise_number_events``) reads only the few unnumbered events, through their
partial index, and updates them by key. PL/pgSQL keeps a connection's plans for its life, made
with the statistics of the moment: a pooled connection that planned the round while the log was
small and not yet analyzed (a new database's first minutes, before autovacuum's first ANALYZE)
scanned the whole log on every round, a cost that grew with the log (on the approval benchmark at
16 drivers, half the rounds' CPU once the log held 15k events). Sequential scans are off inside the
function, so a plan made on a small log still reads by index. (SQLite numbers in the transaction,
with no such function.)
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "9090c695fd6d"
down_revision: str | None = "452ee6c06fd3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER FUNCTION stepwise_number_events(bigint, text) SET enable_seqscan = off")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER FUNCTION stepwise_number_events(bigint, text) RESET enable_seqscan")
