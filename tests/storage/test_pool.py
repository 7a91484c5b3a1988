"""Which pooled PostgreSQL connection a unit of work gets."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.pool import QueuePool

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


@pytest.mark.postgres_only
async def test_sixteen_concurrent_units_of_work_keep_their_connections(db: Database) -> None:
    """The pool keeps what sixteen concurrent units of work (the engine benchmark's drivers, plus a
    numbering round) need: a connection beyond the pool's size is closed when it comes back, and the
    next burst starts a new server backend for it, which at a pool of 10 halved transitions/s."""
    fresh = Database(db.url)
    gate = asyncio.Event()

    async def unit_of_work() -> int:
        async with fresh.read() as session:
            pid = int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)
            await gate.wait()  # all sixteen hold their connection at once
            return pid

    async def burst() -> set[int]:
        gate.clear()
        working = [asyncio.create_task(unit_of_work()) for _ in range(16)]
        await asyncio.sleep(0.2)
        gate.set()
        return set(await asyncio.gather(*working))

    try:
        first, second = await burst(), await burst()
    finally:
        await fresh.dispose()
    assert len(first) == 16 and second == first


async def test_a_spare_read_never_waits_for_a_connection(db: Database) -> None:
    """A spare read gets a connection only if one is idle or the pool has room within its size; else
    None at once (waiting beside a held connection can deadlock, see Database.spare_read)."""
    fresh = Database(db.url, pool_size=2)
    pool = fresh.engine.sync_engine.pool
    assert isinstance(pool, QueuePool)
    try:
        async with fresh.spare_read() as spare:
            assert spare is not None
            assert await spare.scalar(select(func.count()).select_from(text("users"))) == 0
        async with AsyncExitStack() as first_held, AsyncExitStack() as others_held:
            sessions = [await first_held.enter_async_context(fresh.read())]
            sessions += [await others_held.enter_async_context(fresh.read()) for _ in range(pool.size() - 1)]
            for session in sessions:
                await session.execute(text("SELECT 1"))  # each checks its connection out
            async with asyncio.timeout(5), fresh.spare_read() as spare:
                assert spare is None
            await first_held.aclose()
            async with fresh.spare_read() as spare:
                assert spare is not None
    finally:
        await fresh.dispose()
