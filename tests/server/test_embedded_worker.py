"""The server's embedded worker runs system tasks as soon as a commit queues them, and retryTask
re-runs a failed one through GraphQL (admin only)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from engine.clock import ManualClock
from server.app import create_app
from server.auth import issue_token
from server.demo import load_demo
from server.settings import Settings

FLOW = {
    "key": "flaky_call", "start": "call",
    "nodes": [
        {"id": "call", "type": "http", "storeAs": "called", "retry": {"maxAttempts": 1},
         "config": {"method": "GET", "url": "{{ settings.target }}", "timeoutMs": 2000}},
        {"id": "done", "type": "userTask", "title": "Called: {{ called.status }}", "assignToRole": "approver"},
    ],
    "edges": [{"from": "call", "to": "done"}],
}  # fmt: skip
RETRY = """mutation($id: ID!) { retryTask(input: {taskId: $id}) { __typename ... on Error { code } } }"""
STATE = """query($id: ID!) { workflowInstance(id: $id) { status tasks { id nodeId status
  attempts { number error response } } } }"""


@pytest.fixture
async def live_app(settings: Settings, clock: ManualClock) -> AsyncIterator[tuple[Starlette, dict[str, str]]]:
    template = {"target": "http://127.0.0.1:9/unreachable"}
    # The unreachable target is on loopback, re-opened as a deployment would: the call fails to connect.
    settings = replace(settings, embedded_worker=True, template_settings=template, http_allow=("127.0.0.1:9",))
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        await load_demo(app.state.engine)
        yield app, template


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting for the worker"
        await asyncio.sleep(0.05)


async def test_embedded_worker_and_retry_task(live_app: tuple[Starlette, dict[str, str]], settings: Settings) -> None:
    app, template = live_app
    engine = app.state.engine
    await engine.deploy(FLOW)
    instance = await engine.start("flaky_call", {}, "alice")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:

        async def gql(query: str, user: str, **variables: object) -> dict[str, Any]:
            headers = {"Authorization": f"Bearer {issue_token(settings, user)}"}
            response = await http.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
            data: dict[str, Any] = response.json()["data"]
            return data

        async def state() -> dict[str, Any]:
            instance_state: dict[str, Any] = (await gql(STATE, "dana", id=instance.id))["workflowInstance"]
            return instance_state

        async def failed() -> bool:
            return bool((await state())["status"] == "FAILED")

        await wait_for(failed)
        [call] = (await state())["tasks"]
        assert call["status"] == "FAILED" and call["attempts"][0]["error"]

        template["target"] = "http://127.0.0.1:9/still-unreachable"
        assert (await gql(RETRY, "carol", id=call["id"]))["retryTask"] == {
            "__typename": "Forbidden",
            "code": "FORBIDDEN",
        }
        assert (await gql(RETRY, "bob", id=call["id"]))["retryTask"]["__typename"] == "NotFound"
        assert (await gql(RETRY, "dana", id=call["id"]))["retryTask"]["__typename"] == "TaskSuccess"

        async def failed_twice() -> bool:
            current = await state()
            return current["status"] == "FAILED" and len(current["tasks"][0]["attempts"]) == 2

        await wait_for(failed_twice)
        again = (await gql(RETRY, "dana", id=call["id"]))["retryTask"]
        assert again["__typename"] == "TaskSuccess"
        not_failed = (await gql(RETRY, "dana", id=call["id"]))["retryTask"]
        assert not_failed["__typename"] in ("InvalidState", "TaskSuccess")
