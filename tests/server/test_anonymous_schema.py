"""What an anonymous caller may learn about the schema.

Before, anyone could introspect the whole schema and read "Did you mean …?" suggestions, which spell
out the names introspection would, one guess at a time. Now only a signed-in caller (GraphiQL with a
token in its Headers tab) or development (``STEPWISE_DEV``, ``STEPWISE_ANONYMOUS_INTROSPECTION``) does;
``__typename`` stays open to all. ``STEPWISE_GRAPHIQL=false`` removes the GraphiQL page.
"""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from engine.clock import ManualClock
from server.app import create_app
from server.auth import issue_token
from server.settings import Settings

INTROSPECT = {"query": "{ __schema { queryType { name } } }"}
TYPO = {"query": "{ me { nmae } }"}
HTML = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


async def post(client: httpx.AsyncClient, body: dict[str, str], token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await client.post("/graphql", json=body, headers=headers)


async def test_only_a_signed_in_caller_introspects_or_gets_suggestions(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    anonymous = (await post(client, INTROSPECT)).json()
    assert "data" not in anonymous and "introspection" in anonymous["errors"][0]["message"]
    assert (await post(client, {"query": "{ __typename }"})).json() == {"data": {"__typename": "Query"}}
    typo = (await post(client, TYPO)).json()["errors"][0]["message"]
    assert "nmae" in typo and "Did you mean" not in typo

    token = issue_token(settings, "alice")
    assert (await post(client, INTROSPECT, token)).json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}
    assert "Did you mean 'name'?" in (await post(client, TYPO, token)).json()["errors"][0]["message"]


@pytest.mark.parametrize("opened", ["dev", "anonymous_introspection"])
async def test_development_or_the_setting_open_it_to_anyone(
    settings: Settings, clock: ManualClock, opened: str
) -> None:
    opened_settings = (
        replace(settings, dev=True) if opened == "dev" else replace(settings, anonymous_introspection=True)
    )
    app = create_app(opened_settings, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://stepwise.test") as client:
            assert (await post(client, INTROSPECT)).json()["data"] == {"__schema": {"queryType": {"name": "Query"}}}
            assert "Did you mean" in (await post(client, TYPO)).json()["errors"][0]["message"]


async def test_graphiql_can_be_turned_off(client: httpx.AsyncClient, settings: Settings, clock: ManualClock) -> None:
    assert (await client.get("/graphql", headers=HTML)).status_code == 200
    app = create_app(replace(settings, graphiql=False), clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://stepwise.test") as off:
            assert (await off.get("/graphql", headers=HTML)).status_code == 404
