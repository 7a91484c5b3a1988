"""Real servers for the executors to call: one uvicorn target (Starlette routes plus a Strawberry GraphQL
app) and one aiosmtpd SMTP server, both on 127.0.0.1 and started once for the directory."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import strawberry
from aiosmtpd.controller import Controller
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.asgi import GraphQL

from engine.clock import ManualClock
from engine.workers.executor import SystemTaskContext
from tests.support import free_port
from tests.workers.support import LOOPBACK_ALLOWED, Mailbox, ServerThread, _Inbox


@dataclass
class Target:
    """The HTTP/GraphQL target server and what it saw."""

    url: str
    seen: list[dict[str, Any]] = field(default_factory=list)

    def last(self, path: str) -> dict[str, Any]:
        return [request for request in self.seen if request["path"] == path][-1]


def _target_app(target: Target) -> Starlette:
    async def record(request: Request) -> dict[str, Any]:
        body = await request.body()
        seen = {"path": request.url.path, "method": request.method, "headers": dict(request.headers),
                "query": dict(request.query_params), "body": body.decode()}  # fmt: skip
        target.seen.append(seen)
        return seen

    async def echo(request: Request) -> Response:
        seen = await record(request)
        received = json.loads(seen["body"]) if seen["body"] else None
        return JSONResponse({"method": seen["method"], "query": seen["query"], "json": received,
                             "idempotencyKey": request.headers.get("idempotency-key")})  # fmt: skip

    async def text(request: Request) -> Response:
        await record(request)
        return PlainTextResponse("plain words")

    async def status(request: Request) -> Response:
        await record(request)
        return Response("boom", status_code=int(request.path_params["code"]))

    async def slow(request: Request) -> Response:
        await record(request)
        await asyncio.sleep(float(request.query_params.get("seconds", "1")))
        return JSONResponse({"late": True})

    async def big(request: Request) -> Response:
        """``bytes`` bytes, with a Content-Length, chunked (no length) or gzip-compressed whatever was asked."""
        await record(request)
        size, how = int(request.query_params["bytes"]), request.query_params.get("as", "length")
        if how == "gzip":
            return Response(gzip.compress(b"a" * size), headers={"Content-Encoding": "gzip"})

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, size, 4096):
                yield b"a" * min(4096, size - start)

        if how == "chunked":
            return StreamingResponse(chunks(), media_type="text/plain")
        return Response(b"a" * size, media_type="text/plain")

    async def reflect(request: Request) -> Response:
        """Every request header back, in the body and as response headers (what a careless target does)."""
        await record(request)
        headers = {f"X-Seen-{name}": value for name, value in request.headers.items() if name.startswith("x-")}
        return JSONResponse(dict(request.headers), headers=headers)

    async def cookie(request: Request) -> Response:
        await record(request)
        response = PlainTextResponse("have one")
        response.set_cookie("session", "from-an-earlier-call")
        return response

    async def redirect(request: Request) -> Response:
        await record(request)
        return RedirectResponse("/echo", status_code=302)

    routes = [
        Route("/echo", echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/text", text),
        Route("/status/{code:int}", status, methods=["GET", "POST"]),
        Route("/slow", slow, methods=["GET", "POST"]),
        Route("/redirect", redirect),
        Route("/big", big),
        Route("/cookie", cookie),
        Route("/reflect", reflect, methods=["GET", "POST"]),
        Route("/graphql", _Recorded(GraphQL(_schema()), target)),
    ]
    return Starlette(routes=routes)


class _Recorded:
    """An ASGI app that notes each request's path and headers, then hands it to ``app``."""

    def __init__(self, app: ASGIApp, target: Target) -> None:
        self.app, self.target = app, target

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        self.target.seen.append({"path": scope["path"], "method": scope["method"], "headers": headers})
        await self.app(scope, receive, send)


def _schema() -> strawberry.Schema:
    @strawberry.type
    class Query:
        @strawberry.field
        def greet(self, name: str) -> str:
            return f"Hello, {name}!"

        @strawberry.field
        def header(self, info: strawberry.Info, name: str) -> str | None:
            value: str | None = info.context["request"].headers.get(name)
            return value

        @strawberry.field
        def broken(self) -> str:
            raise ValueError("the resolver broke")

    class QuietSchema(strawberry.Schema):
        def process_errors(self, errors: Any, execution_context: Any = None) -> None:
            pass  # the errors are the point of the test; no tracebacks in the log

    return QuietSchema(query=Query)


@pytest.fixture(scope="session")
def target() -> Iterator[Target]:
    target = Target(url="")
    server = ServerThread(_target_app(target))
    server.start()
    target.url = server.url
    try:
        yield target
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mailbox() -> Iterator[Mailbox]:
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield Mailbox(url=f"smtp://127.0.0.1:{port}", inbox=inbox)
    finally:
        controller.stop()


@pytest.fixture
async def context(clock: ManualClock) -> AsyncIterator[SystemTaskContext]:
    context = SystemTaskContext(clock=clock, host_policy=LOOPBACK_ALLOWED)
    try:
        yield context
    finally:
        await context.aclose()
