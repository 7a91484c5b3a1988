"""The API around the tasks that the web app needs: the user directory, the live cursor and the
development sign-in (refused unless STEPWISE_DEV is on)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from engine.clock import ManualClock
from engine.transitions.engine import Engine
from server.app import create_app
from server.auth import decode_token, issue_token
from server.demo import DEMO_USERS, load_demo
from server.settings import Settings
from tests.server.conftest import GraphQL
from tests.server.live import TRANSPORT_WS, Feed, serving

DIRECTORY = sorted(user.id for user in DEMO_USERS)
SIGN_IN = """mutation($id: ID!) { devSignIn(input: {userId: $id}) {
  __typename ... on DevSignInSuccess { token user { id name roles } } ... on Error { code message } } }"""


@pytest.fixture
async def dev_client(settings: Settings, clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    application: Starlette = create_app(replace(settings, dev=True, dev_mailbox_port=0), clock=clock)
    async with application.router.lifespan_context(application):
        await load_demo(application.state.engine)
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://stepwise.test") as http:
            yield http


async def post(client: httpx.AsyncClient, query: str, token: str | None = None, **variables: object) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_dev_sign_in_issues_a_token_that_signs_in(dev_client: httpx.AsyncClient, settings: Settings) -> None:
    users = await post(dev_client, "{ devUsers { id name } }")
    assert [u["id"] for u in users["data"]["devUsers"]] == DIRECTORY
    body = await post(dev_client, SIGN_IN, id="bob")
    result = body["data"]["devSignIn"]
    assert result["__typename"] == "DevSignInSuccess"
    assert result["user"] == {"id": "bob", "name": "Bob Brown", "roles": ["approver"]}
    assert await decode_token(settings, result["token"]) == "bob"
    me = await post(dev_client, "{ me { id } }", token=result["token"])
    assert me["data"]["me"] == {"id": "bob"}


async def test_dev_sign_in_for_an_unknown_user_is_not_found(dev_client: httpx.AsyncClient) -> None:
    body = await post(dev_client, SIGN_IN, id="mallory")
    assert body["data"]["devSignIn"] == {"__typename": "NotFound", "code": "NOT_FOUND", "message": "no user mallory"}


async def test_without_dev_the_sign_in_is_refused_and_lists_nobody(client: httpx.AsyncClient) -> None:
    body = await post(client, SIGN_IN, id="dana")
    assert body["data"]["devSignIn"]["__typename"] == "Forbidden"
    assert body["data"]["devSignIn"]["code"] == "FORBIDDEN"
    assert "STEPWISE_DEV" in body["data"]["devSignIn"]["message"]
    assert (await post(client, "{ devUsers { id } }"))["data"] == {"devUsers": None}


USERS = "{ users { __typename ... on UserList { users { id roles groups } } ... on Error { code message } } }"


async def test_users_lists_the_directory_for_supervisors_only(gql: GraphQL) -> None:
    for supervisor in ("carol", "dana"):
        body = await gql(USERS, user=supervisor)
        listed = body["data"]["users"]["users"]
        assert [u["id"] for u in listed] == DIRECTORY
        assert {"id": "erin", "roles": [], "groups": ["finance"]} in listed
    refused = await gql(USERS, user="bob")  # typed, like the webhooks list: the union's Forbidden
    assert "errors" not in refused, refused
    assert refused["data"]["users"]["__typename"] == "Forbidden"
    assert refused["data"]["users"]["code"] == "FORBIDDEN"
    anonymous = await gql(USERS)
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_the_task_event_cursor_resumes_from_what_the_server_has_read(
    gql: GraphQL, app: Starlette, app_engine: Engine, settings: Settings
) -> None:
    """A page reads the cursor, then its data, then subscribes after the cursor: what committed in between
    (here: the instance started before the subscription) is replayed, not lost."""
    cursor = (await gql("{ taskEventCursor }", user="alice"))["data"]["taskEventCursor"]
    instance = await app_engine.start("expense_approval", {"entityName": "Lunch"}, "alice")
    query = "subscription($after: String) { taskEvents(after: $after) { kind task { workflowInstance { id } } } }"
    async with serving(app) as url:
        async with Feed(url, issue_token(settings, "alice"), TRANSPORT_WS, query, {"after": cursor}) as feed:
            [created] = await feed.events(1)
    assert created == {"kind": "CREATED", "task": {"workflowInstance": {"id": instance.id}}}
    assert (await gql("{ taskEventCursor }"))["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
