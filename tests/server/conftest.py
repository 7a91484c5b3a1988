"""The real Starlette app over httpx's ASGI transport, on the test's own database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from starlette.applications import Starlette

from engine.clock import ManualClock
from engine.transitions.engine import Engine
from server.app import create_app
from server.auth import issue_token
from server.demo import load_demo
from server.settings import Settings

if TYPE_CHECKING:
    from tests.server.inbox_world import World

GraphQL = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return replace(
        Settings(),
        database_url=database_url,
        files_dir=tmp_path / "files",
        secret_key="test-secret-key-of-at-least-thirty-two-bytes",
        embedded_worker=False,  # tests drive workers themselves; see test_embedded_worker
    )


@pytest.fixture
async def app(settings: Settings, clock: ManualClock) -> AsyncIterator[Starlette]:
    application = create_app(settings, clock=clock)
    async with application.router.lifespan_context(application):
        await load_demo(application.state.engine)
        yield application


@pytest.fixture
def app_engine(app: Starlette) -> Engine:
    engine: Engine = app.state.engine
    return engine


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stepwise.test") as http:
        yield http


@pytest.fixture
def gql(client: httpx.AsyncClient, settings: Settings) -> GraphQL:
    """``await gql(query, user="alice", **variables)``: the JSON body of a POST to /graphql."""

    async def execute(query: str, user: str | None = None, **variables: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {issue_token(settings, user)}"} if user else {}
        response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    return execute


@pytest.fixture
async def world(gql: GraphQL, app_engine: Engine, clock: ManualClock) -> World:
    """The inbox tests' world (tests/server/inbox_world.py): its table of tasks, made through the API."""
    from tests.server.inbox_world import build_world  # imported here: inbox_world imports GraphQL from this module

    return await build_world(gql, app_engine, clock)
