"""Every connection takes ``first`` and ``after`` alike: ``first`` from 0 to the one page maximum, and a
bad ``first`` or ``after`` is a top-level ``BAD_USER_INPUT`` whose ``fieldErrors`` name the argument
(docs/operations.md, operation limits), whatever the connection."""

from __future__ import annotations

from typing import Any

import pytest

from engine.paging import MAX_PAGE
from engine.transitions.engine import Engine
from tests.server.conftest import GraphQL

URL = "https://93.184.215.14/hooks/stepwise"  # a public literal: admitted without a DNS lookup
CREATE = """mutation($url: String!) { createWebhook(input: {url: $url}) {
  ... on WebhookSecretSuccess { webhook { id } } } }"""
DEFINITION = {"key": "paging", "start": "decision", "nodes": [
    {"id": "decision", "type": "userTask", "schemaType": "userTask.approval", "assignToRole": "approver"}]}  # fmt: skip
CONNECTIONS = {
    "tasks": """query($id: ID!, $first: Int!, $after: String) {
      tasks(filter: {workflowInstanceId: $id}, first: $first, after: $after) { __typename } }""",
    "task history": """query($id: ID!, $first: Int!, $after: String) { task(id: $id) {
      history(first: $first, after: $after) { __typename } } }""",
    "webhookDeliveries": """query($id: ID!, $first: Int!, $after: String) {
      webhookDeliveries(webhookId: $id, first: $first, after: $after) { __typename } }""",
}


@pytest.fixture
async def ids(gql: GraphQL, app_engine: Engine) -> dict[str, str]:
    webhook = (await gql(CREATE, user="dana", url=URL))["data"]["createWebhook"]["webhook"]["id"]
    await app_engine.deploy(DEFINITION, deployed_by="dana")
    instance = await app_engine.start("paging", {}, "alice")
    [token] = instance.tokens
    assert token.task_id is not None
    return {"tasks": instance.id, "task history": token.task_id, "webhookDeliveries": webhook}


def refusal(body: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    [error] = body["errors"]
    extensions = error["extensions"]
    return extensions["code"], [(f["field"], f["code"]) for f in extensions["fieldErrors"]]


@pytest.mark.parametrize("connection", sorted(CONNECTIONS))
async def test_first_and_after_are_checked_alike_on_every_connection(
    gql: GraphQL, ids: dict[str, str], connection: str
) -> None:
    query, node = CONNECTIONS[connection], ids[connection]
    for first in (0, MAX_PAGE):
        body = await gql(query, user="dana", id=node, first=first)
        assert "errors" not in body, (first, body)
    for first in (-1, MAX_PAGE + 1):
        body = await gql(query, user="dana", id=node, first=first)
        assert refusal(body) == ("BAD_USER_INPUT", [("first", "OUT_OF_RANGE")]), (first, body)
    body = await gql(query, user="dana", id=node, first=10, after="nonsense")
    assert refusal(body) == ("BAD_USER_INPUT", [("after", "INVALID_CURSOR")]), body
