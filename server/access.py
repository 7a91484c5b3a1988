"""The outermost middleware: every request gets an id, a server span, an access log line and its metrics.

The id is the client's ``X-Request-ID`` when it sent a plausible one (so a proxy's id carries
through), else a new one, and is sent back in the response's ``X-Request-ID``. The access line
names the path without its query string (a GET's query string is a GraphQL document). Probes and
scrapes (``/healthz``, ``/readyz``, ``/metrics``) log at DEBUG, so they do not drown the rest.
"""

from __future__ import annotations

import logging
import re
import secrets
import time

from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Tracer
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.logs import RequestInfo, begin_request, end_request, request_scope
from server.metrics import Metrics

log = logging.getLogger("stepwise.access")
_REQUEST_ID = re.compile(r"[\w.:-]{1,64}")
_QUIET = frozenset({"/healthz", "/readyz", "/metrics"})
_ROUTES = frozenset({"graphql", "healthz", "readyz", "metrics", "documents", "dev", "graphiql"})


def route_label(path: str, status: int) -> str:
    """A bounded label for a path: its first segment when that is one of ours, else ``unmatched``."""
    first = path.strip("/").split("/", 1)[0]
    return f"/{first}" if first in _ROUTES and status != 404 else "unmatched"


class ObservedRequests:
    def __init__(self, app: ASGIApp, metrics: Metrics | None = None, tracer: Tracer | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        sent_id = headers.get("x-request-id", "")
        info = RequestInfo(request_id=sent_id if _REQUEST_ID.fullmatch(sent_id) else secrets.token_hex(16))
        if scope["type"] == "websocket":  # a connection, not a request: its id reaches its log lines only
            with request_scope(info):
                await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        status = 500

        async def answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", info.request_id)
            await send(message)

        began = time.perf_counter()
        token = begin_request(info)
        try:
            if self.tracer is None:
                try:
                    await self.app(scope, receive, answer)
                finally:
                    self._answered(method, path, status, time.perf_counter() - began)
                return
            with self.tracer.start_as_current_span(
                f"{method} {path}", kind=SpanKind.SERVER, context=propagate.extract(dict(headers.items())),
                attributes={"http.request.method": method, "url.path": path},
            ) as current:  # fmt: skip
                try:
                    await self.app(scope, receive, answer)
                finally:
                    seconds = time.perf_counter() - began
                    current.set_attribute("http.response.status_code", status)
                    if info.operation:
                        current.set_attribute("graphql.operation.name", info.operation)
                    self._answered(method, path, status, seconds)
        finally:
            end_request(token)

    def _answered(self, method: str, path: str, status: int, seconds: float) -> None:
        """The request's metrics and access line (in its span, when there is one, and its log scope)."""
        if self.metrics is not None:
            self.metrics.request_answered(method, route_label(path, status), status, seconds)
        level = logging.DEBUG if path in _QUIET else logging.INFO
        if log.isEnabledFor(level):  # its fields are built only for a line that is written
            log.log(
                level, "%s %s %s %.1f ms", method, path, status, seconds * 1000,
                extra={"method": method, "path": path, "status": status, "duration_ms": round(seconds * 1000, 2)},
            )  # fmt: skip
