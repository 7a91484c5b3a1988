"""`stepwise serve` hands its settings to uvicorn: the deadlines a served process keeps and how long the
supervisor of `--workers` processes waits for a busy one's health ping before replacing it."""

from __future__ import annotations

from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner

from server import cli


def served_with(monkeypatch: pytest.MonkeyPatch, *args: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(options, app=app))
    result = CliRunner().invoke(cli.main, ["serve", *args])
    assert result.exit_code == 0, result.output
    return seen


def test_the_workers_health_ping_waits_longer_than_uvicorns_five_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    options = served_with(monkeypatch, "--workers", "2")
    assert options["workers"] == 2 and options["timeout_worker_healthcheck"] == 30


def test_the_health_ping_wait_and_keep_alive_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPWISE_WORKER_HEALTHCHECK_SECONDS", "12.5")
    monkeypatch.setenv("STEPWISE_KEEPALIVE_SECONDS", "7")
    options = served_with(monkeypatch)
    assert options["timeout_worker_healthcheck"] == 13 and options["timeout_keep_alive"] == 7
    assert options["app"] == "server.app:create_app_from_env" and options["factory"] is True
