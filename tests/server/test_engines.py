"""The app, ``stepwise worker`` and the other commands make their engine in one place, so their
databases agree: the worker too runs under the statement timeout."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import text

from server.engines import engine_from_settings
from server.settings import Settings


async def test_the_engine_made_from_settings_carries_the_statement_timeout(settings: Settings) -> None:
    engine = engine_from_settings(replace(settings, statement_timeout_seconds=7, db_pool_size=3))
    try:
        if engine.db.is_sqlite:
            return  # SQLite has no statement timeout
        async with engine.db.read() as session:
            assert await session.scalar(text("SHOW statement_timeout")) == "7s"
    finally:
        await engine.db.dispose()
