"""Start-up, health and readiness: the server refuses an unmigrated database unless told to migrate."""

from __future__ import annotations

import gc
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from server.app import NotMigratedError, create_app
from server.settings import Settings


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"


async def test_unmigrated_database_is_refused_with_the_command_to_run(tmp_path: Path) -> None:
    settings = replace(Settings(), database_url=f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    app = create_app(settings)
    with pytest.raises(NotMigratedError, match="stepwise db upgrade"):
        async with app.router.lifespan_context(app):
            pass


async def test_auto_migrate_brings_an_empty_database_to_head(tmp_path: Path) -> None:
    settings = replace(Settings(), database_url=f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}", auto_migrate=True)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            assert (await http.get("/readyz")).json()["status"] == "ok"


async def test_a_served_app_moves_its_start_up_objects_out_of_the_collectors_way(settings: Settings) -> None:
    """``stepwise serve`` freezes what start-up made, so full collections stop walking it, and collects
    young objects less often; apps made for tests do not (a test process starts hundreds)."""
    gc.unfreeze()
    thresholds = gc.get_threshold()
    try:
        plain = create_app(settings)
        async with plain.router.lifespan_context(plain):
            assert gc.get_freeze_count() == 0
        served = create_app(settings, freeze_startup_objects=True)
        async with served.router.lifespan_context(served):
            assert gc.get_freeze_count() > 10_000
            assert gc.get_threshold()[0] > thresholds[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
