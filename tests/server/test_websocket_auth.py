"""WebSocket authentication against a real uvicorn server: the bearer token travels in
``connection_init``'s payload (docs/design.md §5), on both subprotocols.

The server runs ``server.app.create_app(settings)`` — lifespan and all — on its own thread and event
loop, with uvicorn's WebSocket support on; the client is the ``websockets`` library. Only the
handshake (and one operation over the socket, to show the token really identifies the user) is
tested here; subscriptions have their own tests.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import jwt
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from engine.catalog import default_registry
from engine.storage.database import Database
from engine.transitions.engine import Engine
from server.app import create_app
from server.auth import issue_token
from server.demo import load_demo
from server.settings import Settings

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
TIMEOUT = 10.0


class LiveServer:
    """uvicorn serving ``create_app(settings)`` with its lifespan, WebSockets on, on a free loopback port."""

    def __init__(self, settings: Settings) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        port = self._socket.getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/graphql"
        config = uvicorn.Config(create_app(settings), lifespan="on", ws="websockets-sansio", log_level="warning",
                                access_log=False, timeout_graceful_shutdown=2)  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + TIMEOUT
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=TIMEOUT)
        self._socket.close()
        assert not self._thread.is_alive(), "the server did not stop"


@pytest.fixture
async def demo_loaded(settings: Settings) -> None:
    """The demo users, written before the server starts (its lifespan then finds a ready database)."""
    db = Database(settings.database_url)
    try:
        await load_demo(Engine(db, default_registry()))
    finally:
        await db.dispose()


@pytest.fixture
def live(settings: Settings, demo_loaded: None) -> Iterator[LiveServer]:
    with LiveServer(settings) as server:
        yield server


@pytest.fixture
async def socket_to(live: LiveServer) -> AsyncIterator[Any]:
    """``await socket_to(protocol)``: an open WebSocket to the live server, closed after the test."""
    opened: list[ClientConnection] = []

    async def open_socket(protocol: str) -> ClientConnection:
        connection = await connect(live.url, subprotocols=[Subprotocol(protocol)], open_timeout=TIMEOUT)
        assert connection.subprotocol == protocol
        opened.append(connection)
        return connection

    yield open_socket
    for connection in opened:
        await connection.close()


async def receive(connection: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await connection.recv(decode=True))
    return message


async def closed_with(connection: ClientConnection) -> tuple[int | None, list[dict[str, Any]]]:
    """Everything the server sent until it closed the socket, and its close code."""
    messages = []
    try:
        while True:
            messages.append(await receive(connection))
    except ConnectionClosed as closed:
        return (closed.rcvd.code if closed.rcvd else None), messages


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_a_valid_token_gets_connection_ack_and_identifies_the_user(socket_to: Any, settings: Settings) -> None:
    connection = await socket_to(TRANSPORT_WS)
    await connection.send(json.dumps({"type": "connection_init", "payload": bearer(issue_token(settings, "alice"))}))
    assert await receive(connection) == {"type": "connection_ack"}
    await connection.send(json.dumps({"type": "ping"}))
    assert (await receive(connection))["type"] == "pong"
    # A single-result operation over the socket runs as the token's user.
    await connection.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "{ me { id roles } }"}}))
    me = {"me": {"id": "alice", "roles": ["requester"]}}
    assert await receive(connection) == {"id": "1", "type": "next", "payload": {"data": me}}
    assert await receive(connection) == {"id": "1", "type": "complete"}


async def test_the_header_name_may_be_capitalised(socket_to: Any, settings: Settings) -> None:
    connection = await socket_to(TRANSPORT_WS)
    payload = {"Authorization": f"Bearer {issue_token(settings, 'bob')}"}
    await connection.send(json.dumps({"type": "connection_init", "payload": payload}))
    assert await receive(connection) == {"type": "connection_ack"}


def refused_payloads(settings: Settings) -> dict[str, Any]:
    forged = jwt.encode({"sub": "dana", "exp": 4102444800}, "another-secret-key-that-is-32-bytes-long",
                        algorithm="HS256")  # fmt: skip
    return {
        "expired": bearer(issue_token(settings, "alice", ttl=timedelta(seconds=-5))),
        "forged": bearer(forged),
        "garbage": bearer("not.a.token"),
        "not bearer": {"authorization": "Basic YWxpY2U6c2VjcmV0"},
        "unknown user": bearer(issue_token(settings, "mallory")),
        "empty payload": {},
        "no payload": None,
        "not a string": {"authorization": 42},
    }


@pytest.mark.parametrize(
    "case", ["expired", "forged", "garbage", "not bearer", "unknown user", "empty payload", "no payload",
             "not a string"],
)  # fmt: skip
async def test_without_a_valid_token_the_socket_is_closed_with_4403(
    socket_to: Any, settings: Settings, case: str
) -> None:
    connection = await socket_to(TRANSPORT_WS)
    payload = refused_payloads(settings)[case]
    init: dict[str, Any] = {"type": "connection_init"} if payload is None else {"type": "connection_init",
                                                                               "payload": payload}  # fmt: skip
    await connection.send(json.dumps(init))
    code, messages = await closed_with(connection)
    assert (code, messages) == (4403, []), case


async def test_an_operation_before_connection_init_is_refused(socket_to: Any) -> None:
    connection = await socket_to(TRANSPORT_WS)
    await connection.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "{ me { id } }"}}))
    code, messages = await closed_with(connection)
    assert (code, messages) == (4401, [])


async def test_the_legacy_protocol_accepts_a_valid_token(socket_to: Any, settings: Settings) -> None:
    connection = await socket_to(LEGACY_WS)
    await connection.send(json.dumps({"type": "connection_init", "payload": bearer(issue_token(settings, "carol"))}))
    assert await receive(connection) == {"type": "connection_ack"}


async def test_the_legacy_protocol_refuses_a_bad_token(socket_to: Any, settings: Settings) -> None:
    connection = await socket_to(LEGACY_WS)
    expired = issue_token(settings, "alice", ttl=timedelta(seconds=-5))
    await connection.send(json.dumps({"type": "connection_init", "payload": bearer(expired)}))
    code, messages = await closed_with(connection)
    assert [m["type"] for m in messages] == ["connection_error"]
    assert code is not None and code != 1000, "closed as an error"
