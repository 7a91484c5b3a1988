"""A page or list reads a task's values (input, output, draft) and an instance's data only when the query
selects them: each may be as large as STEPWISE_MAX_JSON_BYTES, and an inbox page shows none of them."""

from __future__ import annotations

import re

from engine.tasks.service import TaskService
from engine.transitions.engine import Engine
from tests.server.conftest import GraphQL
from tests.server.test_query_counts import counting

VALUE_COLUMNS = ("tasks.input", "tasks.output", "tasks.draft", "workflow_instances.data")
PAGE = """{ tasks(filter: {includeCompleted: true}) { edges { node { id title status
  workflowInstance { id status startedBy { id } } step { key } } } } }"""
PAGE_WITH_VALUES = """{ tasks(filter: {includeCompleted: true}) { edges { node { id ...values } } } }
fragment values on Task { output draft }"""
INSTANCE = """query($id: ID!) { workflowInstance(id: $id) { id status tasks { id status } } }"""
INSTANCE_WITH_VALUES = """query($id: ID!) { workflowInstance(id: $id) { data tasks { output } } }"""
TASK_INSTANCE_DATA = """query($id: ID!) { task(id: $id) { workflowInstance { data } } }"""


async def expense_with_values(engine: Engine) -> tuple[str, str]:
    """alice's expense: its form submitted (output, and the instance's data, hold MARKER-OUTPUT) and the
    receipt task open; returns the instance and the form task."""
    alice = await engine.user("alice")
    assert alice is not None
    instance = await engine.start("expense_approval", {"entityName": "MARKER-INPUT"}, "alice")
    [token] = instance.tokens
    assert token.task_id is not None
    values = {"amount": 12, "description": "MARKER-OUTPUT", "spentOn": "2026-01-05"}
    await TaskService(engine).submit(alice, token.task_id, values, None)
    return instance.id, token.task_id


def read_values(statements: list[str]) -> list[str]:
    """The value columns ``statements`` read, but for the event reader's (engine.events.log), which may run
    in the background meanwhile and reads the tasks it delivers whole, for subscriptions to select from."""
    requests = [s for s in statements if not re.search(r"FROM tasks\s+WHERE tasks.id (IN|= ANY)", s)]
    return sorted({column for statement in requests for column in VALUE_COLUMNS if column in statement})


async def test_an_inbox_page_reads_no_values_unless_it_selects_them(gql: GraphQL, app_engine: Engine) -> None:
    await expense_with_values(app_engine)

    with counting(app_engine) as plain:
        page = await gql(PAGE, user="dana")
    with counting(app_engine) as selected:
        with_values = await gql(PAGE_WITH_VALUES, user="dana")

    assert "errors" not in page and len(page["data"]["tasks"]["edges"]) == 2
    assert read_values(plain) == []
    assert "MARKER-OUTPUT" not in str(page)
    assert {"tasks.output", "tasks.draft"} <= set(read_values(selected))
    outputs = [edge["node"]["output"] for edge in with_values["data"]["tasks"]["edges"]]
    assert {"amount": 12, "description": "MARKER-OUTPUT", "spentOn": "2026-01-05"} in outputs


async def test_an_instance_and_its_tasks_read_their_values_only_when_selected(gql: GraphQL, app_engine: Engine) -> None:
    instance_id, form_task_id = await expense_with_values(app_engine)

    with counting(app_engine) as plain:
        summary = await gql(INSTANCE, user="alice", id=instance_id)
    with counting(app_engine) as selected:
        full = await gql(INSTANCE_WITH_VALUES, user="alice", id=instance_id)
    through_task = await gql(TASK_INSTANCE_DATA, user="alice", id=form_task_id)

    assert "errors" not in summary and len(summary["data"]["workflowInstance"]["tasks"]) == 2
    assert read_values(plain) == []
    assert "workflow_instances.data" in read_values(selected) and "tasks.output" in read_values(selected)
    answer = full["data"]["workflowInstance"]
    assert answer["data"]["entityName"] == "MARKER-INPUT"
    assert answer["data"]["expense"]["description"] == "MARKER-OUTPUT"
    assert answer["tasks"][0]["output"]["description"] == "MARKER-OUTPUT"
    assert through_task["data"]["task"]["workflowInstance"]["data"]["entityName"] == "MARKER-INPUT"
