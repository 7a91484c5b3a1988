"""The inbox's default query reaches the partial ``ix_tasks_*_unfinished`` indexes on both databases.

A partial index is used only when the planner can prove the query's WHERE implies the index's, so
this breaks as soon as the unfinished-status list is sent as bound parameters again, or the index
and the query spell the list differently. The planners are pushed towards indexes (tiny tables would
otherwise be scanned whole), then asked which index they chose and whether they still sort.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from engine.state import TaskKind, TaskStatus, User
from engine.storage.database import Database
from engine.storage.inbox import TaskQuery, search_tasks
from engine.storage.instances import InstanceRepository
from engine.storage.leases import LeaseRepository
from engine.storage.tasks import TaskRepository
from tests.storage.test_repositories import T0, a_task, an_instance, new_step

APPROVER = User(id="bob", name="Bob", roles=frozenset({"approver"}), groups=frozenset({"finance"}))


async def seed_tasks(db: Database) -> None:
    async with db.transaction() as session:
        await InstanceRepository(session).insert(an_instance())
        step = await new_step(session, "wi-1", "review", "decision")
        for number in range(40):
            await TaskRepository(session).insert(
                a_task(f"t-{number:02d}", step, number, TaskStatus.COMPLETED if number % 4 == 1 else TaskStatus.PENDING,
                       assigned_role="approver" if number % 2 else "clerk",
                       assigned_user_id="bob" if number % 5 == 0 else None,
                       assigned_group="finance" if number % 3 == 0 else None)
            )  # fmt: skip


async def plans_of(db: Database, query: TaskQuery, *, generic: bool = False, bitmaps: bool = False) -> list[str]:
    """The plan of every statement ``search_tasks`` sends for ``query``, as text."""

    async def search(session: AsyncSession) -> None:
        await search_tasks(session, APPROVER, query, 10, None)

    return await plans_during(db, search, generic=generic, bitmaps=bitmaps)


async def plans_during(
    db: Database, work: Callable[[AsyncSession], Awaitable[object]], *, generic: bool = False, bitmaps: bool = False
) -> list[str]:
    """The plan of every SELECT ``work`` sends on a session (rolled back after), as text; ``generic``:
    on PostgreSQL, the plan made without the parameters' values; ``bitmaps``: PostgreSQL may combine
    indexes with bitmaps (how it answers an OR of two indexed columns)."""
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with db.engine.connect() as connection:
            session = AsyncSession(bind=connection)
            await work(session)
            await session.rollback()
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
    plans = []
    async with db.read() as session:
        await discourage_scans(session, db, bitmaps=bitmaps)
        for statement, parameters in sent:
            plans.append(await explain(session, db, statement, parameters, generic=generic))
    return plans


async def discourage_scans(session: AsyncSession, db: Database, *, bitmaps: bool = False) -> None:
    if not db.is_sqlite:
        await session.execute(text("SET LOCAL enable_seqscan = off"))
        if not bitmaps:
            await session.execute(text("SET LOCAL enable_bitmapscan = off"))


async def explain(
    session: AsyncSession, db: Database, statement: str, parameters: Any, *, generic: bool = False
) -> str:
    raw = await session.connection()
    driver = (await raw.get_raw_connection()).driver_connection
    assert driver is not None
    if db.is_sqlite:
        cursor = await driver.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)
        return "\n".join(str(row[-1]) for row in await cursor.fetchall())
    if generic:  # as a prepared statement is planned once it runs often: without its parameters' values
        await driver.execute(f"PREPARE planned AS {statement}")
        await driver.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        try:
            rows = await driver.fetch(f"EXPLAIN EXECUTE planned({', '.join(map(sql_literal, parameters))})")
        finally:
            await driver.execute("DEALLOCATE planned")
    else:
        rows = await driver.fetch(f"EXPLAIN {statement}", *parameters)
    return "\n".join(row[0] for row in rows)


def sql_literal(value: Any) -> str:
    """``value`` as an untyped SQL literal (EXECUTE takes no protocol parameters)."""
    if value is None:
        return "NULL"
    if isinstance(value, list | tuple):
        value = "{" + ",".join('"' + str(item).replace('"', '\\"') + '"' for item in value) + "}"
    elif isinstance(value, datetime):
        value = value.isoformat()
    elif isinstance(value, bool):
        value = str(value).lower()
    return "'" + str(value).replace("'", "''") + "'"


async def test_a_role_inbox_page_is_read_in_order_from_the_partial_index(db: Database) -> None:
    await seed_tasks(db)
    async with db.read() as session:
        found, total, has_next = await search_tasks(session, APPROVER, TaskQuery(role="approver"), 10, None)
    assert total == 10 and not has_next
    assert [task.id for task in found] == [f"t-{number:02d}" for number in range(3, 40, 4)]
    count_plan, page_plan = await plans_of(db, TaskQuery(role="approver"))
    assert "ix_tasks_role_" in count_plan, count_plan  # either role index counts without a table scan
    assert "ix_tasks_role_unfinished" in page_plan, page_plan
    assert "Sort" not in page_plan and "TEMP B-TREE" not in page_plan, page_plan


async def test_my_tasks_and_group_inboxes_use_their_partial_indexes(db: Database) -> None:
    await seed_tasks(db)
    for query, index in ((TaskQuery(group="finance"), "ix_tasks_group_unfinished"),):
        count_plan, page_plan = await plans_of(db, query)
        assert index in page_plan, page_plan


async def test_my_tasks_read_the_assignee_index_and_the_delegate_index(db: Database) -> None:
    """ "Assigned to me" is the assignee's or the delegate's: each side is read from its own index and
    the two merged (a bitmap OR on PostgreSQL, a multi-index OR on SQLite), never a scan of every task."""
    await seed_tasks(db)
    for generic in (False, True):
        for plan in await plans_of(db, TaskQuery(assigned_to_me=True), generic=generic, bitmaps=True):
            assert "ix_tasks_user_" in plan and "ix_tasks_delegated" in plan, plan
            assert "Seq Scan" not in plan and "SCAN tasks" not in plan, plan
        # By status, a tiny table may be answered from another index too, but never by reading every row.
        by_status = TaskQuery(assigned_to_me=True, statuses=[TaskStatus.COMPLETED])
        for plan in await plans_of(db, by_status, generic=generic, bitmaps=True):
            assert "Seq Scan" not in plan and "SCAN tasks" not in plan, plan


async def test_completed_tasks_are_not_in_the_partial_indexes_scope(db: Database) -> None:
    """With completed tasks asked for, the partial index cannot answer, and the results stay whole."""
    await seed_tasks(db)
    async with db.read() as session:
        query = TaskQuery(role="approver", include_completed=True)
        found, total, _ = await search_tasks(session, APPROVER, query, 50, None)
    assert total == 20 and [task.id for task in found] == [f"t-{number:02d}" for number in range(1, 40, 2)]
    for plan in await plans_of(db, TaskQuery(role="approver", include_completed=True)):
        assert "ix_tasks_role_unfinished" not in plan, plan


async def test_an_inbox_by_status_uses_the_index_of_tasks_with_that_kind_of_assignee(db: Database) -> None:
    """The assignee indexes leave out tasks without that kind of assignee; a lookup by assignee (a
    bound parameter) still reaches them, as ``column = value`` implies ``column IS NOT NULL``."""
    await seed_tasks(db)
    for query, index in (
        (TaskQuery(role="approver", statuses=[TaskStatus.COMPLETED]), "ix_tasks_role_inbox"),
        (TaskQuery(group="finance", statuses=[TaskStatus.COMPLETED]), "ix_tasks_group_inbox"),
        (TaskQuery(group="finance"), "ix_tasks_group_unfinished"),
    ):
        for generic in (False, True):
            _, page_plan = await plans_of(db, query, generic=generic)
            assert index in page_plan, page_plan
    async with db.read() as session:
        query = TaskQuery(group="finance", statuses=[TaskStatus.COMPLETED])
        found, total, _ = await search_tasks(session, APPROVER, query, 50, None)
    expected = [f"t-{n:02d}" for n in range(0, 40, 3) if n % 4 == 1]
    assert total == len(expected) and [task.id for task in found] == expected


async def test_the_worker_and_the_expiry_sweep_use_their_partial_indexes(db: Database) -> None:
    """The worker's claim reaches its index of system tasks only, and the expiry sweep its index of
    tasks with an expiry only, with their parameters' values and without."""
    async with db.transaction() as session:
        await InstanceRepository(session).insert(an_instance())
        step = await new_step(session, "wi-1", "review", "decision")
        repository = TaskRepository(session)
        for number in range(12):
            system = number % 3 == 0
            await repository.insert(a_task(
                f"t-{number:02d}", step, number, kind=TaskKind.SYSTEM if system else TaskKind.USER,
                next_run_at=T0 if system else None, expires_at=T0 if number % 4 == 1 else None,
            ))  # fmt: skip
        if not db.is_sqlite:  # the sizes a planner weighs the indexes by
            await session.execute(text("ANALYZE tasks"))
    now = T0 + timedelta(hours=1)

    async def claim(session: AsyncSession) -> None:
        claimed = await LeaseRepository(session).claim_runnable(now, "w1", now + timedelta(seconds=30), 10)
        assert sorted(task.id for task in claimed) == ["t-00", "t-03", "t-06", "t-09"]

    async def sweep(session: AsyncSession) -> None:
        expiring = await TaskRepository(session).find_expiring(now)
        assert sorted(task.id for task in expiring) == ["t-01", "t-05"]  # t-09 is a system task

    for generic in (False, True):
        [claim_plan] = await plans_during(db, claim, generic=generic)
        assert "ix_tasks_runnable" in claim_plan, claim_plan
        [sweep_plan] = await plans_during(db, sweep, generic=generic)
        assert "ix_tasks_expiry" in sweep_plan, sweep_plan
