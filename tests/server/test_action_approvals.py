"""Action approvals over GraphQL: an automated caller asks, a person decides, the caller
learns the outcome exactly once; invalid edits and service accounts are refused and write nothing."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select
from starlette.applications import Starlette

from engine import Engine
from engine.storage.models import instances, task_events, tasks
from server.auth import issue_token
from server.settings import Settings
from tests.server.conftest import GraphQL
from tests.server.live import TRANSPORT_WS, Feed, serving

SCHEMA = {
    "type": "object",
    "properties": {"orderId": {"type": "string"}, "amount": {"type": "number", "maximum": 500}},
    "required": ["orderId", "amount"],
    "additionalProperties": False,
}
REQUEST = """mutation($input: RequestApprovalInput!) { requestApproval(input: $input) {
  __typename ... on RequestApprovalSuccess { task { id type status title input assignedRole priority dueAt } }
  ... on ValidationFailed { fieldErrors { field code } } ... on Error { code message } } }"""
DECIDE = """mutation($input: DecideActionApprovalInput!) { decideActionApproval(input: $input) {
  __typename ... on TaskSuccess { task { id status output } }
  ... on ValidationFailed { fieldErrors { field code } } ... on Error { code message } } }"""
AWAIT = """query($id: ID!, $timeout: Int!) { awaitDecision(taskId: $id, timeoutSeconds: $timeout) {
  __typename ... on AwaitDecisionSuccess { status outcome task { id status } } ... on Error { code } } }"""
EVENTS = """subscription($filter: TaskEventFilter, $after: String) { taskEvents(filter: $filter, after: $after) {
  cursor kind task { id status output } } }"""


def refund_request(key: str | None = None, **overrides: Any) -> dict[str, Any]:
    return {"action": "refund", "arguments": {"orderId": "A-17", "amount": 120}, "argumentsSchema": SCHEMA,
            "summary": "Refund order A-17", "assignTo": {"role": "approver"}, "priority": "HIGH", "dueIn": "PT4H",
            **({"idempotencyKey": key} if key else {}), **overrides}  # fmt: skip


async def ask(gql: GraphQL, user: str = "alice", **request: Any) -> dict[str, Any]:
    body = await gql(REQUEST, user=user, input=refund_request(**request))
    result: dict[str, Any] = body["data"]["requestApproval"]
    return result


async def decide(gql: GraphQL, user: str = "bob", **input: Any) -> dict[str, Any]:
    body = await gql(DECIDE, user=user, input=input)
    result: dict[str, Any] = body["data"]["decideActionApproval"]
    return result


async def counts(engine: Engine) -> tuple[Any, ...]:
    async with engine.db.read() as session:
        found = [await session.scalar(select(func.count()).select_from(t)) for t in (task_events, instances)]
        rows = (await session.execute(select(tasks.c.id, tasks.c.status, tasks.c.output, tasks.c.revision))).all()
    return (*found, sorted(map(tuple, rows)))


async def until_completed(feed: Feed) -> list[dict[str, Any]]:
    events = await feed.events(1)
    while events[-1]["kind"] != "COMPLETED":
        events += await feed.events(1)
    return events


async def test_a_request_is_an_action_approval_task_in_the_approvers_inbox(gql: GraphQL) -> None:
    result = await ask(gql)
    assert result["__typename"] == "RequestApprovalSuccess", result
    task = result["task"]
    assert task["type"] == "ACTION_APPROVAL" and task["status"] == "PENDING" and task["assignedRole"] == "approver"
    assert task["priority"] == "HIGH" and task["dueAt"] is not None and task["title"] == "Approve: refund"
    assert task["input"] == {
        "action": "refund",
        "arguments": {"orderId": "A-17", "amount": 120},
        "argumentsSchema": SCHEMA,
        "summary": "Refund order A-17",
        "requestedBy": "alice",
    }
    inbox = await gql("{ tasks { edges { node { id type } } } }", user="bob")
    assert {"id": task["id"], "type": "ACTION_APPROVAL"} in [e["node"] for e in inbox["data"]["tasks"]["edges"]]


async def test_edited_arguments_are_the_outcome_and_awaiting_it_answers_once_decided(gql: GraphQL) -> None:
    task_id = (await ask(gql))["task"]["id"]
    pending = (await gql(AWAIT, user="alice", id=task_id, timeout=0))["data"]["awaitDecision"]
    assert pending == {"__typename": "AwaitDecisionSuccess", "status": "PENDING", "outcome": None,
                       "task": {"id": task_id, "status": "PENDING"}}  # fmt: skip

    async def wait() -> dict[str, Any]:
        return await gql(AWAIT, user="alice", id=task_id, timeout=30)

    waiting = asyncio.create_task(wait())
    await asyncio.sleep(0.2)  # the wait has begun (were it not, it would find the decision at once: also right)
    decided = await decide(gql, taskId=task_id, decision="EDITED", arguments={"orderId": "A-17", "amount": 80},
                           feedback="half now")  # fmt: skip
    assert decided["__typename"] == "TaskSuccess", decided
    outcome = decided["task"]["output"]
    assert outcome["decision"] == "edited" and outcome["arguments"] == {"orderId": "A-17", "amount": 80}
    assert outcome["feedback"] == "half now" and outcome["decidedBy"] == "bob" and outcome["decidedAt"]

    awaited = (await asyncio.wait_for(waiting, 15))["data"]["awaitDecision"]
    assert awaited["status"] == "DECIDED" and awaited["outcome"] == outcome
    again = (await gql(AWAIT, user="alice", id=task_id, timeout=0))["data"]["awaitDecision"]
    assert again["status"] == "DECIDED" and again["outcome"] == outcome  # decided while away: still there
    assert (await decide(gql, taskId=task_id, decision="APPROVED"))["code"] == "CONFLICT"


async def test_invalid_edits_name_their_fields_and_write_nothing(gql: GraphQL, app_engine: Engine) -> None:
    task_id = (await ask(gql))["task"]["id"]
    before = await counts(app_engine)
    refused = await decide(gql, taskId=task_id, decision="EDITED", arguments={"amount": 900, "note": "x"})
    assert refused["__typename"] == "ValidationFailed"
    assert {(e["field"], e["code"]) for e in refused["fieldErrors"]} == {
        ("arguments.amount", "SCHEMA_MAXIMUM"), ("arguments.orderId", "SCHEMA_REQUIRED"),
        ("arguments", "SCHEMA_ADDITIONALPROPERTIES"),
    }  # fmt: skip
    missing = await decide(gql, taskId=task_id, decision="EDITED")
    assert missing["fieldErrors"] == [{"field": "arguments", "code": "REQUIRED"}]
    stray = await decide(gql, taskId=task_id, decision="APPROVED", arguments={"orderId": "A-1", "amount": 1})
    assert stray["fieldErrors"] == [{"field": "arguments", "code": "NOT_ALLOWED"}]
    answer = await decide(gql, taskId=task_id, decision="RESPONDED")
    assert answer["fieldErrors"] == [{"field": "feedback", "code": "REQUIRED"}]
    assert await counts(app_engine) == before


async def test_a_bad_request_is_refused_with_its_fields_and_starts_nothing(gql: GraphQL, app_engine: Engine) -> None:
    await ask(gql)  # the built-in definition is deployed by the first request
    before = await counts(app_engine)
    result = await ask(gql, arguments={"orderId": 5, "amount": 120}, assignTo={"role": "approver", "user": "bob"},
                       dueIn="soon")  # fmt: skip
    assert result["__typename"] == "ValidationFailed"
    assert {e["field"] for e in result["fieldErrors"]} == {"arguments.orderId", "assignTo", "dueIn"}
    broken = await ask(gql, argumentsSchema={"type": "nonsense"})
    assert broken["fieldErrors"][0]["code"] == "INVALID_SCHEMA"
    assert await counts(app_engine) == before


async def test_reject_and_respond_carry_no_arguments(gql: GraphQL) -> None:
    rejected = await decide(gql, taskId=(await ask(gql))["task"]["id"], decision="REJECTED", feedback="no")
    output = rejected["task"]["output"]
    assert output["decision"] == "rejected" and output["arguments"] is None and output["feedback"] == "no"
    answered = await decide(gql, taskId=(await ask(gql))["task"]["id"], decision="RESPONDED",
                            feedback="ask the customer first")  # fmt: skip
    output = answered["task"]["output"]
    assert output["decision"] == "responded" and output["arguments"] is None


async def test_the_same_key_after_a_crash_returns_the_same_task_and_decision(gql: GraphQL, app_engine: Engine) -> None:
    first = (await ask(gql, key="agent-run-7"))["task"]
    # The caller "crashes": it keeps nothing but its key, and asks again.
    assert (await ask(gql, key="agent-run-7"))["task"]["id"] == first["id"]
    await decide(gql, taskId=first["id"], decision="APPROVED")
    assert (await ask(gql, key="agent-run-7"))["task"]["id"] == first["id"]
    awaited = (await gql(AWAIT, user="alice", id=first["id"], timeout=0))["data"]["awaitDecision"]
    assert awaited["outcome"]["decision"] == "approved"
    assert awaited["outcome"]["arguments"] == {"orderId": "A-17", "amount": 120}
    async with app_engine.db.read() as session:
        count = await session.scalar(select(func.count()).select_from(tasks).where(tasks.c.type == "ACTION_APPROVAL"))
    assert count == 1
    assert (await ask(gql, key="agent-run-8"))["task"]["id"] != first["id"]


async def test_a_subscription_receives_the_decision_exactly_once_also_after_reconnecting(
    gql: GraphQL, app: Starlette, settings: Settings
) -> None:
    task_id = (await ask(gql))["task"]["id"]
    token = issue_token(settings, "alice")
    async with serving(app) as url:
        async with Feed(url, token, TRANSPORT_WS, EVENTS, {"filter": {"taskId": task_id}}) as feed:
            await asyncio.sleep(0.2)  # subscribed before the decision: a live delivery
            await decide(gql, taskId=task_id, decision="EDITED", arguments={"orderId": "A-17", "amount": 99})
            events = await until_completed(feed)
        completed = [e for e in events if e["kind"] == "COMPLETED"]
        assert len(completed) == 1 and completed[0]["task"]["output"]["arguments"] == {"orderId": "A-17", "amount": 99}
        # Disconnected when the next decision comes: subscribing again after the last cursor seen gets it.
        second_id = (await ask(gql))["task"]["id"]
        await decide(gql, taskId=second_id, decision="APPROVED")
        resumed = {"filter": {"taskId": second_id}, "after": events[-1]["cursor"]}
        async with Feed(url, token, TRANSPORT_WS, EVENTS, resumed) as feed:
            replayed = await until_completed(feed)
        assert [e["kind"] for e in replayed].count("COMPLETED") == 1
        assert replayed[-1]["task"]["output"]["decision"] == "approved"


async def test_the_built_in_definition_is_not_for_starting_by_hand(gql: GraphQL) -> None:
    await ask(gql)  # deployed by the first request
    start = """mutation { startWorkflow(input: {definitionKey: "stepwise.actionApproval", input: {}}) {
      __typename ... on Error { code } } }"""
    assert (await gql(start, user="alice"))["data"]["startWorkflow"]["code"] == "FORBIDDEN"


async def test_a_wait_longer_than_a_minute_is_refused(gql: GraphQL) -> None:
    task_id = (await ask(gql))["task"]["id"]
    too_long = (await gql(AWAIT, user="alice", id=task_id, timeout=61))["data"]["awaitDecision"]
    assert too_long == {"__typename": "ValidationFailed", "code": "VALIDATION_FAILED"}
    hidden = (await gql(AWAIT, user="erin", id=task_id, timeout=0))["data"]["awaitDecision"]
    assert hidden == {"__typename": "NotFound", "code": "NOT_FOUND"}
