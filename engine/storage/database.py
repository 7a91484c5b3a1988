"""The database handle: one async engine, and one ``AsyncSession`` per unit of work (for an engine
transition, which runs Core statements only, one :class:`TransitionConnection` and its transaction).

SQLite runs in WAL mode with foreign keys on. Its write units of work begin with ``BEGIN IMMEDIATE``
so two writers queue on the busy timeout instead of failing when a read lock cannot be upgraded.
On PostgreSQL a transition first runs in autocommit and lets its last statement check the
revisions it read (:mod:`engine.storage.deferred`); one that lost a race or must write earlier runs
again in a transaction that locks the workflow instance row (``SELECT … FOR UPDATE``).

Stale connections (PostgreSQL restarted, a proxy dropped an idle socket): a connection that sat in
the pool for longer than ``ping_idle_after`` seconds is pinged when it is checked out, and a dead one
is replaced together with every other pooled connection as old as it (SQLAlchemy's "pessimistic"
handling, but not on every checkout: ``pool_pre_ping`` costs a round trip per unit of work, about
one in four of a transition's). A connection in steady use is not pinged; if the server went away
within the last ``ping_idle_after`` seconds its next statement fails, the pool is invalidated, and the
unit of work fails as one in flight during the restart would have anyway. ``pool_recycle`` bounds a
connection's age.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import orjson
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool
from sqlalchemy.util import greenlet_spawn

from engine.fastpaths import FastPaths
from engine.storage.deferred import TransitionConnection

ReadSessions = Callable[[], AbstractAsyncContextManager[AsyncSession]]
"""Where a read runs: :meth:`Database.read` (a session of its own) or a caller's session that is
already open (a GraphQL query's shared one), so a reader that holds a connection never waits for a
second beside it."""

_WRITE_OPTION = "stepwise_write"
_CHECKED_IN_AT = "stepwise_checked_in_at"


Executor = AsyncSession | AsyncConnection | TransitionConnection
"""What repositories run statements on. Hot paths pass the transaction's connection: Core statements
skip the ORM session layer there, which costs nothing here since no ORM objects are used."""


def dialect_of(executor: Executor) -> str:
    """``postgresql`` or ``sqlite``: the database ``executor`` runs statements on."""
    if isinstance(executor, AsyncConnection | TransitionConnection):
        return executor.dialect.name
    return executor.get_bind().dialect.name


class Database:
    """Owns the engine; hands out sessions for reads and for transactions that write."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        pool_size: int = 20,
        ping_idle_after: float = 1.0,
        fast_paths: FastPaths | None = None,
        statement_timeout: float | None = None,
    ) -> None:
        """``fast_paths``: which of the fast paths (:mod:`engine.fastpaths`) the engine and the reads on
        this database take; by default as the ``STEPWISE_FAST_*`` variables say. ``statement_timeout``
        (seconds, PostgreSQL): the server cancels a statement that runs longer (SQLSTATE 57014), so a
        query stopped by the request's deadline stops on the database too, not only in this process."""
        self.url = url
        self.fast_paths = fast_paths if fast_paths is not None else FastPaths.from_env()
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo, "json_deserializer": read_json}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        else:
            # Last in, first out: under light load one warm connection (and server backend) does the
            # work and the others sit idle, rather than each unit of work taking the coldest one: at
            # one driver after four, 15% less CPU per transition here, and pings only when truly idle.
            # The pool keeps pool_size connections; the overflow beyond them is closed as it comes back,
            # so work that often runs wider than the pool opens a backend per unit of work: at 16
            # drivers and a pool of 10, half of PostgreSQL's CPU went to starting and ending backends
            # and transitions/s halved (bench.engine_throughput). Connections open only as needed.
            kwargs.update(pool_size=pool_size, max_overflow=pool_size // 2, pool_recycle=1800, pool_use_lifo=True)
            if statement_timeout:
                kwargs["connect_args"] = {
                    "server_settings": {"statement_timeout": str(round(statement_timeout * 1000))}
                }
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        else:
            _ping_idle_connections(self.engine, ping_idle_after)
        self._write_engine = self.engine.execution_options(**{_WRITE_OPTION: True})
        self._autocommit_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._before_dispose: list[Callable[[], Awaitable[None]]] = []
        self._read_sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = async_sessionmaker(self._write_engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A unit of work that writes: commits on success, rolls back on any exception."""
        async with self._write_sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def transition_connection(self, *, autocommit: bool = False) -> AsyncIterator[TransitionConnection]:
        """A unit of work that writes, on the connection itself: commits on success, rolls back on any
        exception. What transitions use: without the session's own bookkeeping a transition costs 7%
        fewer instructions (``bench.instructions``), and Core statements need nothing more.

        ``autocommit`` (PostgreSQL only; SQLite ignores it): no transaction at all, for a transition
        whose last statement writes everything and checks itself (:mod:`engine.storage.deferred`)."""
        if autocommit and not self.is_sqlite and not self.fast_paths.driver_writes:
            async with self._autocommit_engine.connect() as connection:  # the plain path: SQLAlchemy's own
                transition_connection = TransitionConnection(self._autocommit_engine, connection, autocommit=True)
                yield transition_connection
                await transition_connection.flush()  # raises TransactionNeeded if a write was left
            return
        if autocommit and not self.is_sqlite:
            # The pool's connection itself: SQLAlchemy's connection around it (0.19 M of a transition's
            # 2.0 M instructions, bench.instructions) is made only if a statement needs it.
            pooled = await greenlet_spawn(self._autocommit_engine.sync_engine.raw_connection)
            transition_connection = TransitionConnection(self._autocommit_engine, pooled)
            try:
                yield transition_connection
                await transition_connection.flush()  # raises TransactionNeeded if a write was left
            finally:  # shielded as SQLAlchemy shields its own close: a cancelled request still gives it back
                await asyncio.shield(transition_connection.release())
            return
        async with self._write_engine.begin() as connection:
            transition_connection = TransitionConnection(self._write_engine, connection)
            yield transition_connection
            await transition_connection.flush()  # a transition's last statement normally took them

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only unit of work (one consistent transaction, rolled back at the end)."""
        async with self._read_sessions() as session:
            yield session

    @asynccontextmanager
    async def spare_read(self) -> AsyncIterator[AsyncConnection | None]:
        """A read on a connection of its own, beside a unit of work that holds another; None when the
        pool has none to spare at once (none idle and no room within its size).

        Never waiting is what makes it safe: work that holds one connection and waits for a second
        waits forever once every connection is held by work doing the same (32 concurrent inbox
        pages did, on a pool of 30). The check and the checkout happen in one step of the event loop.

        On PostgreSQL outside any transaction: no BEGIN and ROLLBACK round trips, and each statement
        reads what was committed when it began, as a READ COMMITTED statement inside a transaction
        does too. On SQLite (which takes over transactions, see below) a read transaction of its own."""
        pool = self.engine.sync_engine.pool
        if not isinstance(pool, QueuePool) or pool.checkedout() >= pool.size():
            yield None
            return
        async with (self.engine if self.is_sqlite else self._autocommit_engine).connect() as connection:
            yield connection

    def before_dispose(self, finish: Callable[[], Awaitable[None]]) -> None:
        """Have :meth:`dispose` await ``finish()`` first: work in the background that still needs the
        pool (an engine's numbering rounds) ends before it, not on a new pool nobody disposes."""
        self._before_dispose.append(finish)

    async def dispose(self) -> None:
        for finish in self._before_dispose:
            await finish()
        await self.engine.dispose()


# A run of 19 digits may be an integer beyond 64 bits, which orjson reads as a float.
_LONG_DIGITS = re.compile(r"\d{19}")


def read_json(text: str) -> Any:
    """A stored JSON document, as ``json.loads`` reads it, at orjson's speed where they agree.

    A 50-task page decodes 150 small documents (each task's input, output and draft) and spent 1.3 M
    of its 36.9 M instructions in ``json.loads`` (bench.instructions). orjson reads every document
    the same but for integers beyond 64 bits (a float then: passed over here when a run of digits is
    that long), and refuses what JSON text stored elsewhere may hold and the standard library reads
    (NaN, Infinity, lone surrogates, 1e400): those are read by ``json.loads`` as before."""
    if _LONG_DIGITS.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def _ping_idle_connections(engine: AsyncEngine, idle_seconds: float) -> None:
    sync = engine.sync_engine

    @event.listens_for(sync.pool, "checkin")
    def _on_checkin(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(sync.pool, "checkout")
    def _on_checkout(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        checked_in_at = record.info.get(_CHECKED_IN_AT)
        if checked_in_at is None or time.monotonic() - checked_in_at < idle_seconds:
            return  # new, or in steady use
        try:
            # Checkouts run inside SQLAlchemy's greenlet, so the async driver's ping can be awaited here.
            alive = sync.dialect.do_ping(dbapi_connection)
        except Exception as error:  # the dialect says it was a disconnect; anything else is a dead link too
            raise exc.InvalidatePoolError(f"idle connection failed its ping: {error}") from error
        if not alive:
            raise exc.InvalidatePoolError("idle connection failed its ping")


def _configure_sqlite(engine: AsyncEngine) -> None:
    # pysqlite's own transaction handling defers BEGIN until a DML statement, which breaks
    # SERIALIZABLE reads and BEGIN IMMEDIATE; take it over (SQLAlchemy's documented recipe).
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
