"""A long poll inside the request timeout: ``awaitDecision`` with a wait longer than what the request
timeout leaves answers PENDING in time, instead of being cut off as a 503 ``TIMEOUT``."""

from __future__ import annotations

from dataclasses import replace

import pytest

from server.settings import Settings
from tests.server.conftest import GraphQL
from tests.server.test_action_approvals import AWAIT, ask


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, request_timeout_seconds=2.0)


async def test_a_wait_longer_than_the_request_timeout_answers_pending(gql: GraphQL) -> None:
    task_id = (await ask(gql))["task"]["id"]
    body = await gql(AWAIT, user="bob", id=task_id, timeout=10)
    assert body.get("errors") is None, body
    assert body["data"]["awaitDecision"]["status"] == "PENDING"
