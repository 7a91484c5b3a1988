"""Webhook deliveries over aiohttp's client: keep-alive POSTs, the status code only, host policy on each connect.

A delivery needs little of an HTTP client: one POST of a body it has, the answer's status, and the
connection kept for the next one. httpx gives all of that through layers made for much more (a request
and a response model, a connection pool that polls every connection's socket and walks every waiting
request at each request), which cost the dispatcher most of its time per event: side by side on loopback
with 20 POSTs in flight, 2.3–2.5 ms of the client's CPU per POST through httpx against 0.10–0.17 ms through
aiohttp (load 20; docs/adr/0010-webhook-client.md). aiohttp's pool and parser (C) are built for many
concurrent requests to few hosts, which is what a dispatcher sends.

What it keeps from the httpx client the dispatcher used (:func:`engine.workers.hostpolicy.task_http_client`):

* every connection goes to an address the host policy admits: a host name through :class:`_PolicyResolver`,
  resolved at each connect (no DNS cache, so a name cannot be re-pointed after its check), an IP literal
  (which aiohttp connects to without a resolver) checked before the request;
* no redirect is followed (a 3xx is the receiver's answer), no proxy or ``.netrc`` from the environment,
  no cookies kept;
* the answer's body is read to keep the connection, never kept, and one larger than
  :data:`DRAINED_ANSWER_BYTES` ends its connection instead; asked uncompressed, it is not decoded.

Failures are httpx's exception classes (``ConnectError``, ``ReadTimeout``, ``RemoteProtocolError``,
``ReadError``), so the delivery log reads the same whichever client sent. A connection closed before any
answer came (a kept one the receiver closed as it idled) is tried once more, on another connection.

Off (``STEPWISE_FAST_WEBHOOK_CLIENT=false``), the dispatcher sends through the httpx client instead.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from functools import lru_cache

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

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
    literal: bool
    """The host is an IP address, which aiohttp connects to without asking the resolver."""

    @property
    def url(self) -> URL:
        return URL(f"{self.scheme}://{self.host_header}{self.request_target}", encoded=True)


@lru_cache(maxsize=256)
def target_of(url: str) -> Target:
    """``url`` parsed and percent-encoded as httpx would send it (the URL was checked when it was registered)."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise httpx.UnsupportedProtocol(f"a webhook URL is http or https with a host, not {url!r}")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    host = parsed.raw_host.decode("ascii")
    shown = f"[{host}]" if ":" in host else host
    literal = ":" in host or host.replace(".", "").isdigit()
    return Target(parsed.scheme, host, port, parsed.raw_path.decode("ascii"),
                  shown if parsed.port is None else f"{shown}:{port}", literal)  # fmt: skip


class _PolicyResolver(AbstractResolver):
    """Host names resolved only to addresses the policy admits (a refusal raises ExecutionFailedError)."""

    def __init__(self, policy: HostPolicy) -> None:
        self.policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                proto=0,
                flags=socket.AI_NUMERICHOST,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
            )  # fmt: skip
            for address in await checked_addresses(host, port, self.policy)
        ]

    async def close(self) -> None:
        return None


class WebhookConnections:
    """Keep-alive connections to webhook receivers, at most ``kept_alive`` at once (the dispatcher's
    concurrency), through one aiohttp session made on first use (a session belongs to its event loop)."""

    def __init__(self, policy: HostPolicy, kept_alive: int) -> None:
        self.policy = policy
        self.kept_alive = kept_alive
        self._session: aiohttp.ClientSession | None = None
        self._admitted: set[tuple[str, int]] = set()

    async def post(self, url: str, body: bytes, headers: list[tuple[str, str]], timeout: float) -> int:
        """POST ``body`` with ``headers`` to ``url``; the answer's status code. Raises httpx's
        ``TransportError`` kinds, or :class:`~engine.errors.ExecutionFailedError` for an address the host
        policy refuses."""
        target = target_of(url)
        if target.literal and (target.host, target.port) not in self._admitted:
            await checked_addresses(target.host, target.port, self.policy)  # raises if refused
            self._admitted.add((target.host, target.port))
        sent = [*headers, ("Accept-Encoding", "identity")]
        try:
            async with asyncio.timeout(timeout):
                try:
                    return await self._exchange(target, body, sent)
                except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                    pass  # closed before any answer, as a kept connection the receiver closed: once more
                try:
                    return await self._exchange(target, body, sent)
                except aiohttp.ServerDisconnectedError as exc:
                    raise httpx.RemoteProtocolError("the receiver closed the connection without answering") from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"no answer within {timeout:g} s") from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc.os_error) or str(exc)) from exc
        except (aiohttp.ClientResponseError, aiohttp.ClientPayloadError) as exc:
            raise httpx.RemoteProtocolError(f"the receiver's answer is not HTTP/1.1: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _exchange(self, target: Target, body: bytes, headers: list[tuple[str, str]]) -> int:
        async with self._session_of_loop().post(target.url, data=body, headers=headers,
                                                allow_redirects=False) as answer:  # fmt: skip
            drained = 0
            while chunk := await answer.content.read(READ_CHUNK):
                drained += len(chunk)
                if drained > DRAINED_ANSWER_BYTES:
                    answer.close()  # too long to read through: the connection goes instead
                    break
            return answer.status

    def _session_of_loop(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=_PolicyResolver(self.policy), use_dns_cache=False, limit=self.kept_alive,
                keepalive_timeout=IDLE_EXPIRY_SECONDS, ssl=httpx.create_ssl_context(),
            )  # fmt: skip
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
                trust_env=False, skip_auto_headers=("User-Agent",),
            )  # fmt: skip
        return self._session
