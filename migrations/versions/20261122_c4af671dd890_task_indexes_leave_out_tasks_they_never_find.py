"""task indexes leave out tasks they never find

Revision ID: c4af671dd890
Revises: c41e7d2a9b03
Create Date: 2026-11-22 04:00:00.000000

A task was in every one of the table's eleven indexes, and each insert and (status-changing, so
never HOT) update of it wrote an entry in each. Most tasks have one kind of assignee (a role, a user
or a group) and system tasks none, few have an expiry, and only system tasks are claimed by the
worker, so six of the eleven entries of a role's task were for lookups that can never find it. The
assignee indexes now hold only tasks with that kind of assignee (a lookup ``column = value``
implies ``column IS NOT NULL``, which both planners use), the expiry index only tasks with an
expiry, and the worker's index only system tasks (its claim names the kind as literal SQL).

On PostgreSQL each index is built anew beside the old one ``CONCURRENTLY``, so a large tasks table
keeps taking writes, then swapped in by name; SQLite drops and creates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import sqlalchemy as sa
from alembic import op

revision: str = "c4af671dd890"
down_revision: str | None = "c41e7d2a9b03"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNFINISHED = "status NOT IN ('COMPLETED', 'CANCELLED')"


class Definition(NamedTuple):
    columns: list[str]
    where: str | None


def _inbox(column: str) -> tuple[Definition, Definition]:
    return Definition([column, "status", "created_at"], None), Definition(
        [column, "status", "created_at"], f"{column} IS NOT NULL"
    )


def _unfinished(column: str) -> tuple[Definition, Definition]:
    return Definition([column, "created_at", "id"], UNFINISHED), Definition(
        [column, "created_at", "id"], f"{UNFINISHED} AND {column} IS NOT NULL"
    )


# name: (before, after)
INDEXES: dict[str, tuple[Definition, Definition]] = {
    "ix_tasks_role_inbox": _inbox("assigned_role"),
    "ix_tasks_user_inbox": _inbox("assigned_user_id"),
    "ix_tasks_group_inbox": _inbox("assigned_group"),
    "ix_tasks_role_unfinished": _unfinished("assigned_role"),
    "ix_tasks_user_unfinished": _unfinished("assigned_user_id"),
    "ix_tasks_group_unfinished": _unfinished("assigned_group"),
    "ix_tasks_runnable": (
        Definition(["kind", "status", "next_run_at"], None),
        Definition(["status", "next_run_at"], "kind = 'SYSTEM'"),
    ),
    "ix_tasks_expiry": (Definition(["expires_at"], None), Definition(["expires_at"], "expires_at IS NOT NULL")),
}


def _create(name: str, definition: Definition, *, concurrently: bool) -> None:
    where = sa.text(definition.where) if definition.where else None
    op.create_index(
        name, "tasks", definition.columns,
        postgresql_where=where, sqlite_where=where, postgresql_concurrently=concurrently,
    )  # fmt: skip


def _replace(chosen: int) -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    with op.get_context().autocommit_block():
        for name, definitions in INDEXES.items():
            if postgresql:
                _create(f"{name}_new", definitions[chosen], concurrently=True)
                op.drop_index(name, table_name="tasks", postgresql_concurrently=True)
                op.execute(f"ALTER INDEX {name}_new RENAME TO {name}")
            else:
                op.drop_index(name, table_name="tasks")
                _create(name, definitions[chosen], concurrently=False)


def upgrade() -> None:
    _replace(1)


def downgrade() -> None:
    _replace(0)
