"""Webhooks through the GraphQL API: create (the secret shown once), list, update, rotate, read the delivery
log page by page, redeliver, delete; bad input is a typed error that stores nothing."""

from __future__ import annotations

from sqlalchemy import func, select
from starlette.applications import Starlette

from engine import DeliveryPolicy, WebhookDispatcher
from engine.storage.models import webhooks
from engine.transitions.engine import Engine
from engine.workers.hostpolicy import HostPolicy
from tests.server.conftest import GraphQL

# A public address literal: the host policy admits it without a DNS lookup. Nothing is delivered here.
URL = "https://93.184.215.14/hooks/stepwise"

CREATE = """mutation($input: CreateWebhookInput!) { createWebhook(input: $input) {
  __typename
  ... on WebhookSecretSuccess { secret webhook { id url events enabled filter { definitionKey nodeId role } } }
  ... on ValidationFailed { code fieldErrors { field code } }
  ... on Error { message } } }"""
DELIVERIES = """query($id: ID!, $first: Int!, $after: String) {
  webhookDeliveries(webhookId: $id, first: $first, after: $after) {
  __typename
  ... on WebhookDeliveryConnection { pageInfo { hasNextPage endCursor }
    edges { cursor node { id deliveryId eventKind status attemptCount lastError payload
      attempts { number statusCode error } } } }
  ... on Error { code } } }"""


async def count_webhooks(engine: Engine) -> int:
    async with engine.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(webhooks)) or 0)


async def test_a_webhook_is_created_listed_updated_rotated_and_deleted(gql: GraphQL) -> None:
    created = await gql(CREATE, user="dana", input={"url": URL, "events": ["COMPLETED"],
                                                    "filter": {"definitionKey": "expense_approval"}})  # fmt: skip
    result = created["data"]["createWebhook"]
    assert result["__typename"] == "WebhookSecretSuccess", created
    assert result["secret"].startswith("whsec_")
    webhook = result["webhook"]
    assert webhook["events"] == ["COMPLETED"] and webhook["enabled"] is True
    assert webhook["filter"] == {"definitionKey": "expense_approval", "nodeId": None, "role": None}

    listed = await gql("{ webhooks { ... on WebhookList { webhooks { id url } } } }", user="dana")
    assert listed["data"]["webhooks"]["webhooks"] == [{"id": webhook["id"], "url": URL}]

    update = """mutation($id: ID!) { updateWebhook(input: {id: $id, enabled: false, events: []}) {
      ... on WebhookSuccess { webhook { enabled events url } } } }"""
    updated = await gql(update, user="dana", id=webhook["id"])
    assert updated["data"]["updateWebhook"]["webhook"] == {"enabled": False, "events": [], "url": URL}

    rotate = """mutation($id: ID!) { rotateWebhookSecret(input: {id: $id}) {
      ... on WebhookSecretSuccess { secret webhook { previousSecretExpiresAt } } } }"""
    rotated = (await gql(rotate, user="dana", id=webhook["id"]))["data"]["rotateWebhookSecret"]
    assert rotated["secret"] != result["secret"] and rotated["webhook"]["previousSecretExpiresAt"] is not None

    delete = "mutation($id: ID!) { deleteWebhook(input: {id: $id}) { __typename } }"
    assert (await gql(delete, user="dana", id=webhook["id"]))["data"]["deleteWebhook"][
        "__typename"
    ] == "DeleteWebhookSuccess"
    assert (await gql(delete, user="dana", id=webhook["id"]))["data"]["deleteWebhook"]["__typename"] == "NotFound"


async def test_a_refused_url_is_a_validation_error_and_stores_nothing(gql: GraphQL, app_engine: Engine) -> None:
    for url, code in (("http://127.0.0.1:8000/hook", "HOST_REFUSED"), ("gopher://93.184.215.14/", "INVALID_URL"),
                      ("http://169.254.169.254/", "HOST_REFUSED")):  # fmt: skip
        body = await gql(CREATE, user="dana", input={"url": url})
        result = body["data"]["createWebhook"]
        assert result["__typename"] == "ValidationFailed", body
        assert result["fieldErrors"] == [{"field": "url", "code": code}]
    update = """mutation($id: ID!) { updateWebhook(input: {id: $id, url: "http://10.0.0.1/"}) {
      __typename ... on ValidationFailed { fieldErrors { field code } } } }"""
    webhook = (await gql(CREATE, user="dana", input={"url": URL}))["data"]["createWebhook"]["webhook"]
    refused = (await gql(update, user="dana", id=webhook["id"]))["data"]["updateWebhook"]
    assert refused == {"__typename": "ValidationFailed", "fieldErrors": [{"field": "url", "code": "HOST_REFUSED"}]}
    listed = await gql("{ webhooks { ... on WebhookList { webhooks { url } } } }", user="dana")
    assert listed["data"]["webhooks"]["webhooks"] == [{"url": URL}], "the refused update changed nothing"
    assert await count_webhooks(app_engine) == 1


async def test_the_delivery_log_pages_newest_first_and_a_delivery_can_be_sent_again(
    gql: GraphQL, app: Starlette, app_engine: Engine
) -> None:
    webhook = (await gql(CREATE, user="dana", input={"url": URL}))["data"]["createWebhook"]["webhook"]
    start = 'mutation { startWorkflow(input: {definitionKey: "expense_approval", input: {amount: 10}}) { __typename } }'
    for _ in range(3):
        assert (await gql(start, user="alice"))["data"]["startWorkflow"]["__typename"] == "StartWorkflowSuccess"
    await app_engine.sequencer.idle()
    # Nothing listens there for this test: the host policy refuses the public address only if it is told to,
    # so a dispatcher whose policy denies it fails each delivery at once, and the log shows why.
    policy = HostPolicy(deny=("93.184.215.14",))
    dispatcher = WebhookDispatcher(app_engine.db, app_engine.clock, policy, "api-test", DeliveryPolicy())
    try:
        await dispatcher.run_until_idle()
    finally:
        await dispatcher.aclose()

    first = (await gql(DELIVERIES, user="dana", id=webhook["id"], first=2))["data"]["webhookDeliveries"]
    assert first["pageInfo"]["hasNextPage"] is True
    second = await gql(DELIVERIES, user="dana", id=webhook["id"], first=2, after=first["pageInfo"]["endCursor"])
    page = second["data"]["webhookDeliveries"]
    nodes = [edge["node"] for edge in first["edges"] + page["edges"]]
    assert page["pageInfo"]["hasNextPage"] is False and len(nodes) == 3
    assert [n["eventKind"] for n in nodes] == ["CREATED"] * 3
    assert [n["deliveryId"] for n in nodes] == [n["payload"]["id"] for n in nodes]
    assert all(n["status"] == "FAILED" and "denied by the host policy" in n["lastError"] for n in nodes)
    assert all(n["attempts"] == [{"number": 1, "statusCode": None, "error": n["lastError"]}] for n in nodes)

    redeliver = """mutation($id: ID!) { redeliverWebhook(input: {deliveryId: $id}) {
      __typename ... on WebhookDeliverySuccess { delivery { status attemptCount deliveryId } } } }"""
    again = (await gql(redeliver, user="dana", id=nodes[0]["id"]))["data"]["redeliverWebhook"]
    assert again["delivery"] == {"status": "PENDING", "attemptCount": 0, "deliveryId": nodes[0]["deliveryId"]}
    missing = await gql(redeliver, user="dana", id="no-such-delivery")
    assert missing["data"]["redeliverWebhook"]["__typename"] == "NotFound"
    bad = await gql(DELIVERIES, user="dana", id=webhook["id"], first=2, after="nonsense")
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", bad  # paging, as on every connection


async def test_a_repeated_create_with_one_idempotency_key_creates_one_webhook_and_answers_the_same(
    gql: GraphQL, app_engine: Engine
) -> None:
    first = await gql(CREATE, user="dana", input={"url": URL, "idempotencyKey": "hook-1"})
    again = await gql(CREATE, user="dana", input={"url": URL, "idempotencyKey": "hook-1"})
    other = await gql(CREATE, user="dana", input={"url": URL + "/other", "idempotencyKey": "hook-1"})

    assert first["data"]["createWebhook"]["__typename"] == "WebhookSecretSuccess"
    assert again == first, "the stored answer: the same webhook and secret"
    assert other["data"]["createWebhook"]["__typename"] == "Conflict"
    assert await count_webhooks(app_engine) == 1
