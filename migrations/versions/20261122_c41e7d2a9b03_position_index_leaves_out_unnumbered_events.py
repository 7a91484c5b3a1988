"""position index leaves out unnumbered events

Revision ID: c41e7d2a9b03
Revises: 9090c695fd6d
Create Date: 2026-11-22 03:00:00.000000

Every transition inserts its events without a position (a numbering round gives them one after the
commit, engine.events.numbering); a unique index over every row indexed each of those NULLs, only for the
round to index the event again. The index now holds numbered events only, which is all that
readers' cursors (``position > cursor``) look up. (This change was first made by editing
``452ee6c06fd3`` in place, which a database already past that revision would never have run.)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c41e7d2a9b03"
down_revision: str | None = "9090c695fd6d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ux_task_events_position", table_name="task_events")
    op.create_index(
        "ux_task_events_position", "task_events", ["position"], unique=True,
        postgresql_where=sa.text("position IS NOT NULL"), sqlite_where=sa.text("position IS NOT NULL"),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ux_task_events_position", table_name="task_events")
    op.create_index("ux_task_events_position", "task_events", ["position"], unique=True)
