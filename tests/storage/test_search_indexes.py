"""Searchable indexes are built whatever the pool's ``statement_timeout`` (it is for requests): a build
cancelled half-way leaves an invalid index, and on a large table the next deploy's build is too."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from engine.storage.database import Database
from engine.storage.postgres.search_indexes import ensure_search_indexes, index_name

NAMES = [index_name(table, "amount") for table in ("workflow_instances", "tasks")]


async def test_an_index_is_built_valid_under_a_short_statement_timeout(db: Database) -> None:
    """A build that takes longer than the pool's statement timeout is not cancelled half-way. The build waits
    for a writer's open transaction (CREATE INDEX CONCURRENTLY waits for every writer of the table), so it
    outlasts the timeout however fast the host is, while the timeout stays long enough for the connection's
    own set-up statements on a loaded host (a 1 ms one failed those)."""
    if db.is_sqlite:
        pytest.skip("SQLite has no expression indexes to build")
    async with db.engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        for name in NAMES:
            await autocommit.execute(text(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"'))
    timeout = 0.25
    timed = Database(db.url, statement_timeout=timeout)
    try:
        async with db.engine.connect() as writer:
            await writer.execute(text("LOCK TABLE workflow_instances, tasks IN ROW EXCLUSIVE MODE"))
            building = asyncio.ensure_future(ensure_search_indexes(timed, ["amount"]))
            await asyncio.sleep(timeout * 4)
            assert not building.done()  # still waiting for the writer, past the timeout
            await writer.commit()
        assert sorted(await building) == sorted(NAMES)
    finally:
        await timed.dispose()

    query = text("SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                 "WHERE c.relname = ANY(:names)")  # fmt: skip
    async with db.read() as session:
        valid = dict((await session.execute(query, {"names": NAMES})).tuples().all())
    assert valid == dict.fromkeys(NAMES, True)
