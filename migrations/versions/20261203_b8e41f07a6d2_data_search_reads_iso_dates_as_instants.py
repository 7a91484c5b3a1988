"""data search reads ISO dates as instants

Revision ID: b8e41f07a6d2
Revises: e0a1d3c5b7f9
Create Date: 2026-12-03 16:00:00.000000

Search by business data (engine/storage/data_search.py) compares an ISO 8601 date or date-time
value with stored ones as instants, on PostgreSQL through ``stepwise_json_timestamp``: the instant
of a JSON string in ISO 8601 form (a date is its midnight UTC; no offset is UTC), NULL for anything
else, never an error (a malformed stored value must not fail every search that reads it). It runs
with the time zone set to UTC, so its answer depends on its argument alone: IMMUTABLE, so an
expression index may use it. SQLite reads dates with ``julianday`` and needs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "b8e41f07a6d2"
down_revision: str | None = "e0a1d3c5b7f9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        r"""
        CREATE FUNCTION stepwise_json_timestamp(value jsonb) RETURNS timestamptz
        LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET timezone = 'UTC' AS $$
        BEGIN
            IF jsonb_typeof(value) <> 'string' OR NOT (value #>> '{}') ~
                '^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?$' THEN
                RETURN NULL;
            END IF;
            RETURN (value #>> '{}')::timestamptz;
        EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format THEN
            RETURN NULL;
        END
        $$
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION stepwise_json_timestamp(jsonb)")
