"""The fast paths' off-switches (engine/fastpaths.py): each turns its mechanism off, and the plain path
gives the same results. `make test-plain` runs the whole suite with all four off."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from engine.catalog import default_registry
from engine.clock import ManualClock
from engine.fastpaths import FastPaths
from engine.state import User
from engine.storage.database import Database
from engine.storage.inbox import TaskQuery, count_beside, task_search
from engine.transitions.engine import Engine
from schema.library_internals import graphql_schema_of
from schema.plain_fields import PLAIN_LEAVES
from schema.schema import build_schema
from tests.transitions.test_durability import approval_then_archive, tasks_of

OFF = FastPaths.none()


def test_the_switches_are_read_from_the_environment() -> None:
    assert FastPaths.from_env({}) == FastPaths()
    assert FastPaths().execution and FastPaths().driver_writes
    switched = FastPaths.from_env({"STEPWISE_FAST_DRIVER_WRITES": "false", "STEPWISE_FAST_COUNT_BESIDE": " Off "})
    assert switched == FastPaths(driver_writes=False, count_beside=False)
    everything_off = {
        f"STEPWISE_FAST_{name}": "0"
        for name in (
            "EXECUTION",
            "DRIVER_WRITES",
            "REMEMBERED_INSTANCES",
            "COUNT_BESIDE",
            "WEBHOOK_CLIENT",
            "REMEMBERED_MEMBERS",
        )
    }
    assert FastPaths.from_env(everything_off) == OFF
    with pytest.raises(ValueError, match="STEPWISE_FAST_EXECUTION must be true or false"):
        FastPaths.from_env({"STEPWISE_FAST_EXECUTION": "sometimes"})


def test_the_executor_shortcut_is_left_out_when_off() -> None:
    assert PLAIN_LEAVES in graphql_schema_of(build_schema(fast_execution=True)).extensions
    assert PLAIN_LEAVES not in graphql_schema_of(build_schema(fast_execution=False)).extensions


@asynccontextmanager
async def engine_on(url: str, fast_paths: FastPaths) -> AsyncIterator[Engine]:
    db = Database(url, fast_paths=fast_paths)
    try:
        yield Engine(db, default_registry(), clock=ManualClock())
    finally:
        await db.dispose()


async def approve_one(engine: Engine) -> str:
    await engine.deploy(approval_then_archive())
    instance = await engine.start("approval", {}, "alice")
    await engine.send_signal(instance.id, "approval", {"decision": "approved"}, "bob")
    await engine.sequencer.idle()
    return instance.id


@pytest.mark.postgres_only
@pytest.mark.parametrize("fast_paths", [FastPaths(), OFF], ids=["on", "off"])
async def test_off_a_transition_runs_every_statement_through_sqlalchemy_and_remembers_nothing(
    database_url: str, fast_paths: FastPaths
) -> None:
    async with engine_on(database_url, fast_paths) as engine:
        seen: list[str] = []

        def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            seen.append(statement)

        event.listen(engine.db.engine.sync_engine, "before_cursor_execute", record)
        try:
            instance_id = await approve_one(engine)
        finally:
            event.remove(engine.db.engine.sync_engine, "before_cursor_execute", record)
        last_statements = [s for s in seen if "stepwise_conflict_unless" in s]
        # On, the two transitions' last statements go past SQLAlchemy, on the driver's connection.
        assert len(last_statements) == (0 if fast_paths.driver_writes else 2)
        assert len(engine.remembered) == (1 if fast_paths.remembered_instances else 0)
        approval, archive = await tasks_of(engine, instance_id)
        assert (approval.output, archive.node_id) == ({"decision": "approved"}, "archive")


@pytest.mark.parametrize("fast_paths", [FastPaths(), OFF], ids=["on", "off"])
async def test_off_the_count_runs_on_the_querys_own_connection(database_url: str, fast_paths: FastPaths) -> None:
    async with engine_on(database_url, fast_paths) as engine:
        await approve_one(engine)
        approver = User("bob", "Bob", roles=frozenset({"approver"}))
        search = task_search(approver, TaskQuery(include_completed=True), 10, None)
        own_used: list[bool] = []

        @asynccontextmanager
        async def own() -> AsyncIterator[AsyncSession]:
            own_used.append(True)
            async with engine.db.read() as session:
                yield session

        assert await count_beside(engine.db, search, own) == 1
        assert own_used == ([] if fast_paths.count_beside else [True])  # the pool had one to spare
