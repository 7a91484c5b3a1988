"""Start-up, health and readiness: the server refuses an unmigrated database unless told to migrate."""

from __future__ import annotations

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
