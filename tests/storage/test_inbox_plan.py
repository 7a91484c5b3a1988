"""The inbox's default query reaches the partial ``ix_tasks_*_unfinished`` indexes on both databases.

A partial index is used only when the planner can prove the query's WHERE implies the index's, so
this breaks as soon as the unfinished-status list is sent as bound parameters again, or the index
and the query spell the list differently. The planners are pushed towards indexes (tiny tables would
otherwise be scanned whole), then asked which index they chose and whether they still sort.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from engine.state import TaskStatus, User
from engine.storage.database import Database
from engine.storage.inbox import TaskQuery, search_tasks
from engine.storage.instances import InstanceRepository
from engine.storage.tasks import TaskRepository
from tests.storage.test_repositories import a_task, an_instance, new_step

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


async def plans_of(db: Database, query: TaskQuery) -> list[str]:
    """The plan of every statement ``search_tasks`` sends for ``query``, as text."""
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with db.read() as session:
            await search_tasks(session, APPROVER, query, 10, None)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
    plans = []
    async with db.read() as session:
        await discourage_scans(session, db)
        for statement, parameters in sent:
            plans.append(await explain(session, db, statement, parameters))
    return plans


async def discourage_scans(session: AsyncSession, db: Database) -> None:
    if not db.is_sqlite:
        await session.execute(text("SET LOCAL enable_seqscan = off"))
        await session.execute(text("SET LOCAL enable_bitmapscan = off"))


async def explain(session: AsyncSession, db: Database, statement: str, parameters: Any) -> str:
    raw = await session.connection()
    driver = (await raw.get_raw_connection()).driver_connection
    assert driver is not None
    if db.is_sqlite:
        cursor = await driver.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)
        return "\n".join(str(row[-1]) for row in await cursor.fetchall())
    rows = await driver.fetch(f"EXPLAIN {statement}", *parameters)
    return "\n".join(row[0] for row in rows)


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
    for query, index in (
        (TaskQuery(assigned_to_me=True), "ix_tasks_user_unfinished"),
        (TaskQuery(group="finance"), "ix_tasks_group_unfinished"),
    ):
        count_plan, page_plan = await plans_of(db, query)
        assert index in page_plan, page_plan


async def test_completed_tasks_are_not_in_the_partial_indexes_scope(db: Database) -> None:
    """With completed tasks asked for, the partial index cannot answer, and the results stay whole."""
    await seed_tasks(db)
    async with db.read() as session:
        query = TaskQuery(role="approver", include_completed=True)
        found, total, _ = await search_tasks(session, APPROVER, query, 50, None)
    assert total == 20 and [task.id for task in found] == [f"t-{number:02d}" for number in range(1, 40, 2)]
    for plan in await plans_of(db, TaskQuery(role="approver", include_completed=True)):
        assert "ix_tasks_role_unfinished" not in plan, plan
