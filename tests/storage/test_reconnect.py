"""Pooled PostgreSQL connections that died while idle (a server restart) are replaced, not used.

Without ``pool_pre_ping``, a connection idle for longer than ``ping_idle_after`` is pinged at checkout;
one in steady use is not, so a unit of work on it fails once and the pool starts over.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from engine.storage.database import Database


async def backend_pid(db: Database) -> int:
    async with db.read() as session:
        pid = await session.scalar(text("SELECT pg_backend_pid()"))
    assert isinstance(pid, int)
    return pid


async def terminate(admin: Database, pid: int) -> None:
    async with admin.read() as session:
        assert await session.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    for _ in range(100):  # the backend exits asynchronously
        async with admin.read() as session:
            if not await session.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}):
                return
        await asyncio.sleep(0.02)


@pytest.fixture
def postgres(db: Database) -> Database:
    if db.is_sqlite:
        pytest.skip("SQLite has no server connection to lose")
    return db


async def test_an_idle_connection_that_died_is_replaced(postgres: Database) -> None:
    db = Database(postgres.url, ping_idle_after=0.2)
    try:
        before = await backend_pid(db)
        await terminate(postgres, before)
        await asyncio.sleep(0.3)
        after = await backend_pid(db)
    finally:
        await db.dispose()
    assert after != before


async def test_every_connection_as_old_as_a_dead_one_is_replaced(postgres: Database) -> None:
    db = Database(postgres.url, ping_idle_after=0.0)
    try:
        async with db.read() as first, db.read() as second:  # two pooled connections
            pids = {await first.scalar(text("SELECT pg_backend_pid()")),
                    await second.scalar(text("SELECT pg_backend_pid()"))}  # fmt: skip
        assert len(pids) == 2
        for pid in pids:
            await terminate(postgres, int(str(pid)))
        async with db.read() as first, db.read() as second:
            again = {await first.scalar(text("SELECT pg_backend_pid()")),
                     await second.scalar(text("SELECT pg_backend_pid()"))}  # fmt: skip
    finally:
        await db.dispose()
    assert not again & pids


async def test_a_connection_in_steady_use_fails_once_then_the_pool_recovers(postgres: Database) -> None:
    db = Database(postgres.url, ping_idle_after=60.0)
    try:
        await terminate(postgres, await backend_pid(db))
        with pytest.raises(DBAPIError) as failed:
            await backend_pid(db)
        assert failed.value.connection_invalidated
        assert await backend_pid(db) > 0
    finally:
        await db.dispose()
