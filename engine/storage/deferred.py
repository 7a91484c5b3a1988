"""A transition's connection, whose inserts and revision-checked updates wait for a later statement.

A transition creates steps and tasks and changes tasks as it goes, but needs none of those writes
back before it ends. :class:`TransitionConnection` keeps them until the next statement, which writes
them first (so every statement sees what came before it, as if each write had run at once), or until
the transition's last statement, which on PostgreSQL writes them itself
(:func:`engine.storage.writer.finish_transition`): no round trip of their own. A constraint a write
breaks fails the statement that carries it, and a revision that no longer matches raises the
update's own error there; either fails the transition, which then changes nothing, as before.

On PostgreSQL a transition first runs in autocommit (on a connection from the pool, not in a
transaction: ``in_transaction`` is false): it only reads until
its last statement, which writes everything at once and checks every revision itself, so it needs
neither ``BEGIN`` nor ``COMMIT``. If it has to write earlier — a write statement of its own, or a
read after a deferred write — :class:`TransactionNeeded` stops it before anything is written, and the
engine runs it again in a transaction.

The driver bypass (docs/adr/0002-driver-bypass.md) — the pool's connection without SQLAlchemy's
around it, and the two hot statements on asyncpg's own (:mod:`engine.storage.postgres.driver`) —
earned 2.41 → 2.15 M instructions per transition (round 6) and 1.99 → 1.82 M (round 7). It rests on
semi-private SQLAlchemy API, which only the ``<2.1`` pin protects; ``STEPWISE_FAST_DRIVER_WRITES=false``
turns it off, and every statement runs on a SQLAlchemy ``AsyncConnection`` in autocommit instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Executable, Insert, MetaData, Table, Update, bindparam, insert, update
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from engine.storage.postgres.driver import DriverRow, fetch_on_driver

Rows = list[tuple[Table, list[dict[str, Any]]]]


@dataclass
class DeferredUpdate:
    """``values`` for the row ``row_id`` of ``table``, if it is still at ``expected_revision``."""

    table: Table
    row_id: str
    expected_revision: int
    values: dict[str, Any]
    """Columns to set, ``revision`` (the new one) included."""
    conflict: Exception
    """The error when the row is no longer at ``expected_revision``."""


class TransactionNeeded(Exception):  # noqa: N818  (a signal to the engine, not an error: it never leaves it)
    """An autocommit transition would have to write before its last statement; nothing was written."""


class TransitionConnection:
    """A transition's connection (see the module's docstring): :meth:`defer_insert` and
    :meth:`defer_update` keep writes until the next :meth:`execute` or the transition's end.

    In a transaction it is ``connection``, a SQLAlchemy connection that began one. Outside one it is
    ``connection``, a connection checked out of ``engine``'s pool and given back by :meth:`release`:
    the hot statements run on its driver connection, and a SQLAlchemy connection (``engine``'s
    execution options, e.g. autocommit) is made around it only for a statement that needs one. Most
    transitions need none, and SQLAlchemy's connection cost more than their driver's statements."""

    def __init__(
        self, engine: AsyncEngine, connection: AsyncConnection | PoolProxiedConnection, *, autocommit: bool = False
    ) -> None:
        """``autocommit`` with a SQLAlchemy connection: outside a transaction, every statement through
        SQLAlchemy (the driver bypass turned off, ``STEPWISE_FAST_DRIVER_WRITES``)."""
        self._engine = engine
        self.dialect = engine.dialect
        self._connection: AsyncConnection | None = None
        self._pooled: PoolProxiedConnection | None = None
        if isinstance(connection, AsyncConnection):
            self._connection = connection
        else:
            self._pooled = connection
        self.in_transaction = self._pooled is None and not autocommit
        self._on_driver_connection = self._pooled is not None
        """Whether the hot statements run on the driver's connection (:meth:`_on_driver`)."""
        self._inserts: dict[Table, list[dict[str, Any]]] = {}
        self._updates: list[DeferredUpdate] = []

    async def connection(self) -> AsyncConnection:
        """The SQLAlchemy connection (outside a transaction made on first use, around the pool's)."""
        if self._connection is None:
            assert self._pooled is not None, "a released connection is not used again"
            sync = await greenlet_spawn(Connection, self._engine.sync_engine, self._pooled)
            self._connection = AsyncConnection(self._engine, sync)
        return self._connection

    async def release(self) -> None:
        """Give the pool its connection back (outside a transaction; a transaction's connection is
        closed by the context that began it)."""
        if self._connection is not None:
            await self._connection.close()
        elif self._pooled is not None:
            await greenlet_spawn(self._pooled.close)
        self._pooled = None

    def defer_insert(self, table: Table, row: dict[str, Any]) -> None:
        self._inserts.setdefault(table, []).append(row)

    def defer_update(self, change: DeferredUpdate) -> None:
        """A row written twice by one transition is written once, with both changes."""
        new_row = next((row for row in self._inserts.get(change.table, ()) if row["id"] == change.row_id), None)
        if new_row is not None:
            if new_row["revision"] != change.expected_revision:
                raise change.conflict
            new_row.update(change.values)
            return
        for waiting in self._updates:
            if waiting.table is change.table and waiting.row_id == change.row_id:
                if waiting.values["revision"] != change.expected_revision:
                    raise change.conflict
                waiting.values.update(change.values)
                return
        self._updates.append(change)

    def take_deferred(self) -> tuple[Rows, list[DeferredUpdate]]:
        """The waiting inserts by table, parents before children (foreign keys), and the waiting
        updates; forgets them."""
        inserts, updates, self._inserts, self._updates = self._inserts, self._updates, {}, []
        order = _table_order(next(iter(inserts)).metadata) if inserts else {}
        return sorted(inserts.items(), key=lambda item: order[item[0].name]), updates

    async def write(self, inserts: Rows, updates: list[DeferredUpdate]) -> None:
        """Write rows taken by :meth:`take_deferred` one statement per table and per update."""
        connection = await self.connection()
        for table, rows in inserts:
            await connection.execute(_insert_into(table), rows)
        for change in updates:
            parameters = {**change.values, "b_id": change.row_id, "b_revision": change.expected_revision}
            result = await connection.execute(revision_checked_update(change.table), parameters)
            if result.rowcount != 1:
                raise change.conflict

    async def flush(self) -> None:
        if self._inserts or self._updates:
            if not self.in_transaction:
                raise TransactionNeeded("a write before the transition's last statement")
            await self.write(*self.take_deferred())

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[Any]:
        await self._before(statement)
        return await (await self.connection()).execute(statement, parameters)

    async def scalar(self, statement: Executable, parameters: Any = None) -> Any:
        await self._before(statement)
        return await (await self.connection()).scalar(statement, parameters)

    async def execute_last(self, statement: Executable, parameters: dict[str, Any]) -> Mapping[Any, Any]:
        """The one row of the transition's last statement, which carries every deferred write itself
        and, outside a transaction, fails as a whole when a check in it fails.

        Outside a transaction it runs on the driver's own connection (:meth:`_on_driver`) unless the
        driver bypass is off."""
        if not self._on_driver_connection:
            return (await (await self.connection()).execute(statement, parameters)).one()._mapping
        [row] = await self._on_driver(statement, parameters)
        return row

    async def read_all(self, statement: Executable, parameters: dict[str, Any]) -> list[Any]:
        """The rows of a read (attributes by column key); outside a transaction on the driver's own
        connection (:meth:`_on_driver`). For a transition's hot reads."""
        await self._before(statement)
        if not self._on_driver_connection:
            return list((await (await self.connection()).execute(statement, parameters)).all())
        return [DriverRow(row) for row in await self._on_driver(statement, parameters)]

    async def read_unaffected(self, statement: Executable, parameters: dict[str, Any]) -> list[Any]:
        """The rows of a read that no write of a transition can change (the directory's tables, which no
        transition writes): it runs without the deferred writes written first, so it never makes an
        autocommit transition need a transaction; outside one on the driver's own connection (unless
        the driver bypass is off)."""
        if not self._on_driver_connection:
            return list((await (await self.connection()).execute(statement, parameters)).all())
        return [DriverRow(row) for row in await self._on_driver(statement, parameters)]

    async def _on_driver(self, statement: Executable, parameters: dict[str, Any]) -> list[dict[str, Any]]:
        """``statement`` on the driver's own connection (:func:`engine.storage.postgres.driver.fetch`).
        A transition's two hot statements run so outside a transaction: SQLAlchemy's execution around
        them (context, parameter and result processing, the greenlet bridge) cost more than the
        driver's own work, and a fixed statement with typed parameters needs none of it."""
        pooled = (await self._connection.get_raw_connection()) if self._connection is not None else self._pooled
        assert pooled is not None and pooled.driver_connection is not None, "a checked-out connection"
        driver = pooled.driver_connection
        try:
            return await fetch_on_driver(driver, statement, self.dialect, parameters)
        except Exception:
            if driver.is_closed():  # what SQLAlchemy does for its own statements: no pool hands it out again
                if self._connection is not None:
                    await self._connection.invalidate()
                else:
                    await greenlet_spawn(pooled.invalidate)  # which also gives it back to the pool
                    self._pooled = None
            raise

    async def _before(self, statement: Executable) -> None:
        if not self.in_transaction and not getattr(statement, "is_select", False):
            raise TransactionNeeded(f"a write before the transition's last statement: {statement}")
        await self.flush()


_TABLE_ORDERS: dict[int, dict[str, int]] = {}
_INSERTS: dict[Table, Insert] = {}
_UPDATES: dict[Table, Update] = {}


def _table_order(metadata: MetaData) -> dict[str, int]:
    order = _TABLE_ORDERS.get(id(metadata))
    if order is None:
        order = _TABLE_ORDERS[id(metadata)] = {t.name: i for i, t in enumerate(metadata.sorted_tables)}
    return order


def _insert_into(table: Table) -> Insert:
    statement = _INSERTS.get(table)
    if statement is None:
        statement = _INSERTS[table] = insert(table)
    return statement


def revision_checked_update(table: Table) -> Update:
    """``UPDATE table`` of the row ``:b_id`` only while it is at ``:b_revision``. SET comes from the
    parameters' column names; the WHERE's names differ from every column's."""
    statement = _UPDATES.get(table)
    if statement is None:
        match = (table.c.id == bindparam("b_id"), table.c.revision == bindparam("b_revision"))
        statement = _UPDATES[table] = update(table).where(*match)
    return statement
