"""The webhook dispatcher's own HTTP/1.1 client: keep-alive POSTs, status code only, host policy on each connect.

A delivery needs little of an HTTP client: one POST of a body it has, the answer's status, and the
connection kept for the next one. httpx gives all of that through layers made for much more (a request
and a response model, a connection pool that polls every connection's socket at each request, locks
that ask which event loop runs), which cost the dispatcher most of its time per event. This client is
asyncio's streams and httptools' parser (uvicorn's, a dependency already): the dispatcher's CPU per
delivery 2.72 → 0.42 ms against httpx with its connections kept alive, side by side at load 13–16
(bench.webhook_delivery; docs/adr/0010-webhook-client.md).

What it keeps from the httpx client the dispatcher used (:func:`engine.workers.hostpolicy.task_http_client`):

* every connection goes to an address :func:`~engine.workers.hostpolicy.checked_addresses` admitted, the
  host resolved once (TLS still verifies the certificate against the host name);
* no redirect is followed (a 3xx is the receiver's answer), no proxy or ``.netrc`` from the environment,
  no cookies;
* the answer's body is read to keep the connection, never kept, and one larger than
  :data:`DRAINED_ANSWER_BYTES` ends its connection instead; asked uncompressed, it is not decoded.

Failures are httpx's exception classes (``ConnectError``, ``ReadTimeout``, ``RemoteProtocolError``), so the
delivery log reads the same whichever client sent. A connection that was kept and turns out closed by the
receiver before it answered anything is replaced once by a new one (the receiver closed it as it idled).

Off (``STEPWISE_FAST_WEBHOOK_CLIENT=false``), the dispatcher sends through the httpx client instead.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from functools import lru_cache

import httptools
import httpx

from engine.workers.hostpolicy import HostPolicy, checked_addresses

DRAINED_ANSWER_BYTES = 64 << 10
IDLE_EXPIRY_SECONDS = 4.0
"""Under the 5 s that uvicorn (and Node's http server) keep an idle connection, so a kept one is rarely stale."""
READ_CHUNK = 64 << 10


@dataclass(frozen=True)
class Target:
    """Where a URL's POST goes: the origin connected to and the request line's and ``Host`` header's text."""

    scheme: str
    host: str
    port: int
    request_target: str
    host_header: str

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port


@lru_cache(maxsize=256)
def target_of(url: str) -> Target:
    """``url`` parsed and percent-encoded as httpx would send it (the URL was checked when it was registered)."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise httpx.UnsupportedProtocol(f"a webhook URL is http or https with a host, not {url!r}")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    host = parsed.raw_host.decode("ascii")
    shown = f"[{host}]" if ":" in host else host
    return Target(parsed.scheme, host, port, parsed.raw_path.decode("ascii"),
                  shown if parsed.port is None else f"{shown}:{port}")  # fmt: skip


class _Answer:
    """httptools' callbacks for one answer: its status once its head is in, and whether it ended."""

    __slots__ = ("parser", "status", "body_bytes", "complete", "keep_alive")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.body_bytes = 0
        self.complete = False
        self.keep_alive = False

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)

    def on_message_complete(self) -> None:
        if self.status >= 200:  # an interim 1xx answer is followed by the real one
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()  # asked later, the parser has moved on


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def close(self) -> None:
        self.writer.close()

    def usable(self, now: float) -> bool:
        return (now - self.idle_since < IDLE_EXPIRY_SECONDS and not self.reader.at_eof()
                and not self.writer.is_closing())  # fmt: skip


class WebhookConnections:
    """Keep-alive connections to webhook receivers, at most ``kept_alive`` idle ones per origin."""

    def __init__(self, policy: HostPolicy, kept_alive: int) -> None:
        self.policy = policy
        self.kept_alive = kept_alive
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._tls: ssl.SSLContext | None = None

    async def post(self, url: str, body: bytes, headers: list[tuple[str, str]], timeout: float) -> int:
        """POST ``body`` with ``headers`` to ``url``; the answer's status code. Raises httpx's
        ``TransportError`` kinds, or :class:`~engine.errors.ExecutionFailedError` for an address the host
        policy refuses."""
        target = target_of(url)
        lines = [f"POST {target.request_target} HTTP/1.1", f"Host: {target.host_header}",
                 f"Content-Length: {len(body)}", "Accept-Encoding: identity"]  # fmt: skip
        lines += [f"{name}: {value}" for name, value in headers]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        try:
            async with asyncio.timeout(timeout):
                connection = self._kept(target)
                if connection is not None:
                    try:
                        return await self._exchange(target, connection, request)
                    except _ClosedUnanswered:
                        pass  # the receiver closed it while it idled: once more, on a new connection
                try:
                    return await self._exchange(target, await self._connect(target), request)
                except _ClosedUnanswered as exc:
                    raise httpx.RemoteProtocolError("the receiver closed the connection without answering") from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"no answer within {timeout:g} s") from exc

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    def _kept(self, target: Target) -> _Connection | None:
        kept = self._idle.get(target.origin)
        now = time.monotonic()
        while kept:
            connection = kept.pop()
            if connection.usable(now):
                return connection
            connection.close()
        return None

    async def _connect(self, target: Target) -> _Connection:
        tls = self._tls_context() if target.scheme == "https" else None
        failure: OSError | None = None
        for address in await checked_addresses(target.host, target.port, self.policy):
            try:
                reader, writer = await asyncio.open_connection(
                    str(address), target.port, ssl=tls, server_hostname=target.host if tls else None,
                    limit=READ_CHUNK,
                )  # fmt: skip
                return _Connection(reader, writer)
            except OSError as exc:  # the next address may answer (IPv6 first, then IPv4, …); ssl errors are OSErrors
                failure = exc
        raise httpx.ConnectError(str(failure) if failure else f"{target.host!r} resolved to no address")

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = httpx.create_ssl_context()  # the httpx client's trust store, so both clients agree
        return self._tls

    async def _exchange(self, target: Target, connection: _Connection, request: bytes) -> int:
        answer = _Answer()
        keep = False
        try:
            connection.writer.write(request)
            await connection.writer.drain()
            while not answer.complete:
                data = await connection.reader.read(READ_CHUNK)
                if not data:
                    if answer.status:  # a body that ends with the connection: the answer is in
                        return answer.status
                    raise _ClosedUnanswered
                answer.parser.feed_data(data)
                if answer.body_bytes > DRAINED_ANSWER_BYTES:
                    return answer.status  # too long to read through: the connection goes instead
            keep = answer.keep_alive
            return answer.status
        except httptools.HttpParserError as exc:
            raise httpx.RemoteProtocolError(f"the receiver's answer is not HTTP/1.1: {exc}") from exc
        except OSError as exc:  # ssl.SSLError is one too
            if not answer.status and isinstance(exc, ConnectionResetError | BrokenPipeError):
                raise _ClosedUnanswered from exc
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
        finally:
            if keep:
                self._keep(target, connection)
            else:
                connection.close()

    def _keep(self, target: Target, connection: _Connection) -> None:
        kept = self._idle.setdefault(target.origin, [])
        if len(kept) >= self.kept_alive:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        kept.append(connection)


class _ClosedUnanswered(Exception):
    """The receiver closed the connection before any answer came."""
