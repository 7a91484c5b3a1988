"""Upgrading an empty database to head yields exactly the models' metadata, on both dialects."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.events.numbering import number_events
from engine.storage.database import Database
from engine.storage.migrations import current_revision, downgrade, head_revision, upgrade
from engine.storage.models import Base


async def empty(db: Database) -> None:
    """Start from nothing, not from the fixture's template."""
    async with db.engine.begin() as connection:
        if db.is_sqlite:
            for table in [*reversed(Base.metadata.sorted_tables)]:
                await connection.execute(text(f'DROP TABLE "{table.name}"'))
            await connection.execute(text("DROP TABLE alembic_version"))
        else:
            await connection.execute(text("DROP SCHEMA public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))


async def test_upgrade_from_empty_matches_the_models(db: Database) -> None:
    await empty(db)
    assert await current_revision(db) is None

    await upgrade(db)
    assert await current_revision(db) == head_revision()

    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with db.engine.connect() as connection:
        assert await connection.run_sync(differences) == []


def foreign_keys(connection: Connection, state: str) -> None:
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    cursor = dbapi.cursor()  # not SQLAlchemy's: no BEGIN
    cursor.execute(f"PRAGMA foreign_keys={state}")
    cursor.close()


@asynccontextmanager
async def without_foreign_keys(db: Database) -> AsyncIterator[AsyncConnection]:
    """A transaction that may write events without their tasks."""
    async with db.engine.connect() as connection:
        if db.is_sqlite:  # a pragma outside any transaction; the pooled connection gets it back after
            await connection.run_sync(foreign_keys, "OFF")
        try:
            async with connection.begin():
                if not db.is_sqlite:
                    await connection.execute(text("SET LOCAL session_replication_role = replica"))
                yield connection
        finally:
            if db.is_sqlite:
                await connection.run_sync(foreign_keys, "ON")


async def test_events_keep_their_ids_as_positions_so_old_cursors_resume_where_they_did(db: Database) -> None:
    """Cursors given before event positions named event ids: every existing event's position is its
    id, and positions given later are higher than all of them."""
    await empty(db)
    await upgrade(db, "5a0c3e9d1b47")
    columns = "kind, task_id, step_instance_id, workflow_instance_id, occurred_at"
    values = "'UPDATED', 't', 's', 'w', '2026-01-01T00:00:00+00:00'"
    async with without_foreign_keys(db) as connection:
        insert = text(f"INSERT INTO task_events (id, {columns}) VALUES (:id, {values})")
        await connection.execute(insert, [{"id": 3}, {"id": 7}, {"id": 12}])
    await upgrade(db)
    query = text("SELECT id, position FROM task_events ORDER BY id")
    async with db.read() as session:
        assert [tuple(row) for row in await session.execute(query)] == [(3, 3), (7, 7), (12, 12)]
    async with without_foreign_keys(db) as connection:
        await connection.execute(text(f"INSERT INTO task_events ({columns}) VALUES ({values})"))
        if db.is_sqlite:  # as write_events numbers there
            await connection.execute(text("UPDATE task_events SET position = id WHERE position IS NULL"))
    if not db.is_sqlite:
        assert await number_events(db) == 13
    async with db.read() as session:
        assert await session.scalar(text("SELECT position FROM task_events WHERE id NOT IN (3, 7, 12)")) == 13


async def position_index(db: Database) -> str:
    """The definition of the index readers' cursors use, as the database holds it."""
    query = (
        "SELECT sql FROM sqlite_master WHERE name = 'ux_task_events_position'"
        if db.is_sqlite
        else "SELECT indexdef FROM pg_indexes WHERE indexname = 'ux_task_events_position'"
    )
    async with db.read() as session:
        return str(await session.scalar(text(query)))


async def test_a_database_past_the_positions_migration_gets_the_partial_position_index(db: Database) -> None:
    """The index leaving out unnumbered events came in a migration of its own, so a database already
    at the positions revision gets it too."""
    await empty(db)
    await upgrade(db, "9090c695fd6d")
    partial = re.compile(r'WHERE\s*\(?\s*"?position"?\s+IS\s+NOT\s+NULL', re.IGNORECASE)
    assert not partial.search(await position_index(db))
    await upgrade(db)
    assert partial.search(await position_index(db))


SPARSE_TASK_INDEXES = {
    "ix_tasks_role_inbox": "assigned_role IS NOT NULL",
    "ix_tasks_user_inbox": "assigned_user_id IS NOT NULL",
    "ix_tasks_group_inbox": "assigned_group IS NOT NULL",
    "ix_tasks_role_unfinished": "assigned_role IS NOT NULL",
    "ix_tasks_user_unfinished": "assigned_user_id IS NOT NULL",
    "ix_tasks_group_unfinished": "assigned_group IS NOT NULL",
    "ix_tasks_runnable": "kind = 'SYSTEM'",
    "ix_tasks_expiry": "expires_at IS NOT NULL",
}


# Task indexes later migrations add, each with its WHERE.
TASK_INDEXES_ADDED_SINCE = {"ix_tasks_delegated": "delegated_to IS NOT NULL"}


async def task_index_predicates(db: Database) -> dict[str, str]:
    """Each task index's WHERE as the database holds it, without quoting, casts or parentheses."""
    query = (
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tasks' AND sql IS NOT NULL"
        if db.is_sqlite
        else "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'tasks'"
    )
    async with db.read() as session:
        rows = (await session.execute(text(query))).all()
    found = {}
    for name, definition in rows:
        where = definition.split(" WHERE ", 1)[1] if " WHERE " in definition else ""
        found[name] = re.sub(r"::(character varying|text|timestamp with time zone)(\[\])?|[()\"]", "", where)
    return found


async def test_task_indexes_leave_out_tasks_they_never_find_and_come_back_whole_on_downgrade(db: Database) -> None:
    await empty(db)
    await upgrade(db, "c41e7d2a9b03")
    before = await task_index_predicates(db)
    assert all(condition not in before[name] for name, condition in SPARSE_TASK_INDEXES.items()), before
    await upgrade(db)
    after = await task_index_predicates(db)
    for name, condition in SPARSE_TASK_INDEXES.items():
        assert condition in after[name], (name, after[name])
    assert "'COMPLETED', 'CANCELLED'" in after["ix_tasks_user_unfinished"]  # still for unfinished tasks only
    assert set(after) == set(before) | set(TASK_INDEXES_ADDED_SINCE), set(after) ^ set(before)
    for name, condition in TASK_INDEXES_ADDED_SINCE.items():
        assert after[name] == condition, (name, after[name])
    try:
        await downgrade(db, "c41e7d2a9b03")
        assert await task_index_predicates(db) == before
    finally:  # the PostgreSQL database is the session's: the tests after this one expect head
        await upgrade(db)
