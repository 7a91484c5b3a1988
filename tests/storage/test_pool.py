"""Which pooled PostgreSQL connection a unit of work gets."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from engine.storage.database import Database


@pytest.mark.postgres_only  # SQLite's connections have no server backend to keep warm
async def test_the_connection_returned_last_is_handed_out_next(db: Database) -> None:
    """Last in, first out: under light load one connection (and its server backend, with its caches
    and prepared statements) does the work while the rest sit idle, instead of every unit of work
    taking the coldest connection, which costs CPU on both sides and makes idle pings frequent."""
    fresh = Database(db.url)  # no connections yet
    try:
        async with fresh.read() as earlier, fresh.read() as later:  # ``later`` goes back first, ``earlier`` last
            earlier_pid = await earlier.scalar(text("SELECT pg_backend_pid()"))
            later_pid = await later.scalar(text("SELECT pg_backend_pid()"))
        assert earlier_pid != later_pid
        async with fresh.transition_connection(autocommit=True) as connection:
            [row] = await connection.read_all(select(func.pg_backend_pid().label("pid")), {})
        pids = [row.pid]
        for _ in range(3):
            async with fresh.read() as session:
                pids.append(await session.scalar(text("SELECT pg_backend_pid()")))
    finally:
        await fresh.dispose()
    assert pids == [earlier_pid] * 4
