"""The user-task mutations through the real HTTP app: the demo story and its failure paths."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from engine.storage.models import task_events, tasks
from engine.transitions.engine import Engine
from tests.server.conftest import GraphQL
from tests.server.test_workflow_api import start_expense

RESULT = """__typename
  ... on TaskSuccess { task { id status revision draft output assignee { id } completedBy { id } } }
  ... on ValidationFailed { message fieldErrors { field code message } }
  ... on Error { code message }"""
SAVE = f"mutation($id: ID!, $values: JSON!, $rev: Int) {{ saveTaskProgress(input: {{taskId: $id, values: $values, expectedRevision: $rev}}) {{ {RESULT} }} }}"  # noqa: E501
SUBMIT = f"mutation($id: ID!, $values: JSON, $rev: Int) {{ submitTask(input: {{taskId: $id, values: $values, expectedRevision: $rev}}) {{ {RESULT} }} }}"  # noqa: E501
APPROVE = (
    f"mutation($id: ID!, $comment: String) {{ approveTask(input: {{taskId: $id, comment: $comment}}) {{ {RESULT} }} }}"  # noqa: E501
)
CLAIM = f"mutation($id: ID!) {{ claimTask(input: {{taskId: $id}}) {{ {RESULT} }} }}"
ASSIGN = f"mutation($id: ID!, $assignee: ID) {{ assignTask(input: {{taskId: $id, userId: $assignee}}) {{ {RESULT} }} }}"
POST = """mutation($id: ID!, $body: String!) { postTaskMessage(input: {taskId: $id, body: $body}) {
  __typename ... on TaskMessageSuccess {
    posted: message { body author { id } } task { messages { body author { id } } }
  }
  ... on Error { code message } } }"""
INBOX = "query($filter: TaskFilter) { tasks(filter: $filter) { totalCount edges { node { id nodeId title } } } }"

VALID = {"amount": 42.5, "description": "Team lunch\nwith client", "spentOn": "2026-11-20", "category": "meals",
         "tags": ["client"], "urgent": False}  # fmt: skip


async def snapshot(engine: Engine) -> tuple[Any, ...]:
    async with engine.db.read() as session:
        rows = (await session.execute(select(tasks).order_by(tasks.c.id))).all()
        events = await session.scalar(select(func.count()).select_from(task_events))
    return tuple(tuple(row) for row in rows), events


async def test_form_validation_drafts_and_submit(gql: GraphQL, app_engine: Engine) -> None:
    instance = await start_expense(gql)
    task_id = instance["tasks"][0]["id"]

    saved = (await gql(SAVE, user="alice", id=task_id, values={"amount": 10, "description": "Lunch"}))["data"]
    task = saved["saveTaskProgress"]["task"]
    assert task["status"] == "CLAIMED" and task["assignee"] == {"id": "alice"} and task["revision"] == 2
    assert task["draft"] == {"amount": 10, "description": "Lunch"}

    before = await snapshot(app_engine)
    bad = {"amount": -1.234, "description": 5, "spentOn": "20-11-2026", "category": "boats", "tags": ["x"],
           "urgent": "yes", "colour": "red"}  # fmt: skip
    failed = (await gql(SUBMIT, user="alice", id=task_id, values=bad))["data"]["submitTask"]
    assert failed["__typename"] == "ValidationFailed"
    assert {e["field"]: e["code"] for e in failed["fieldErrors"]} == {
        "values.colour": "UNKNOWN_FIELD", "values.amount": "TOO_SMALL", "values.description": "WRONG_TYPE",
        "values.spentOn": "INVALID_FORMAT", "values.category": "NOT_AN_OPTION", "values.tags": "NOT_AN_OPTION",
        "values.urgent": "WRONG_TYPE",
    }  # fmt: skip
    missing = (await gql(SUBMIT, user="alice", id=task_id, values={"amount": 1}))["data"]["submitTask"]
    assert {e["field"] for e in missing["fieldErrors"]} == {"values.description", "values.spentOn"}
    stale = (await gql(SUBMIT, user="alice", id=task_id, values=VALID, rev=1))["data"]["submitTask"]
    assert stale["__typename"] == "Conflict"
    assert await snapshot(app_engine) == before, "failed submits must change nothing, the draft survives"

    done = (await gql(SUBMIT, user="alice", id=task_id, values=VALID, rev=2))["data"]["submitTask"]["task"]
    assert done["status"] == "COMPLETED" and done["completedBy"] == {"id": "alice"} and done["output"] == VALID
    again = (await gql(SUBMIT, user="alice", id=task_id, values=VALID))["data"]["submitTask"]
    assert again["__typename"] == "Conflict"
    inbox = (await gql(INBOX, user="alice", filter={"role": "requester"}))["data"]["tasks"]
    assert [e["node"]["nodeId"] for e in inbox["edges"]] == ["receipt"]


async def test_approval_discussion_and_reassignment(gql: GraphQL, app_engine: Engine) -> None:
    instance = await start_expense(gql)
    # The receipt upload is driven by an admin's raw signal here: uploads arrive with the documents work.
    await gql(SUBMIT, user="alice", id=instance["tasks"][0]["id"], values=VALID)
    signal = """mutation($id: ID!) { sendSignal(input: {workflowInstanceId: $id, nodeId: "receipt", payload: {}}) {
      __typename } }"""
    assert (await gql(signal, user="dana", id=instance["id"]))["data"]["sendSignal"]["__typename"] == "WorkflowSuccess"

    inbox = (await gql(INBOX, user="bob", filter={"role": "approver"}))["data"]["tasks"]
    [edge] = inbox["edges"]
    approval_id = edge["node"]["id"]
    assert edge["node"]["title"] == "Approve : Team lunch"
    assert (await gql(INBOX, user="erin", filter={"role": "approver"}))["data"]["tasks"]["totalCount"] == 0
    assert (await gql(INBOX, user="erin"))["data"]["tasks"]["totalCount"] == 0

    posted = (await gql(POST, user="alice", id=approval_id, body="Receipt is in the drawer"))["data"]
    assert posted["postTaskMessage"]["posted"] == {"body": "Receipt is in the drawer", "author": {"id": "alice"}}
    for bad_body in ("", " " * 3, "x" * 10_001):
        refused = (await gql(POST, user="bob", id=approval_id, body=bad_body))["data"]["postTaskMessage"]
        assert refused["__typename"] == "ValidationFailed"
    hidden = (await gql(POST, user="erin", id=approval_id, body="hi"))["data"]["postTaskMessage"]
    assert hidden["__typename"] == "NotFound"

    forbidden = (await gql(ASSIGN, user="bob", id=approval_id, assignee="alice"))["data"]["assignTask"]
    assert forbidden["__typename"] == "Forbidden"
    assigned = (await gql(ASSIGN, user="carol", id=approval_id, assignee="erin"))["data"]["assignTask"]["task"]
    assert assigned["assignee"] == {"id": "erin"} and assigned["status"] == "CLAIMED"
    assert (await gql(CLAIM, user="bob", id=approval_id))["data"]["claimTask"]["__typename"] == "Forbidden"
    not_bob = (await gql(APPROVE, user="bob", id=approval_id, comment="ok"))["data"]["approveTask"]
    assert not_bob["__typename"] == "Forbidden"
    unknown_user = (await gql(ASSIGN, user="carol", id=approval_id, assignee="zed"))["data"]["assignTask"]
    assert unknown_user["__typename"] == "ValidationFailed"
    back = (await gql(ASSIGN, user="carol", id=approval_id, assignee=None))["data"]["assignTask"]["task"]
    assert back["assignee"] is None and back["status"] == "PENDING"

    approved = (await gql(APPROVE, user="bob", id=approval_id, comment="Fine by me"))["data"]["approveTask"]["task"]
    assert approved["status"] == "COMPLETED" and approved["assignee"] == {"id": "bob"}
    assert approved["output"]["decision"] == "approved" and approved["output"]["comment"] == "Fine by me"
    assert approved["output"]["decidedBy"] == "bob"
    thread = await gql("query($id: ID!) { task(id: $id) { messages { body } } }", user="bob", id=approval_id)
    assert thread["data"]["task"]["messages"] == [{"body": "Receipt is in the drawer"}]
    after = await gql("query($id: ID!) { workflowInstance(id: $id) { data tasks { nodeId kind status } } }",
                      user="alice", id=instance["id"])  # fmt: skip
    nodes = {t["nodeId"]: (t["kind"], t["status"]) for t in after["data"]["workflowInstance"]["tasks"]}
    assert nodes["notify"] == ("SYSTEM", "PENDING") and nodes["mail"] == ("SYSTEM", "PENDING")


async def test_unknown_and_invisible_tasks_are_not_found(gql: GraphQL, app_engine: Engine) -> None:
    instance = await start_expense(gql)
    task_id = instance["tasks"][0]["id"]
    before = await snapshot(app_engine)
    for user, target in (("alice", "00000000-0000-7000-8000-000000000000"), ("bob", task_id), ("erin", task_id)):
        for query, name in ((CLAIM, "claimTask"), (SUBMIT, "submitTask")):
            result = (await gql(query, user=user, id=target))["data"][name]
            assert result["__typename"] == "NotFound", (user, name, result)
    malformed = (await gql(SAVE, user="alice", id=task_id, values="not an object"))["data"]["saveTaskProgress"]
    assert malformed["__typename"] == "ValidationFailed" and malformed["fieldErrors"][0]["field"] == "values"
    assert await snapshot(app_engine) == before


async def test_numbers_beyond_64_bits_survive_the_round_trip(gql: GraphQL) -> None:
    """JSON has no integer limit; the response encoder (orjson, 64-bit) must hand such values to the standard one."""
    instance = await start_expense(gql)
    task_id = instance["tasks"][0]["id"]
    huge = 2**70 + 1
    saved = (await gql(SAVE, user="alice", id=task_id, values={"amount": huge, "description": "big"}))["data"]
    assert saved["saveTaskProgress"]["task"]["draft"] == {"amount": huge, "description": "big"}
    read = await gql("query($id: ID!) { task(id: $id) { draft } }", user="alice", id=task_id)
    assert read["data"]["task"]["draft"]["amount"] == huge
