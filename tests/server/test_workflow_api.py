"""Issue 2's GraphQL surface through the real HTTP app: me, startWorkflow, task, workflowInstance,
workflowDefinitions, sendSignal, deployWorkflowDefinition — with their permission checks."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest

from server.auth import issue_token
from server.settings import Settings
from tests.server.conftest import GraphQL

START = """
mutation($key: String!, $input: JSON) {
  startWorkflow(input: {definitionKey: $key, input: $input}) {
    __typename
    ... on StartWorkflowSuccess { workflowInstance { id status definitionVersion startedBy { id }
                                   tasks { id title status assignedRole priority } } }
    ... on Error { code message }
  }
}"""
TASK = """query($id: ID!) { task(id: $id) { id title kind type status displayStatus nodeId assignee { id }
  form { fields { key type required } } step { key title milestoneKey metrics { total active completed blocked } }
  workflowInstance { id definitionKey } viewerCanClaim viewerCanComplete viewerCanAssign viewerCanRetry } }"""


async def start_expense(gql: GraphQL, user: str = "alice") -> dict[str, Any]:
    body = await gql(START, user=user, key="expense_approval", input={"entityName": "Team lunch"})
    result = body["data"]["startWorkflow"]
    assert result["__typename"] == "StartWorkflowSuccess", result
    instance: dict[str, Any] = result["workflowInstance"]
    return instance


async def test_me_and_anonymous_requests(gql: GraphQL) -> None:
    assert (await gql("{ me { id name email roles groups } }", user="erin"))["data"]["me"] == {
        "id": "erin", "name": "Erin Evans", "email": "erin@example.com", "roles": [], "groups": ["finance"],
    }  # fmt: skip
    anonymous = await gql("{ me { id } }")
    assert anonymous["data"] is None
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert (await gql("{ __typename }"))["data"] == {"__typename": "Query"}


async def test_expired_and_forged_tokens_are_authentication_errors(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    expired = issue_token(settings, "alice", ttl=timedelta(seconds=-5))
    forged = jwt.encode(
        {"sub": "dana", "exp": 4102444800}, "a-different-secret-key-also-32-bytes-long", algorithm="HS256"
    )
    for token, words in ((expired, "expired"), (forged, "invalid"), ("x.y", "invalid")):
        response = await client.post("/graphql", json={"query": "{ me { id } }"},
                                     headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "UNAUTHENTICATED" and words in error["message"]
    response = await client.post("/graphql", json={"query": "{ me { id } }"}, headers={"Authorization": "Basic x"})
    assert "Bearer" in response.json()["errors"][0]["message"]


async def test_start_expense_approval_creates_the_form_task(gql: GraphQL) -> None:
    instance = await start_expense(gql)
    assert instance["status"] == "WAITING_FOR_SIGNAL" and instance["startedBy"] == {"id": "alice"}
    [summary] = instance["tasks"]
    assert summary == {"id": summary["id"], "title": "Submit expense for Team lunch", "status": "PENDING",
                       "assignedRole": "requester", "priority": "NORMAL"}  # fmt: skip

    task = (await gql(TASK, user="alice", id=summary["id"]))["data"]["task"]
    assert task["kind"] == "USER" and task["type"] == "FORM" and task["displayStatus"] == "TO_DO"
    assert [f["key"] for f in task["form"]["fields"]] == ["amount", "description", "spentOn", "category", "tags",
                                                         "urgent"]  # fmt: skip
    assert task["step"] == {"key": "request", "title": "Request", "milestoneKey": "submission",
                            "metrics": {"total": 1, "active": 0, "completed": 0, "blocked": 0}}  # fmt: skip
    assert task["viewerCanComplete"] and task["viewerCanClaim"]
    assert not task["viewerCanAssign"] and not task["viewerCanRetry"]


async def test_strangers_cannot_see_tasks_or_instances(gql: GraphQL) -> None:
    instance = await start_expense(gql)
    task_id = instance["tasks"][0]["id"]
    for stranger in ("bob", "erin"):
        assert (await gql(TASK, user=stranger, id=task_id))["data"]["task"] is None
        found = await gql("query($id: ID!) { workflowInstance(id: $id) { id } }", user=stranger, id=instance["id"])
        assert found["data"]["workflowInstance"] is None
    for supervisor in ("carol", "dana"):
        assert (await gql(TASK, user=supervisor, id=task_id))["data"]["task"]["id"] == task_id


async def test_send_signal_is_admin_only_and_moves_the_workflow(gql: GraphQL) -> None:
    instance = await start_expense(gql)
    signal = """mutation($id: ID!, $node: String!, $payload: JSON) {
      sendSignal(input: {workflowInstanceId: $id, nodeId: $node, payload: $payload}) {
        __typename ... on WorkflowSuccess { workflowInstance { data tasks { nodeId status } } }
        ... on Error { code message } } }"""
    refused = (await gql(signal, user="alice", id=instance["id"], node="expense_form", payload={}))["data"]
    assert refused["sendSignal"]["__typename"] == "Forbidden"
    hidden = (await gql(signal, user="erin", id=instance["id"], node="expense_form", payload={}))["data"]
    assert hidden["sendSignal"]["__typename"] == "NotFound"

    payload = {"amount": 12.5, "description": "Lunch", "spentOn": "2026-11-20"}
    done = (await gql(signal, user="dana", id=instance["id"], node="expense_form", payload=payload))["data"]
    ok = done["sendSignal"]["workflowInstance"]
    assert ok["data"]["expense"] == payload
    assert ok["tasks"] == [
        {"nodeId": "expense_form", "status": "COMPLETED"},
        {"nodeId": "receipt", "status": "PENDING"},
    ]

    again = (await gql(signal, user="dana", id=instance["id"], node="expense_form", payload={}))["data"]
    assert again["sendSignal"]["__typename"] == "Conflict"
    unknown = (await gql(signal, user="dana", id=instance["id"], node="nope", payload={}))["data"]
    assert unknown["sendSignal"]["__typename"] == "NotFound"


DEPLOY = """mutation($definition: JSON!) { deployWorkflowDefinition(input: {definition: $definition}) {
  __typename ... on DeploySuccess { created definition { key version title } }
  ... on ValidationFailed { message fieldErrors { field message code } } ... on Error { code } } }"""


async def test_deploy_is_admin_only_and_validates(gql: GraphQL) -> None:
    document = {"key": "tiny", "start": "a", "nodes": [{"id": "a", "type": "userTask", "assignToRole": "x"}]}
    assert (await gql(DEPLOY, user="alice", definition=document))["data"]["deployWorkflowDefinition"] == {
        "__typename": "Forbidden", "code": "FORBIDDEN"}  # fmt: skip
    first = (await gql(DEPLOY, user="dana", definition=document))["data"]["deployWorkflowDefinition"]
    assert first == {"__typename": "DeploySuccess", "created": True,
                     "definition": {"key": "tiny", "version": 1, "title": "tiny"}}  # fmt: skip
    changed = {**document, "title": "Tiny"}
    second = (await gql(DEPLOY, user="dana", definition=changed))["data"]["deployWorkflowDefinition"]
    assert second["definition"]["version"] == 2

    broken = {**document, "nodes": [{"id": "a", "type": "userTusk"}]}
    failed = (await gql(DEPLOY, user="dana", definition=broken))["data"]["deployWorkflowDefinition"]
    assert failed["__typename"] == "ValidationFailed"
    assert failed["fieldErrors"][0]["field"] == "nodes.a.type" and "'a'" in failed["fieldErrors"][0]["message"]
    not_object = (await gql(DEPLOY, user="dana", definition=[1, 2]))["data"]["deployWorkflowDefinition"]
    assert not_object["__typename"] == "ValidationFailed"

    listed = (await gql("{ workflowDefinitions { key version } }", user="alice"))["data"]["workflowDefinitions"]
    assert {"key": "tiny", "version": 2} in listed and {"key": "expense_approval", "version": 1} in listed


@pytest.mark.parametrize("bad_input", ["text", [1], 3])
async def test_start_with_bad_input_or_unknown_definition(gql: GraphQL, bad_input: object) -> None:
    body = await gql(START, user="alice", key="expense_approval", input=bad_input)
    assert body["data"]["startWorkflow"]["__typename"] == "ValidationFailed"
    missing = await gql(START, user="alice", key="nope", input={})
    assert missing["data"]["startWorkflow"] == {"__typename": "NotFound", "code": "NOT_FOUND",
                                                "message": "no workflow definition 'nope'"}  # fmt: skip


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_a_number_json_does_not_have_is_refused_and_nothing_starts(
    client: httpx.AsyncClient, settings: Settings, gql: GraphQL, constant: str
) -> None:
    """Python's JSON parser takes NaN and Infinity; JSON has neither, PostgreSQL refuses them in
    ``jsonb``, and a client could not read them back."""
    token = issue_token(settings, "alice", timedelta(minutes=5))
    body = (
        '{"query": ' + json.dumps(START) + ', "variables": {"key": "expense_approval", '
        '"input": {"entityName": "Team lunch", "amount": ' + constant + "}}}"
    )
    response = await client.post(
        "/graphql", content=body, headers={"authorization": f"Bearer {token}", "content-type": "application/json"}
    )
    assert response.status_code == 400 and "JSON" in response.text
    listed = await gql("{ tasks(filter: {}) { totalCount } }", user="alice")
    assert listed["data"]["tasks"]["totalCount"] == 0


@pytest.mark.parametrize(
    ("query", "variables", "words"),
    [
        ("query($f: Int) { tasks(first: $f) { totalCount } }", {"f": "x"}, "$f"),
        ("query($s: [TaskStatus!]) { tasks(filter: {status: $s}) { totalCount } }", {"s": ["NOPE"]}, "NOPE"),
        ("query($d: DateTime) { tasks(filter: {dueBefore: $d}) { totalCount } }", {"d": "soon"}, "$d"),
        (START, {"key": 5}, "$key"),
    ],
)
async def test_wrongly_typed_variables_are_explained_not_masked(
    gql: GraphQL, query: str, variables: dict[str, Any], words: str
) -> None:
    body = await gql(query, user="alice", **variables)
    [error] = body["errors"]
    assert words in error["message"] and "Unexpected error" not in error["message"]


async def test_viewer_can_start_follows_the_start_roles(gql: GraphQL) -> None:
    document = {"key": "requests_only", "startRoles": ["requester"], "start": "a",
                "nodes": [{"id": "a", "type": "userTask", "assignToRole": "requester"}]}  # fmt: skip
    assert (await gql(DEPLOY, user="dana", definition=document))["data"]["deployWorkflowDefinition"]["created"]
    listing = "{ workflowDefinitions { key viewerCanStart } }"
    for user, may in (("alice", True), ("bob", False), ("dana", True)):
        listed = (await gql(listing, user=user))["data"]["workflowDefinitions"]
        assert {"key": "requests_only", "viewerCanStart": may} in listed, user
        assert {"key": "expense_approval", "viewerCanStart": True} in listed  # it names no startRoles
    refused = await gql(START, user="bob", key="requests_only", input={})
    assert refused["data"]["startWorkflow"]["__typename"] == "Forbidden"  # what the flag foretold
