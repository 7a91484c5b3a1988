"""The bulk mutations over HTTP: an item per task with the single mutation's answer, counts, and the
mutation's own ValidationFailed for a list it refuses as a whole."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy.exc

from engine.errors import UnavailableError
from engine.state import Task, User
from engine.tasks.service import TaskService
from engine.transitions.engine import Engine
from tests.server.conftest import GraphQL

DEFINITION = {"key": "bulk_api", "start": "decision", "nodes": [
    {"id": "decision", "type": "userTask", "schemaType": "userTask.approval", "assignToRole": "approver"}]}  # fmt: skip
DECIDE = """mutation($ids: [ID!]!, $dry: Boolean!) {
  decideTasks(input: {taskIds: $ids, decision: REJECTED, comment: "no", dryRun: $dry}) { __typename
    ... on BulkTasksSuccess { dryRun succeeded failed
      items { taskId result { __typename ... on TaskSuccess { task { status output } } ... on Error { code } } } }
    ... on ValidationFailed { code fieldErrors { field code } } } }"""


async def test_decide_tasks_answers_per_item(app_engine: Engine, gql: GraphQL) -> None:
    await app_engine.deploy(DEFINITION, deployed_by="dana")
    ids = []
    for _ in range(3):
        [token] = (await app_engine.start("bulk_api", {}, "alice")).tokens
        assert token.task_id is not None
        ids.append(token.task_id)
    taken = await gql("mutation($id: ID!) { claimTask(input: {taskId: $id}) { __typename } }", user="dana", id=ids[1])
    assert taken["data"]["claimTask"]["__typename"] == "TaskSuccess"

    rehearsed = (await gql(DECIDE, user="bob", ids=ids, dry=True))["data"]["decideTasks"]
    done = (await gql(DECIDE, user="bob", ids=ids, dry=False))["data"]["decideTasks"]
    again = (await gql(DECIDE, user="bob", ids=ids, dry=False))["data"]["decideTasks"]
    too_many = (await gql(DECIDE, user="bob", ids=[str(n) for n in range(501)], dry=False))["data"]["decideTasks"]

    assert (rehearsed["dryRun"], rehearsed["succeeded"], rehearsed["failed"]) == (True, 2, 1)
    assert (done["dryRun"], done["succeeded"], done["failed"]) == (False, 2, 1)
    assert [item["taskId"] for item in done["items"]] == ids
    first, held, third = (item["result"] for item in done["items"])
    assert first["__typename"] == third["__typename"] == "TaskSuccess" and held == {
        "__typename": "Forbidden",
        "code": "FORBIDDEN",
    }
    assert first["task"]["status"] == "COMPLETED" and first["task"]["output"]["decision"] == "rejected"
    assert [item["result"]["__typename"] for item in again["items"]] == ["Conflict", "Forbidden", "Conflict"]
    assert too_many == {"__typename": "ValidationFailed", "code": "VALIDATION_FAILED",
                        "fieldErrors": [{"field": "taskIds", "code": "TOO_MANY"}]}  # fmt: skip


async def test_an_item_the_database_fails_is_answered_unavailable_and_the_others_stand(
    app_engine: Engine, gql: GraphQL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outage during one item (an UnavailableError, or the pool giving no connection in time) is that
    item's typed answer: a top-level error would hide which of the others were committed."""
    await app_engine.deploy(DEFINITION, deployed_by="dana")
    ids = []
    for _ in range(3):
        [token] = (await app_engine.start("bulk_api", {}, "alice")).tokens
        assert token.task_id is not None
        ids.append(token.task_id)
    outages = {ids[1]: UnavailableError("the files directory is not writable"),
               ids[2]: sqlalchemy.exc.TimeoutError("QueuePool limit reached, connection timed out")}  # fmt: skip
    decide = TaskService.decide

    async def failing(self: TaskService, user: User, task_id: str, *args: Any) -> Task:
        if task_id in outages:
            raise outages[task_id]
        return await decide(self, user, task_id, *args)

    monkeypatch.setattr(TaskService, "decide", failing)
    body = await gql(DECIDE, user="bob", ids=ids, dry=False)
    assert "errors" not in body, body
    done = body["data"]["decideTasks"]
    assert (done["succeeded"], done["failed"]) == (1, 2)
    results = [item["result"] for item in done["items"]]
    assert results[0]["__typename"] == "TaskSuccess" and results[0]["task"]["status"] == "COMPLETED"
    assert results[1:] == [{"__typename": "Unavailable", "code": "UNAVAILABLE"}] * 2
