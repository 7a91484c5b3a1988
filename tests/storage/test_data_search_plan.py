"""At 100k tasks, PostgreSQL answers data conditions from the indexes a definition's ``searchable``
asks for (engine/storage/postgres/search_indexes.py); deploying builds them, once, and a bad path
is a deploy error. The planner is not pushed: the tables are analyzed and it chooses."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, text

from engine.errors import DefinitionError
from engine.state import User
from engine.storage.data_search import DataCondition, DataOperator, DataSource
from engine.storage.database import Database
from engine.storage.inbox import TaskQuery, search_tasks
from engine.storage.postgres.search_indexes import ensure_search_indexes, index_name
from engine.transitions.engine import Engine
from tests.storage.test_inbox_plan import explain

INSTANCES = 25_000
TASKS_PER_INSTANCE = 4
SUPERVISOR = User(id="dana", name="Dana", roles=frozenset({"admin"}))
DEFINITION = {
    "key": "searchable", "start": "decision", "searchable": ["amount", "customer.id"],
    "nodes": [{"id": "decision", "type": "userTask", "schemaType": "userTask.approval", "assignToRole": "approver"}],
}  # fmt: skip

# Amounts 0..9,999 and 500 customers over the instances; a tenth of the tasks carry a customer in their input.
LOAD = [
    """INSERT INTO workflow_instances (id, definition_key, definition_version, status, data, tokens, started_by,
                                       started_at, updated_at, revision)
       SELECT 'wi-' || n, 'searchable', 1, 'WAITING_FOR_SIGNAL',
              jsonb_build_object('amount', (n * 7919) % 10000, 'customer', jsonb_build_object('id', 'c-' || n % 500)),
              '[]', 'alice', now(), now(), 1
       FROM generate_series(1, :instances) AS n""",
    """INSERT INTO step_instances (id, workflow_instance_id, milestone_key, step_key, created_at)
       SELECT 'st-' || n, 'wi-' || n, 'main', 'main', now() FROM generate_series(1, :instances) AS n""",
    """INSERT INTO tasks (id, workflow_instance_id, step_instance_id, token_id, node_id, kind, type, schema_type, name,
                          title, assigned_role, status, priority, input, output, revision, created_at, updated_at,
                          attempt_count)
       SELECT 't-' || t, 'wi-' || (t % :instances + 1), 'st-' || (t % :instances + 1), 'tok-' || t, 'decision',
              'USER', 'APPROVAL', 'userTask.approval', 'Decision', 'Decide',
              CASE WHEN t % 4 = 0 THEN 'approver' ELSE 'role_' || t % 7 END,
              CASE WHEN t % 5 = 0 THEN 'PENDING' ELSE 'COMPLETED' END, 1,
              CASE WHEN t % 10 = 0 THEN jsonb_build_object('customer', jsonb_build_object('id', 'c-' || t % 5000))
                   ELSE '{}'::jsonb END,
              'null', 1, now() - make_interval(secs => t), now(), 0
       FROM generate_series(1, :tasks) AS t""",
]


async def plans_of(db: Database, query: TaskQuery) -> list[str]:
    """The plan of each statement the inbox sends for ``query`` (its page, its count), as the planner
    chooses it for the values given."""
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        sent.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with db.read() as session:
            await search_tasks(session, SUPERVISOR, query, 50, None)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
    async with db.read() as session:
        return [await explain(session, db, statement, parameters) for statement, parameters in sent]


@pytest.mark.postgres_only
async def test_data_conditions_use_the_searchable_indexes_at_100k_tasks(engine: Engine, db: Database) -> None:
    await engine.deploy(DEFINITION, deployed_by="dana")
    await engine.index_builds_done()
    names = {index_name(table, path) for table in ("workflow_instances", "tasks") for path in ("amount", "customer.id")}
    async with db.read() as session:
        found = set(await session.scalars(text("SELECT indexname FROM pg_indexes WHERE indexname LIKE 'ix_search_%'")))
    assert names <= found
    assert await ensure_search_indexes(db, ["amount", "customer.id"]) == []  # built once
    async with db.transaction() as session:
        for statement in LOAD:
            await session.execute(text(statement), {"instances": INSTANCES, "tasks": INSTANCES * TASKS_PER_INSTANCE})
    async with db.engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(text("VACUUM ANALYZE workflow_instances, tasks"))

    def on(*conditions: DataCondition) -> TaskQuery:
        return TaskQuery(data=conditions, include_completed=True)

    # Selective conditions are read from the path's index, on either table.
    selective = [
        (DataCondition("customer.id", DataOperator.EQ, "c-42"), "workflow_instances"),
        (DataCondition("amount", DataOperator.GT, 9_990), "workflow_instances"),
        (DataCondition("amount", DataOperator.IN, [17, 4242]), "workflow_instances"),
        (DataCondition("customer.id", DataOperator.EQ, "c-4242", DataSource.TASK_INPUT), "tasks"),
        (DataCondition("customer.id", DataOperator.LT, "c-1001", DataSource.TASK_INPUT), "tasks"),
    ]
    for condition, table in selective:
        for plan in await plans_of(db, on(condition)):
            assert index_name(table, condition.path) in plan, (condition, plan)
    # The inbox's own case (benchmarked): a page of a role's open tasks with a common amount comes from
    # the role's index in page order, each checked against its instance by key, reading no whole table.
    # (Its count checks every one of the role's open tasks; at 90% it may read the instances whole.)
    inbox = TaskQuery(role="approver", data=(DataCondition("amount", DataOperator.GT, 1_000),))
    [page] = [plan for plan in await plans_of(db, inbox) if plan.startswith("Limit")]
    assert "ix_tasks_role_unfinished" in page and "Seq Scan" not in page, page


async def test_a_searchable_path_must_be_a_data_path(engine: Engine) -> None:
    for bad in (["a..b"], ["x'); DROP TABLE tasks; --"], [f"p{n}" for n in range(17)]):
        with pytest.raises(DefinitionError) as raised:
            await engine.deploy({**DEFINITION, "searchable": bad})
        assert {e.code for e in raised.value.field_errors} <= {"INVALID_PATH", "TOO_MANY"}, raised.value.field_errors
    with pytest.raises(DefinitionError):
        await engine.deploy({**DEFINITION, "searchable": "amount"})
