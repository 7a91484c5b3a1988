"""Fairness: per-user token buckets on mutations and subscription starts, and WebSocket connection limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from engine.clock import ManualClock
from server.app import create_app
from server.auth import issue_token
from server.demo import load_demo
from server.rate_limits import RATE_LIMITED, ConnectionLimits, TokenBuckets
from server.settings import Settings
from tests.server.live import TIMEOUT, AsgiSocket

MUTATION = """mutation { startWorkflow(input: {definitionKey: "no_such_definition"}) { __typename } }"""
SUBSCRIPTION = "subscription { notifications { cursor } }"


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_spends_its_burst_then_refills_at_its_rate() -> None:
    time = FakeTime()
    buckets = TokenBuckets(per_minute=60, burst=3, clock=time)
    assert [buckets.take("alice") for _ in range(3)] == [None, None, None]
    assert buckets.take("alice") == pytest.approx(1.0)
    assert buckets.take("bob") is None  # one user's bucket is not another's
    time.now += 0.5
    assert buckets.take("alice") == pytest.approx(0.5)
    time.now += 0.5
    assert buckets.take("alice") is None
    time.now += 3600
    assert [buckets.take("alice") for _ in range(4)][-1] is not None  # refilled to the burst, not beyond


def test_connection_limits_count_per_user_and_in_total() -> None:
    limits = ConnectionLimits(per_user=2, total=3)
    assert limits.admit("alice") is None and limits.admit("alice") is None
    assert "per user" in (limits.admit("alice") or "")
    assert limits.admit("bob") is None
    assert "maximum of 3" in (limits.admit("carol") or "")
    limits.release("alice")
    assert limits.admit("carol") is None and limits.of("alice") == 1


@pytest.fixture
async def limited(settings: Settings, clock: ManualClock) -> AsyncIterator[Starlette]:
    app = create_app(
        replace(settings, mutations_per_minute=6, mutation_burst=2, subscription_starts_per_minute=1,
                subscription_start_burst=1, ws_connections_per_user=2, ws_connections=3),
        clock=clock,
    )  # fmt: skip
    async with app.router.lifespan_context(app):
        await load_demo(app.state.engine)
        yield app


async def post(http: httpx.AsyncClient, settings: Settings, user: str, query: str) -> httpx.Response:
    headers = {"authorization": f"Bearer {issue_token(settings, user)}"}
    return await http.post("/graphql", json={"query": query}, headers=headers)


async def test_mutations_past_the_burst_are_429_with_retry_after(limited: Starlette, settings: Settings) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=limited), base_url="http://t") as http:
        for _ in range(2):
            answered = await post(http, settings, "alice", MUTATION)
            assert answered.status_code == 200 and answered.json()["data"]["startWorkflow"]["__typename"] == "NotFound"
        refused = await post(http, settings, "alice", MUTATION)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "10"  # six a minute: one every ten seconds
        [error] = refused.json()["errors"]
        assert error["extensions"] == {"code": RATE_LIMITED, "retryAfter": 10}
        assert (await post(http, settings, "alice", "{ me { id } }")).status_code == 200  # queries are not limited
        assert (await post(http, settings, "bob", MUTATION)).status_code == 200  # nor another user's mutations
        spec = await http.post("/graphql", json={"query": MUTATION},
                               headers={"authorization": f"Bearer {issue_token(settings, 'alice')}",
                                        "accept": "application/graphql-response+json"})  # fmt: skip
        assert spec.status_code == 429 and "data" not in spec.json()


async def test_subscription_starts_past_the_burst_get_a_typed_error(limited: Starlette, settings: Settings) -> None:
    async with AsgiSocket(limited, issue_token(settings, "alice")) as socket:
        await socket.subscribe("1", SUBSCRIPTION)
        await socket.subscribe("2", SUBSCRIPTION)
        refused = await socket.next()
        assert refused["id"] == "2" and refused["type"] in ("error", "next"), refused
        payload = refused["payload"]
        errors: list[dict[str, Any]] = payload if refused["type"] == "error" else payload["errors"]
        assert errors[0]["extensions"]["code"] == RATE_LIMITED and errors[0]["extensions"]["retryAfter"] == 60


class Connecting(AsgiSocket):
    """An AsgiSocket that reports the server's first answer to ``connection_init`` instead of asserting an ack."""

    async def answer(self) -> dict[str, Any]:
        scope = {
            "type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws", "http_version": "1.1",
            "path": "/graphql", "raw_path": b"/graphql", "root_path": "", "query_string": b"",
            "headers": [(b"host", b"stepwise.test"), (b"sec-websocket-protocol", self.protocol.encode())],
            "subprotocols": [self.protocol], "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
        }  # fmt: skip
        self._to_server.put_nowait({"type": "websocket.connect"})
        self._task = asyncio.ensure_future(self.app(scope, self._to_server.get, self._from_server))
        await self.send({"type": "connection_init", "payload": {"authorization": f"Bearer {self.token}"}})
        return await self.next()

    async def close(self) -> None:
        self._to_server.put_nowait({"type": "websocket.disconnect", "code": 1000})
        assert self._task is not None
        await asyncio.wait_for(self._task, TIMEOUT)


async def test_websocket_connections_are_limited_per_user_and_per_process(
    limited: Starlette, settings: Settings
) -> None:
    opened = [Connecting(limited, issue_token(settings, user)) for user in ("alice", "alice")]
    for socket in opened:
        assert (await socket.answer())["type"] == "connection_ack"
    third = Connecting(limited, issue_token(settings, "alice"))
    assert await third.answer() == {"type": "closed", "code": 4403}
    await third.close()
    bob = Connecting(limited, issue_token(settings, "bob"))
    assert (await bob.answer())["type"] == "connection_ack"
    carol = Connecting(limited, issue_token(settings, "carol"))
    assert await carol.answer() == {"type": "closed", "code": 4403}  # the process holds its maximum of 3
    await carol.close()
    await opened.pop().close()
    again = Connecting(limited, issue_token(settings, "alice"))
    assert (await again.answer())["type"] == "connection_ack"  # a closed connection frees its place
    for socket in (*opened, bob, again):
        await socket.close()
