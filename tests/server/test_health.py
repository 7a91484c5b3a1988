"""``/healthz`` says the process lives; ``/readyz`` whether to send it work (database, migrations,
the event listener, shutdown)."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette

from engine.storage.migrations import head_revision


async def test_a_ready_process_names_what_it_checked(app: Starlette, client: httpx.AsyncClient) -> None:
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ok" and body["database"] == "ok" and body["migration"] == body["head"] == head_revision()
    if app.state.engine.db.dialect == "postgresql":
        assert body["eventListener"] == "up"
    else:
        assert "eventListener" not in body  # SQLite has no listener to be down


async def test_a_process_shutting_down_is_alive_but_not_ready(app: Starlette, client: httpx.AsyncClient) -> None:
    app.state.shutdown.begun.set()
    assert (await client.get("/healthz")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable" and ready.json()["problems"] == ["shutting down"]


@pytest.mark.postgres_only
async def test_a_listener_that_is_down_makes_a_postgresql_process_unready(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    app.state.events.listener.listening = False
    ready = await client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["problems"] == ["event listener"]
    assert ready.json()["eventListener"] == "down"
