"""conflict check function

Revision ID: 5a0c3e9d1b47
Revises: 867da6278fba
Create Date: 2026-11-21 18:40:00.000000

A transition's last statement on PostgreSQL may run in autocommit, where nothing rolls back after it:
when its instance or task revision checks fail it must fail itself. ``stepwise_conflict_unless``
raises SQLSTATE ``SW409`` with ``detail`` when ``ok`` is false. SQLite needs none: its transitions
always run in a transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "5a0c3e9d1b47"
down_revision: str | None = "867da6278fba"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION stepwise_conflict_unless(ok boolean, detail text) RETURNS boolean
        LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            IF ok IS NOT TRUE THEN
                RAISE EXCEPTION 'stepwise: a revision check failed' USING ERRCODE = 'SW409', DETAIL = detail;
            END IF;
            RETURN true;
        END
        $$
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION stepwise_conflict_unless(boolean, text)")
