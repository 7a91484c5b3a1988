"""Early signals, correlate and correlationKey through the real HTTP app."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from engine.storage.models import held_signals, instances
from engine.transitions.engine import Engine
from tests.server.conftest import GraphQL
from tests.server.test_task_api import VALID, snapshot

INSTANCE = """workflowInstance { id status correlationKey tasks { nodeId status completedBy { id } }
  heldSignals { nodeId payload sentBy { id } appliedAt taskId } unusedSignals { nodeId } }"""
RESULT = f"""__typename ... on WorkflowSuccess {{ {INSTANCE} }} ... on Error {{ code message }}"""
START = f"""mutation($key: String) {{ startWorkflow(input: {{definitionKey: "expense_approval",
  input: {{entityName: "Lunch"}}, correlationKey: $key}}) {{
  __typename ... on StartWorkflowSuccess {{ {INSTANCE} }} ... on Error {{ code message }} }} }}"""
SIGNAL = f"""mutation($id: ID!, $node: String!, $payload: JSON) {{
  sendSignal(input: {{workflowInstanceId: $id, nodeId: $node, payload: $payload}}) {{ {RESULT} }} }}"""
CORRELATE = f"""mutation($key: String!, $node: String!, $payload: JSON) {{ correlate(input: {{
  definitionKey: "expense_approval", correlationKey: $key, nodeId: $node, payload: $payload}}) {{ {RESULT} }} }}"""
SUBMIT = """mutation($id: ID!, $values: JSON) { submitTask(input: {taskId: $id, values: $values}) {
  __typename ... on Error { code message } } }"""


async def rows(engine: Engine) -> tuple[Any, ...]:
    async with engine.db.read() as session:
        held = (await session.execute(select(held_signals).order_by(held_signals.c.id))).all()
        started = (await session.execute(select(instances).order_by(instances.c.id))).all()
    return tuple(map(tuple, held)), tuple(map(tuple, started)), await snapshot(engine)


async def test_an_early_signal_is_held_then_completes_its_node_once_when_the_token_arrives(
    gql: GraphQL, app_engine: Engine
) -> None:
    started = (await gql(START, user="alice", key="EXP-1"))["data"]["startWorkflow"]["workflowInstance"]
    early = (await gql(SIGNAL, user="dana", id=started["id"], node="receipt", payload={"scan": "r.pdf"}))["data"]
    held = early["sendSignal"]["workflowInstance"]
    assert [t["nodeId"] for t in held["tasks"]] == ["expense_form"]
    assert held["heldSignals"] == [
        {"nodeId": "receipt", "payload": {"scan": "r.pdf"}, "sentBy": {"id": "dana"}, "appliedAt": None, "taskId": None}
    ]

    before = await rows(app_engine)
    duplicate = (await gql(SIGNAL, user="dana", id=started["id"], node="receipt", payload={}))["data"]["sendSignal"]
    assert (duplicate["__typename"], duplicate["code"]) == ("Conflict", "SIGNAL_ALREADY_HELD")
    assert await rows(app_engine) == before, "a refused duplicate changes nothing"

    form_task = next(t for t in started["tasks"] if t["nodeId"] == "expense_form")
    assert form_task["status"] == "PENDING"
    task_id = (await gql("query($id: ID!) { workflowInstance(id: $id) { tasks { id } } }", user="alice",
                         id=started["id"]))["data"]["workflowInstance"]["tasks"][0]["id"]  # fmt: skip
    assert (await gql(SUBMIT, user="alice", id=task_id, values=VALID))["data"]["submitTask"]["__typename"] == (
        "TaskSuccess"
    )
    after = (await gql(f"query($id: ID!) {{ {INSTANCE.replace('workflowInstance', 'workflowInstance(id: $id)', 1)} }}",
                       user="dana", id=started["id"]))["data"]["workflowInstance"]  # fmt: skip
    receipt = next(t for t in after["tasks"] if t["nodeId"] == "receipt")
    assert receipt == {"nodeId": "receipt", "status": "COMPLETED", "completedBy": {"id": "dana"}}
    assert [t["nodeId"] for t in after["tasks"]] == ["expense_form", "receipt", "approval"]
    [signal] = after["heldSignals"]
    assert signal["appliedAt"] is not None and signal["taskId"] is not None
    assert after["unusedSignals"] == []


async def test_a_held_signal_the_instance_never_reaches_is_reported_unused(gql: GraphQL) -> None:
    started = (await gql(START, user="alice"))["data"]["startWorkflow"]["workflowInstance"]
    await gql(SIGNAL, user="dana", id=started["id"], node="approval", payload={"decision": "approved"})
    cancel = """mutation($id: ID!) { cancelWorkflow(input: {workflowInstanceId: $id}) { __typename } }"""
    assert (await gql(cancel, user="alice", id=started["id"]))["data"]["cancelWorkflow"]["__typename"] == (
        "WorkflowSuccess"
    )
    query = "query($id: ID!) { workflowInstance(id: $id) { status unusedSignals { nodeId payload } } }"
    ended = (await gql(query, user="alice", id=started["id"]))["data"]["workflowInstance"]
    assert ended == {"status": "CANCELLED", "unusedSignals": [{"nodeId": "approval",
                                                               "payload": {"decision": "approved"}}]}  # fmt: skip


async def test_correlate_finds_the_instance_by_its_business_key(gql: GraphQL, app_engine: Engine) -> None:
    first = (await gql(START, user="alice", key="EXP-7"))["data"]["startWorkflow"]["workflowInstance"]
    again = (await gql(START, user="alice", key="EXP-7"))["data"]["startWorkflow"]["workflowInstance"]
    assert again["id"] == first["id"] and again["correlationKey"] == "EXP-7", "the key's instance, not a new one"
    taken = (await gql(START, user="erin", key="EXP-7"))["data"]["startWorkflow"]
    assert taken["__typename"] == "Conflict", "erin may not see alice's instance: the key is taken"

    correlated = (await gql(CORRELATE, user="dana", key="EXP-7", node="expense_form", payload=VALID))["data"]
    instance = correlated["correlate"]["workflowInstance"]
    assert instance["id"] == first["id"]
    assert [t["nodeId"] for t in instance["tasks"]] == ["expense_form", "receipt"]
    early = await gql(CORRELATE, user="dana", key="EXP-7", node="approval", payload={"decision": "approved"})
    assert [s["nodeId"] for s in early["data"]["correlate"]["workflowInstance"]["heldSignals"]] == ["approval"]

    before = await rows(app_engine)
    unknown = (await gql(CORRELATE, user="dana", key="EXP-404", node="receipt", payload={}))["data"]["correlate"]
    forbidden = (await gql(CORRELATE, user="alice", key="EXP-7", node="receipt", payload={}))["data"]["correlate"]
    bad_key = (await gql(START, user="alice", key="x" * 256))["data"]["startWorkflow"]
    assert unknown["code"] == "NOT_FOUND" and forbidden["code"] == "FORBIDDEN"
    assert bad_key["code"] == "VALIDATION_FAILED"
    assert await rows(app_engine) == before
