"""One read session for all of a GraphQL query's reads.

A page's resolvers and DataLoaders read in several batches (the page, then its users, steps,
instances…). Each batch on its own session costs a pool checkout, BEGIN and ROLLBACK round trips;
sharing one session makes a page one transaction on one connection (the inbox's count may run
beside it on a spare one: ``engine.storage.inbox.count_beside``). An HTTP request's viewer is
looked up in that session too (server.graphql_app), before the operation is known: a query goes on
in it, a mutation or subscription closes it before it runs.

Queries only: a mutation's payload must show what the mutation just committed, and a SQLite read
transaction keeps the snapshot it began with. Subscriptions read per event (see schema.subscriptions).
Each query gets its :class:`SharedReads` from :class:`schema.pipeline.OperationPipeline`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession

from engine import Database


class SharedReads:
    """Hands out one lazily opened read session, to one user at a time (a session is not concurrent)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._session: AsyncSession | None = None
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._lock:
            if self._session is None:
                self._session = AsyncSession(self._db.engine, expire_on_commit=False)
            try:
                yield self._session
            except BaseException:
                # A failed statement spoils the transaction (PostgreSQL): later reads start afresh.
                await self._session.rollback()
                raise

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
