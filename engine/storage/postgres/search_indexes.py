"""The expression indexes a definition's ``searchable`` paths ask for (PostgreSQL; docs: docs/api.md,
"Search by business data").

For each path, one B-tree index on the ``jsonb`` at that path of the instances' data and one of the
tasks' input, each partial (``WHERE … IS NOT NULL``): rows without the path — most tasks' input,
other definitions' instances — are not in it and cost their writes nothing. Data search compares
exactly that expression (:mod:`engine.storage.data_search`), so ``eq``, ``in``, ranges on numbers
and strings, and ``exists`` can be answered from it. Indexes are shared by every definition naming
the path (the tables are), and are never dropped by a deploy: another definition, or a running
instance of an older version, may still search by them.

They are built for the deploy that first names the path, after its commit, in a task it does not
await, with no ``statement_timeout``, ``CONCURRENTLY``: writes to
the tables go on while a large table is indexed. A build that failed half-way leaves an invalid index;
the next deploy naming the path drops and builds it again. Beside each index, extended statistics
on its expression and the expression's type (``CREATE STATISTICS``, read by ``ANALYZE``, which
autovacuum runs): the planner's estimate of how many rows a data condition keeps. Schema changes otherwise belong to the
migrations; these are data-dependent and named by the data, so a deploy owns them, and they are
never in the models' metadata (the migrations test compares a freshly migrated database, which has none).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.definitions.datapaths import segments_of
from engine.storage.database import Database

_COLUMNS = {"workflow_instances": "data", "tasks": "input"}
_INDEX_PREFIX = "ix_search_"


def index_name(table: str, path: str) -> str:
    """``ix_search_<table>_<path>_<hash>``: readable, within PostgreSQL's 63 bytes, and distinct for
    paths that read alike once shortened (``a_b`` and ``a.b``)."""
    digest = hashlib.sha256(f"{table}:{path}".encode()).hexdigest()[:8]
    return f"{_INDEX_PREFIX}{table}_{'_'.join(segments_of(path))}"[:50] + f"_{digest}"


def _statistics_name(index: str) -> str:
    return "st" + index.removeprefix("ix")


def _expression(table: str, path: str) -> str:
    # Segments are identifiers (engine.definitions.datapaths): nothing in them needs quoting.
    return f"({_COLUMNS[table]} #> '{{{','.join(segments_of(path))}}}')"


async def ensure_search_indexes(db: Database, paths: Sequence[str]) -> list[str]:
    """Build the indexes ``paths`` need that do not exist yet (each path checked by the definition's
    validation); returns the names it built."""
    async with db.engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        # The pool's statement_timeout is for requests; a build on a large table may take far longer,
        # and one cancelled half-way leaves an invalid index. RESET gives the connection back as it was.
        await autocommit.execute(text("SET statement_timeout = 0"))
        try:
            return await _build(autocommit, paths)
        finally:
            await autocommit.execute(text("RESET statement_timeout"))


async def _build(autocommit: AsyncConnection, paths: Sequence[str]) -> list[str]:
    built = []
    for path in paths:
        for table in _COLUMNS:
            name = index_name(table, path)
            valid = await autocommit.scalar(
                text("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                     "WHERE c.relname = :name AND c.relnamespace = current_schema()::regnamespace"),
                {"name": name},
            )  # fmt: skip
            expression = _expression(table, path)
            # The planner keeps no statistics for a partial index's expression: without these
            # it guesses a third of the rows match any range, and a tenth of a percent any type,
            # and reads a common value's instances from the index, then each one's tasks.
            await autocommit.execute(
                text(f'CREATE STATISTICS IF NOT EXISTS "{_statistics_name(name)}" ON {expression}, '
                     f"(jsonb_typeof{expression}) FROM {table}")
            )  # fmt: skip
            if valid:
                continue
            if valid is not None:  # a build that failed half-way
                await autocommit.execute(text(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"'))
            await autocommit.execute(
                text(f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" ON {table} ({expression}) '
                     f"WHERE {expression} IS NOT NULL")
            )  # fmt: skip
            built.append(name)
    return built
