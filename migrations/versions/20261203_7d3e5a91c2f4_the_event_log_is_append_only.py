"""the event log is append-only

Revision ID: 7d3e5a91c2f4
Revises: c4af671dd890
Create Date: 2026-12-03 15:30:00.000000

``task_events`` is the audit log that task and instance history read: no statement may
change or remove an event. On PostgreSQL a trigger refuses every UPDATE and DELETE of a row, except
the one change numbering makes (``stepwise_number_events``, engine/events/numbering.py): giving an
event without a position its position, every other column left as it was. The trigger's WHEN clause
is evaluated by the executor, so a numbering round pays no function call per event it numbers; only a
refused change calls the function, which raises. TRUNCATE (a test fixture's reset, an operator's
deliberate act) fires no row trigger and stays possible, as does a cascade from deleting a task,
which the trigger refuses too (no code path deletes tasks). SQLite numbers its events in the
writing transaction and has no such trigger (a batch migration would drop it with the table copy).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "7d3e5a91c2f4"
down_revision: str | None = "c4af671dd890"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every column but position: numbering may set that, once, and nothing else.
_KEPT = "id, kind, task_id, step_instance_id, workflow_instance_id, actor_id, occurred_at, data"


def _row(alias: str) -> str:
    return "(" + ", ".join(f"{alias}.{column.strip()}" for column in _KEPT.split(",")) + ")"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION stepwise_refuse_event_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the event log is append-only: % of task event % refused', TG_OP, OLD.id
                USING ERRCODE = 'SW423', HINT = 'only numbering may set an unnumbered event''s position';
        END
        $$
        """
    )
    op.execute(
        f"""
        CREATE TRIGGER task_events_append_only_update BEFORE UPDATE ON task_events FOR EACH ROW
        WHEN (OLD.position IS NOT NULL OR NEW.position IS NULL
              OR {_row("OLD")} IS DISTINCT FROM {_row("NEW")})
        EXECUTE FUNCTION stepwise_refuse_event_change()
        """
    )
    op.execute(
        "CREATE TRIGGER task_events_append_only_delete BEFORE DELETE ON task_events FOR EACH ROW "
        "EXECUTE FUNCTION stepwise_refuse_event_change()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER task_events_append_only_delete ON task_events")
    op.execute("DROP TRIGGER task_events_append_only_update ON task_events")
    op.execute("DROP FUNCTION stepwise_refuse_event_change()")
