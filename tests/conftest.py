"""One suite, two databases: every test that takes ``db`` runs on SQLite and on PostgreSQL.

PostgreSQL (``STEPWISE_TEST_PG_URL``, default the local server) gets one database per test session,
migrated once and truncated before each test. SQLite gets a fresh migrated file per test. When
PostgreSQL cannot be reached its half is skipped with the reason shown — except under ``CI=true``,
where that is a hard failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy import text

from engine.catalog import default_registry
from engine.clock import ManualClock
from engine.fastpaths import FastPaths
from engine.storage.database import Database
from engine.storage.migrations import upgrade
from engine.storage.models import Base
from engine.transitions.engine import Engine

PG_ADMIN_URL = os.environ.get("STEPWISE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"
T = TypeVar("T")


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _pg_reachable() -> str | None:
    try:
        connection = await asyncpg.connect(_asyncpg_dsn(PG_ADMIN_URL), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc}"
    await connection.close()
    return None


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run set-up coroutines on their own loop in a thread: fixtures may be resolved inside the test loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"

    async def build() -> None:
        db = Database(f"sqlite+aiosqlite:///{path}")
        await upgrade(db)
        await db.dispose()

    run_blocking(build())
    return path


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    problem = run_blocking(_pg_reachable())
    if problem:
        if IN_CI:
            pytest.fail(f"CI=true requires PostgreSQL: {problem}", pytrace=False)
        pytest.skip(problem)
    name = f"stepwise_test_{uuid.uuid4().hex[:10]}"
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{base}/{name}"

    async def create() -> None:
        admin = await asyncpg.connect(_asyncpg_dsn(PG_ADMIN_URL))
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        db = Database(url)
        await upgrade(db)
        await db.dispose()

    async def drop() -> None:
        admin = await asyncpg.connect(_asyncpg_dsn(PG_ADMIN_URL))
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    run_blocking(create())
    try:
        yield url
    finally:
        run_blocking(drop())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "dialect" in metafunc.fixturenames:
        params = ["postgresql"] if metafunc.definition.get_closest_marker("postgres_only") else ["sqlite", "postgresql"]
        metafunc.parametrize("dialect", params)


@pytest.fixture
def database_url(dialect: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated database for this test alone."""
    if dialect == "sqlite":
        path = tmp_path / "stepwise.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("pg_database_url")

    async def truncate() -> None:
        db = Database(url)
        tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
        async with db.engine.begin() as connection:
            await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        await db.dispose()

    run_blocking(truncate())
    return url


@pytest.fixture
async def db(database_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    """The test's database, with the fast paths as ``STEPWISE_FAST_*`` say (``make test-plain`` turns
    them off), except for a test marked ``fast_paths``: it examines one, so gets them all on."""
    database = Database(database_url, fast_paths=FastPaths() if request.node.get_closest_marker("fast_paths") else None)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def engine(db: Database, clock: ManualClock) -> Iterator[Engine]:
    yield Engine(db, default_registry(), clock=clock, settings={"notifyUrl": "http://127.0.0.1:9/notify"})
