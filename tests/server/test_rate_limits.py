"""Fairness: per-user operation slots, token buckets on mutations and subscription starts, WebSocket limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from engine.clock import ManualClock
from server.app import create_app
from server.auth import issue_token
from server.demo import load_demo
from server.graphql_app import StepwiseGraphQL
from server.rate_limits import RATE_LIMITED, ConnectionLimits, OperationSlots, TokenBuckets
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


async def test_operation_slots_are_per_user_and_freed_when_the_operation_ends() -> None:
    slots = OperationSlots(per_user=2, wait_seconds=0)
    assert await slots.enter("alice") and await slots.enter("alice")
    assert not await slots.enter("alice")  # a third at once: refused, not queued
    assert await slots.enter("bob")  # bob's slots are his own
    slots.leave("alice")
    assert slots.held("alice") == 1 and await slots.enter("alice")
    for user in ("alice", "alice", "bob"):
        slots.leave(user)
    assert slots.held("alice") == slots.held("bob") == 0


def graphql_endpoint(app: Starlette) -> StepwiseGraphQL:
    [endpoint] = [r.endpoint for r in app.routes if isinstance(r, Route) and r.path == "/graphql"]
    assert isinstance(endpoint, StepwiseGraphQL)
    return endpoint


class HeldBody:
    """A multipart body whose bytes arrive only when :meth:`release` is called: its request stays in flight."""

    def __init__(self) -> None:
        self.released = asyncio.Event()

    def release(self) -> None:
        self.released.set()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"--x\r\n"
        await self.released.wait()
        yield b'Content-Disposition: form-data; name="operations"\r\n\r\n{"query": "{ me { id } }"}\r\n--x--\r\n'


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0)


@pytest.mark.parametrize("wait_seconds", [0.0, 600.0])
async def test_a_user_over_their_operations_at_once_waits_or_gets_429_and_others_are_served(
    settings: Settings, clock: ManualClock, wait_seconds: float
) -> None:
    app = create_app(replace(settings, operations_per_user=1, operation_wait_seconds=wait_seconds), clock=clock)
    slots = graphql_endpoint(app).slots
    async with app.router.lifespan_context(app):
        await load_demo(app.state.engine)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            pool = app.state.engine.db.engine.sync_engine.pool
            idle = pool.checkedout()  # the event hub's listener, say
            held = HeldBody()
            headers = {"authorization": f"Bearer {issue_token(settings, 'alice')}",
                       "content-type": "multipart/form-data; boundary=x"}  # fmt: skip
            upload = asyncio.create_task(http.post("/graphql", content=held, headers=headers))
            await until(lambda: slots.held("user:alice") == 1)
            second = asyncio.create_task(post(http, settings, "alice", "{ me { id } }"))
            bob = await post(http, settings, "bob", "{ me { id } }")
            assert bob.status_code == 200 and bob.json()["data"]["me"]["id"] == "bob"
            if wait_seconds == 0:
                refused = await second
                assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
                assert refused.json()["errors"][0]["extensions"]["code"] == RATE_LIMITED
                held.release()
                await upload
            else:  # it waits for alice's slot, and has it when her upload ends
                await until(lambda: slots.waiting("user:alice") == 1)
                assert not second.done()
                assert pool.checkedout() == idle  # neither the upload's body nor a request in line holds one
                held.release()
                await upload
                answered = await second
                assert answered.status_code == 200 and answered.json()["data"]["me"]["id"] == "alice"
            assert (await post(http, settings, "alice", "{ me { id } }")).status_code == 200
            assert slots.held("user:alice") == 0


async def test_a_query_bucket_when_one_is_configured(settings: Settings, clock: ManualClock) -> None:
    app = create_app(replace(settings, queries_per_minute=6, query_burst=1), clock=clock)
    async with app.router.lifespan_context(app):
        await load_demo(app.state.engine)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            assert (await post(http, settings, "alice", "{ me { id } }")).status_code == 200
            refused = await post(http, settings, "alice", "{ me { id } }")
            assert refused.status_code == 429 and refused.headers["retry-after"] == "10"
            assert (await post(http, settings, "bob", "{ me { id } }")).status_code == 200
    assert Settings().queries_per_minute == 0  # off by default: the operation slots bound queries


async def test_a_slot_given_up_after_its_wait_is_not_held() -> None:
    slots = OperationSlots(per_user=1, wait_seconds=0.01)
    assert await slots.enter("alice")
    assert not await slots.enter("alice")  # nobody left in the meantime
    assert slots.waiting("alice") == 0 and not slots.try_enter("alice")
    slots.leave("alice")
    assert slots.held("alice") == 0 and slots.try_enter("alice")


async def test_operations_over_a_websocket_take_the_same_slots(settings: Settings, clock: ManualClock) -> None:
    app = create_app(replace(settings, operations_per_user=1), clock=clock)
    slots = graphql_endpoint(app).slots
    async with app.router.lifespan_context(app):
        await load_demo(app.state.engine)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            held = HeldBody()
            headers = {"authorization": f"Bearer {issue_token(settings, 'alice')}",
                       "content-type": "multipart/form-data; boundary=x"}  # fmt: skip
            upload = asyncio.create_task(http.post("/graphql", content=held, headers=headers))
            await until(lambda: slots.held("user:alice") == 1)
            async with AsgiSocket(app, issue_token(settings, "alice")) as alice:
                await alice.subscribe("1", "{ me { id } }")
                refused = await alice.next()
                errors = refused["payload"] if refused["type"] == "error" else refused["payload"]["errors"]
                assert errors[0]["extensions"] == {"code": RATE_LIMITED, "retryAfter": 1}
                held.release()
                await upload
                await alice.subscribe("2", "{ me { id } }")
                answered = await alice.next()
                assert answered["type"] == "next" and answered["payload"]["data"] == {"me": {"id": "alice"}}
            assert slots.held("user:alice") == 0
