"""Upgrading an empty database to head yields exactly the models' metadata, on both dialects."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from engine.storage.database import Database
from engine.storage.migrations import current_revision, head_revision, upgrade
from engine.storage.models import Base


async def test_upgrade_from_empty_matches_the_models(db: Database) -> None:
    async with db.engine.begin() as connection:  # start from nothing, not from the fixture's template
        if db.is_sqlite:
            for table in [*reversed(Base.metadata.sorted_tables)]:
                await connection.execute(text(f'DROP TABLE "{table.name}"'))
            await connection.execute(text("DROP TABLE alembic_version"))
        else:
            await connection.execute(text("DROP SCHEMA public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    assert await current_revision(db) is None

    await upgrade(db)
    assert await current_revision(db) == head_revision()

    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with db.engine.connect() as connection:
        assert await connection.run_sync(differences) == []
