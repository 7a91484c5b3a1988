"""``Task.history`` and ``WorkflowInstance.history`` through the real HTTP app."""

from __future__ import annotations

from engine.transitions.engine import Engine
from tests.server.conftest import GraphQL

DEFINITION = {"key": "history_api", "start": "decision", "nodes": [
    {"id": "decision", "type": "userTask", "schemaType": "userTask.approval", "assignToRole": "approver"}]}  # fmt: skip
ENTRY = """kind occurredAt taskId revision decision comment details actor { id }
  statusChange { from to } assigneeChange { from { id } to { id } } task { id status }"""
TASK_HISTORY = f"""query($id: ID!, $first: Int, $after: String) {{ task(id: $id) {{
  history(first: $first, after: $after) {{ edges {{ cursor node {{ {ENTRY} }} }} pageInfo {{ hasNextPage endCursor }} }}
}} }}"""
INSTANCE_HISTORY = """query($id: ID!) { workflowInstance(id: $id) { history { edges { node { kind taskId } } } } }"""


async def story(gql: GraphQL, engine: Engine) -> tuple[str, str]:
    await engine.deploy(DEFINITION, deployed_by="dana")
    instance = await engine.start("history_api", {}, "alice")
    task_id = instance.tokens[0].task_id
    assert task_id is not None
    for user, mutation in (("bob", "claimTask(input: {taskId: $id})"),
                           ("carol", "assignTask(input: {taskId: $id, userId: \"erin\"})"),
                           ("erin", "rejectTask(input: {taskId: $id, comment: \"too dear\"})")):  # fmt: skip
        body = await gql(f"mutation($id: ID!) {{ {mutation} {{ __typename }} }}", user=user, id=task_id)
        assert "Success" in next(iter(body["data"].values()))["__typename"], body
    return instance.id, task_id


async def test_a_task_history_shows_who_changed_what(gql: GraphQL, app_engine: Engine) -> None:
    instance_id, task_id = await story(gql, app_engine)
    history = (await gql(TASK_HISTORY, user="bob", id=task_id))["data"]["task"]["history"]
    nodes = [edge["node"] for edge in history["edges"]]
    done = {"id": task_id, "status": "COMPLETED"}
    assert nodes == [
        {"kind": "CREATED", "occurredAt": nodes[0]["occurredAt"], "taskId": task_id, "revision": 0, "decision": None,
         "comment": None, "details": None, "actor": {"id": "alice"}, "statusChange": {"from": None, "to": "PENDING"},
         "assigneeChange": None, "task": done},
        {"kind": "CLAIMED", "occurredAt": nodes[1]["occurredAt"], "taskId": task_id, "revision": 1, "decision": None,
         "comment": None, "details": None, "actor": {"id": "bob"}, "statusChange": {"from": "PENDING", "to": "CLAIMED"},
         "assigneeChange": {"from": None, "to": {"id": "bob"}}, "task": done},
        {"kind": "ASSIGNED", "occurredAt": nodes[2]["occurredAt"], "taskId": task_id, "revision": 2, "decision": None,
         "comment": None, "details": None, "actor": {"id": "carol"}, "statusChange": None,
         "assigneeChange": {"from": {"id": "bob"}, "to": {"id": "erin"}}, "task": done},
        {"kind": "COMPLETED", "occurredAt": nodes[3]["occurredAt"], "taskId": task_id, "revision": 3,
         "decision": "rejected", "comment": "too dear", "details": None, "actor": {"id": "erin"},
         "statusChange": {"from": "CLAIMED", "to": "COMPLETED"}, "assigneeChange": None, "task": done},
    ]  # fmt: skip
    assert history["pageInfo"] == {"hasNextPage": False, "endCursor": history["edges"][-1]["cursor"]}

    first = (await gql(TASK_HISTORY, user="bob", id=task_id, first=3))["data"]["task"]["history"]
    assert [e["node"]["kind"] for e in first["edges"]] == ["CREATED", "CLAIMED", "ASSIGNED"]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = await gql(TASK_HISTORY, user="bob", id=task_id, after=first["pageInfo"]["endCursor"])
    assert [e["node"]["kind"] for e in rest["data"]["task"]["history"]["edges"]] == ["COMPLETED"]

    whole = (await gql(INSTANCE_HISTORY, user="alice", id=instance_id))["data"]["workflowInstance"]["history"]
    assert [e["node"]["kind"] for e in whole["edges"]] == ["CREATED", "CLAIMED", "ASSIGNED", "COMPLETED"]


async def test_bad_paging_arguments_are_bad_user_input(gql: GraphQL, app_engine: Engine) -> None:
    _, task_id = await story(gql, app_engine)
    for variables, field in (({"first": 500}, "first"), ({"after": "not-a-cursor"}, "after")):
        body = await gql(TASK_HISTORY, user="bob", id=task_id, **variables)
        [error] = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert [f["field"] for f in error["extensions"]["fieldErrors"]] == [field]
