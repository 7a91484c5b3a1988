"""Real servers and WebSocket clients for the real-time tests.

- :func:`serving`: uvicorn in this event loop, on a free loopback port, around an app whose lifespan
  the test already runs.
- :class:`Feed`: a gql ``WebsocketsTransport`` subscription (either protocol) collected in the
  background, read with a deadline.
- :class:`AsgiSocket`: a graphql-transport-ws client that talks to the ASGI app directly and can
  ``pause()`` — the server's sends block, exactly like a client that stopped reading.
- :func:`wait_until`: bounded polling, the only way these tests wait for a state.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport
from starlette.types import ASGIApp, Message

from tests.support import free_port

TIMEOUT = 10.0
# A served process imports and builds the whole app before /healthz answers: over 30 s at a load of 15 on
# two cores, which failed tests that had nothing wrong.
START_TIMEOUT = 60.0
TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
EVENT_FIELDS = "cursor kind actor { id } occurredAt task { id nodeId status assignee { id } }"


async def wait_until(condition: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``condition`` (which may read the database: awaited when it returns an awaitable) every
    few milliseconds until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout

    async def holds() -> bool:
        found = condition()
        return await found if inspect.isawaitable(found) else bool(found)

    while not await holds():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)


@asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """uvicorn serving ``app`` on 127.0.0.1 (lifespan off: the test runs it); yields the ws:// URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started or task.done(), "uvicorn to start")
    assert server.started, task.exception()
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}/graphql"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, TIMEOUT)


class Feed:
    """One subscription over a real WebSocket (gql's client), its results queued as they arrive.

    Each item is ``{"data": …}`` or ``{"errors": […]}``; ``{"ended": True}`` once the server
    completed the subscription.
    """

    def __init__(self, url: str, token: str, protocol: str, query: str, variables: Mapping[str, Any]) -> None:
        self.transport = WebsocketsTransport(
            url=url, init_payload={"authorization": f"Bearer {token}"}, subprotocols=[protocol]
        )
        self.query, self.variables = query, dict(variables)
        self.items: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Feed:
        session = await self._stack.enter_async_context(Client(transport=self.transport))
        results = session.subscribe(GraphQLRequest(self.query, variable_values=self.variables))

        async def collect() -> None:
            try:
                async for data in results:
                    self.items.put_nowait({"data": data})
            except TransportQueryError as exc:
                self.items.put_nowait({"errors": exc.errors})
            finally:
                await results.aclose()
            self.items.put_nowait({"ended": True})

        task = asyncio.create_task(collect())
        self._stack.push_async_callback(_cancel, task)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def next(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        return await asyncio.wait_for(self.items.get(), timeout)

    async def events(self, count: int, field: str = "taskEvents") -> list[dict[str, Any]]:
        """The next ``count`` results, each the subscription field's value."""
        found = []
        for _ in range(count):
            item = await self.next()
            assert "data" in item, item
            found.append(item["data"][field])
        return found


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


class AsgiSocket:
    """A WebSocket client driving the ASGI app in-process; ``pause()`` blocks its receiving."""

    def __init__(self, app: ASGIApp, token: str, protocol: str = TRANSPORT_WS) -> None:
        self.app, self.token, self.protocol = app, token, protocol
        self._to_server: asyncio.Queue[Message] = asyncio.Queue()
        self.received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reading = asyncio.Event()
        self._reading.set()
        self.blocked_sends = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AsgiSocket:
        scope = {
            "type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws", "http_version": "1.1",
            "path": "/graphql", "raw_path": b"/graphql", "root_path": "", "query_string": b"",
            "headers": [(b"host", b"stepwise.test"), (b"sec-websocket-protocol", self.protocol.encode())],
            "subprotocols": [self.protocol], "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
        }  # fmt: skip
        self._to_server.put_nowait({"type": "websocket.connect"})
        self._task = asyncio.ensure_future(self.app(scope, self._to_server.get, self._from_server))
        await self.send({"type": "connection_init", "payload": {"authorization": f"Bearer {self.token}"}})
        assert (await self.next())["type"] == "connection_ack"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._reading.set()
        self._to_server.put_nowait({"type": "websocket.disconnect", "code": 1000})
        assert self._task is not None
        await asyncio.wait_for(self._task, TIMEOUT)

    async def _from_server(self, message: Message) -> None:
        if not self._reading.is_set():
            self.blocked_sends += 1
            await self._reading.wait()
        if message["type"] == "websocket.send":
            self.received.put_nowait(json.loads(message["text"]))
        elif message["type"] == "websocket.close":
            self.received.put_nowait({"type": "closed", "code": message.get("code")})

    def pause(self) -> None:
        """Stop reading: the server's next send blocks until :meth:`resume`."""
        self._reading.clear()

    def resume(self) -> None:
        self._reading.set()

    async def send(self, payload: dict[str, Any]) -> None:
        self._to_server.put_nowait({"type": "websocket.receive", "text": json.dumps(payload)})

    async def subscribe(self, operation_id: str, query: str, **variables: Any) -> None:
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        await self.send({"id": operation_id, "type": kind, "payload": {"query": query, "variables": variables}})

    async def next(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        return await asyncio.wait_for(self.received.get(), timeout)


@asynccontextmanager
async def server_processes(count: int, env: Mapping[str, str], logs: Path) -> AsyncIterator[list[str]]:
    """``count`` × ``stepwise serve --port N`` as child processes, started and stopped side by side;
    yields their http:// URLs once every one answers ``/healthz``."""
    stepwise = Path(sys.executable).parent / "stepwise"
    ports = [free_port() for _ in range(count)]
    processes = []
    for port in ports:
        with (logs / f"serve-{port}.log").open("wb") as output:
            processes.append(
                subprocess.Popen(
                    [str(stepwise), "serve", "--port", str(port)],
                    env={**os.environ, **env},
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            )
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        await asyncio.gather(*(_healthy(url, process, logs / f"serve-{port}.log")
                               for url, process, port in zip(urls, processes, ports, strict=True)))  # fmt: skip
        yield urls
    finally:
        for process in processes:
            process.send_signal(signal.SIGINT)
        for process in processes:
            try:
                await asyncio.wait_for(asyncio.to_thread(process.wait), TIMEOUT)
            except TimeoutError:
                process.kill()
                process.wait()


async def _healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with httpx.AsyncClient(base_url=url) as http:
        while True:
            assert process.poll() is None, f"the server at {url} exited: {log.read_text()}"
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"the server at {url} did not start: {log.read_text()}"
            await asyncio.sleep(0.05)
