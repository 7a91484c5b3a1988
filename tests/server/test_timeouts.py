"""Request and statement timeouts (fairness under load).

A request past ``STEPWISE_REQUEST_TIMEOUT_SECONDS`` is cancelled and answered ``503`` ``TIMEOUT``; on
PostgreSQL each connection carries ``statement_timeout`` (``STEPWISE_STATEMENT_TIMEOUT_SECONDS``), so
a statement past it is cancelled by the database itself — nothing keeps running there — and is an
outage to the client (``UNAVAILABLE``), not a bug.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest
from sqlalchemy import text

from engine import database_unavailable
from engine.clock import ManualClock
from engine.storage.database import Database
from server.app import create_app
from server.auth import issue_token
from server.demo import load_demo
from server.settings import Settings
from tests.server.live import TIMEOUT, serving
from tests.server.test_jwks import ME, Issuer, bearer


@pytest.mark.postgres_only
async def test_a_statement_past_its_timeout_is_cancelled_on_the_database(database_url: str) -> None:
    db = Database(database_url, statement_timeout=0.2)
    try:
        with pytest.raises(Exception) as cancelled:
            async with db.read() as session:
                await session.execute(text("SELECT pg_sleep(30)"))
        assert database_unavailable(cancelled.value), cancelled.value  # SQLSTATE 57014: query_canceled
        async with db.read() as session:
            running = await session.scalar(
                text("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'")
            )
        assert running == 0
    finally:
        await db.dispose()


async def test_a_request_past_its_timeout_is_503(settings: Settings, clock: ManualClock) -> None:
    """The slow part is a real one: a token issuer that does not answer (its own timeout is longer)."""
    issuer = Issuer()
    async with serving(issuer.app()) as issuer_url:
        jwks = issuer_url.replace("ws://", "http://").replace("/graphql", "/jwks.json")
        app = create_app(replace(settings, jwks_url=jwks, jwks_timeout_seconds=20, request_timeout_seconds=0.5),
                         clock=clock)  # fmt: skip
        async with app.router.lifespan_context(app):
            await load_demo(app.state.engine)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://stepwise.test", timeout=TIMEOUT) as http:
                response = await http.post("/graphql", json=ME, headers=bearer(issuer.token("alice")))
                assert response.status_code == 503 and response.headers["retry-after"] == "5"
                assert response.json()["errors"][0]["extensions"]["code"] == "TIMEOUT"
                issuer.release.set()
                await asyncio.sleep(0)


async def test_an_upload_arriving_slower_than_the_request_timeout_but_within_its_own_is_served(
    settings: Settings, clock: ManualClock
) -> None:
    """The request timeout counts the server's work: the body has its own deadline (server.bodies),
    and a client streaming within it is not cut off by the shorter request timeout."""
    app = create_app(replace(settings, request_timeout_seconds=1.0, body_timeout_seconds=60), clock=clock)

    async def slow_upload() -> AsyncIterator[bytes]:
        yield b'--x\r\nContent-Disposition: form-data; name="operations"\r\n\r\n{"query": "{ me { id } }"}\r\n'
        await asyncio.sleep(1.5)  # longer than the request timeout, well within the body's
        yield b'--x\r\nContent-Disposition: form-data; name="map"\r\n\r\n{}\r\n--x--\r\n'

    async with app.router.lifespan_context(app):
        await load_demo(app.state.engine)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://stepwise.test", timeout=TIMEOUT) as http:
            headers = {"authorization": f"Bearer {issue_token(settings, 'alice')}",
                       "content-type": "multipart/form-data; boundary=x"}  # fmt: skip
            response = await http.post("/graphql", content=slow_upload(), headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["me"]["id"] == "alice"
