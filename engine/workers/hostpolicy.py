"""Which addresses HTTP and GraphQL tasks may reach, checked where each connection is made.

Every connection those tasks open goes through :class:`CheckedNetworkBackend`: it resolves the host once,
checks every address it got, and connects to a checked address itself. Nothing resolves the name a second
time, so a DNS server that answers differently the next time (DNS rebinding) cannot swap the address after
the check; TLS still sends the host name (SNI) and verifies the certificate against it, and the request
still carries its ``Host`` header, since only the TCP connect is pinned.

What is refused, in this order:

1. cloud metadata endpoints (:data:`METADATA_ADDRESSES`, :data:`METADATA_NAMES`), always: nothing re-opens them;
2. what :attr:`HostPolicy.deny` lists;
3. unless :attr:`HostPolicy.allow` lists it, every address that is not public: what :mod:`ipaddress` does not
   call globally reachable (loopback, ``0.0.0.0/8``, RFC 1918, ``100.64.0.0/10``, link-local, ``fc00::/7``,
   documentation and benchmark ranges, …), multicast, and IPv6 forms that carry an IPv4 address to somewhere
   else (:data:`EMBEDDING_NETWORKS`: IPv4-mapped and -compatible, NAT64, 6to4), which Python 3.11 calls global.

Entries of both lists are CIDRs or addresses (``10.1.0.0/16``, ``10.1.2.3``, ``::1``) or host names
(``api.internal``, and ``*.internal`` or ``.internal`` for a domain and everything under it), each optionally
with a port (``127.0.0.1:8000``, ``[::1]:8000``, ``api.internal:443``), which then only that port matches. A
name matches the host as written in the URL; an address or network, the addresses the host resolves to. A
host whose answers include one refused address is refused whole.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import ipaddress
import socket
import zlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpcore
import httpx

from engine.errors import ExecutionFailedError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# AWS, GCP, Azure, Oracle, OpenStack (169.254.169.254); Alibaba (100.100.100.200); Azure's wire server, a
# public address (168.63.129.16); AWS over IPv6 (fd00:ec2::254).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "100.100.100.200", "168.63.129.16", "fd00:ec2::254")
)
METADATA_NAMES = ("metadata.google.internal", "metadata.goog", "metadata")
EMBEDDING_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("::/96", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16")
)


@dataclass(frozen=True)
class HostPolicy:
    """Which hosts HTTP and GraphQL tasks may call beyond the public internet (``allow``), and which public
    ones they may not (``deny``); the module docstring says how entries read and which check wins."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Rule:
    network: IPNetwork | None
    name: str | None
    port: int | None

    def matches(self, host: str, address: IPAddress | None, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.name is not None:
            return _name_matches(self.name, host)
        network = self.network
        return (
            network is not None
            and address is not None
            and any(form.version == network.version and form in network for form in _forms(address))
        )


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is on the public internet (and not one that only looks so, see the module)."""
    if address.is_multicast or not address.is_global:
        return False
    return not (address.version == 6 and any(address in network for network in EMBEDDING_NETWORKS))


def refusal(host: str, address: IPAddress | None, port: int, policy: HostPolicy) -> str | None:
    """Why a task may not connect to ``address`` (resolved from ``host``) on ``port``, or None if it may.

    With ``address`` None only the name is checked: the deny list and metadata names, before any lookup."""
    host = _normal_name(host)
    shown = f"host {host!r}" + (f" ({address})" if address is not None and str(address) != host else "")
    if host in METADATA_NAMES or (address is not None and any(f in METADATA_ADDRESSES for f in _forms(address))):
        return f"{shown} is a cloud metadata endpoint, which tasks may never call"
    if any(rule.matches(host, address, port) for rule in _rules(policy.deny)):
        return f"{shown} is denied by the host policy"
    if address is None or is_public(address):
        return None
    if any(rule.matches(host, address, port) for rule in _rules(policy.allow)):
        return None
    return f"{shown} is not a public address, and the host policy's allow list does not name it"


async def checked_addresses(host: str, port: int, policy: HostPolicy) -> list[IPAddress]:
    """The addresses ``host`` resolves to, once, if the policy admits every one of them; else
    :class:`ExecutionFailedError`: non-retryable for a refusal (the policy will say the same next time),
    retryable for a name that does not resolve (DNS failures often pass)."""
    reason = refusal(host, None, port, policy)
    if reason is not None:
        raise ExecutionFailedError(reason, non_retryable=True)
    addresses = await _resolve(_normal_name(host), port)
    for address in addresses:
        reason = refusal(host, address, port, policy)
        if reason is not None:
            raise ExecutionFailedError(reason, non_retryable=True)
    return addresses


class CheckedNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the host policy in front of every TCP connect (and no Unix sockets)."""

    def __init__(self, policy: HostPolicy, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.policy = policy
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        failure: httpcore.ConnectError | None = None
        for address in await checked_addresses(host, port, self.policy):
            try:
                return await self._inner.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:  # the next address may answer (IPv6 first, then IPv4, …)
                failure = exc
        raise failure or httpcore.ConnectError(f"{host!r} resolved to no address")

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise ExecutionFailedError("tasks may not connect to Unix sockets", non_retryable=True)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def _resolve(host: str, port: int) -> list[IPAddress]:
    literal = _parse_address(host)
    if literal is not None:
        return [literal]  # an IP literal: nothing to look up
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ExecutionFailedError(f"could not resolve host {host!r}: {exc}") from exc
    addresses = [_parse_address(str(info[4][0])) for info in infos]
    return list(dict.fromkeys(address for address in addresses if address is not None))


def _normal_name(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def _parse_address(text: str) -> IPAddress | None:
    try:
        # A link-local IPv6 answer may carry a zone (``fe80::1%eth0``); the zone does not change the network.
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def _forms(address: IPAddress) -> Iterable[IPAddress]:
    """The address, and the IPv4 address inside an IPv4-mapped IPv6 one (``::ffff:169.254.169.254``)."""
    yield address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        yield address.ipv4_mapped


def _name_matches(pattern: str, host: str) -> bool:
    if pattern.startswith(("*.", ".")):
        domain = pattern.lstrip("*").lstrip(".")
        return host == domain or host.endswith("." + domain)
    return host == pattern


def _rule(entry: str) -> _Rule:
    """One allow or deny entry: ``network``, ``address``, ``name``, each optionally ``:port`` (``[v6]:port``)."""
    text, port = entry.strip(), None
    if text.startswith("[") and "]:" in text:
        text, _, digits = text[1:].partition("]:")
        port = int(digits)
    elif text.count(":") == 1:  # IPv6 has more than one colon, and without brackets takes no port
        text, _, digits = text.partition(":")
        port = int(digits)
    try:
        return _Rule(ipaddress.ip_network(text.strip("[]"), strict=False), None, port)
    except ValueError:
        return _Rule(None, _normal_name(text), port)


@lru_cache(maxsize=32)
def _rules(entries: tuple[str, ...]) -> tuple[_Rule, ...]:
    return tuple(_rule(entry) for entry in entries if entry.strip())


def check_entries(entries: Iterable[str]) -> list[str]:
    """The entries that do not read as a host, network or either with a port (for settings to refuse)."""
    bad = []
    for entry in entries:
        try:
            _rule(entry)
        except ValueError:
            bad.append(entry)
    return bad


class _CappedBody(httpx.AsyncByteStream):
    """A response body that ends the call once it passes ``limit`` bytes, decoded: a body is never held
    whole before it is known to fit, and a small compressed body cannot expand past the limit either."""

    def __init__(self, inner: httpx.AsyncByteStream, limit: int, encoding: str) -> None:
        self._inner, self._limit = inner, limit
        # gzip or zlib, told apart by their headers (wbits | 32), as servers mean either by "deflate".
        self._decoder = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32) if encoding in _DECODED else None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        total = 0
        async for chunk in self._inner:
            if self._decoder is not None:
                try:
                    chunk = self._decoder.decompress(chunk, self._limit - total + 1)
                except zlib.error as exc:
                    raise ExecutionFailedError(f"the response body does not decompress: {exc}") from exc
                over = bool(self._decoder.unconsumed_tail)
            else:
                over = False
            total += len(chunk)
            if over or total > self._limit:
                raise body_too_large(self._limit)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def body_too_large(limit: int) -> ExecutionFailedError:
    return ExecutionFailedError(f"the response body is larger than the limit of {limit} bytes", non_retryable=True)


_DECODED = frozenset({"gzip", "x-gzip", "deflate"})


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, connecting through :class:`CheckedNetworkBackend` and capping response bodies.

    httpx does not take a network backend, so the connection pool it built is replaced by one that has
    ours (tests/workers/test_hostpolicy.py fails if a new httpx stops using it). Requests ask for an
    uncompressed body; a gzip or deflate one is decoded here, within the cap, and any other refused.
    """

    def __init__(self, policy: HostPolicy, max_body_bytes: int) -> None:
        super().__init__()
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(), network_backend=CheckedNetworkBackend(policy),
            max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0,
        )  # fmt: skip
        self.max_body_bytes = max_body_bytes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["Accept-Encoding"] = "identity"
        response = await super().handle_async_request(request)
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        declared = response.headers.get("content-length", "")
        problem: ExecutionFailedError | None = None
        if encoding not in _DECODED | {"identity", ""}:
            problem = ExecutionFailedError(f"the response is encoded as {encoding!r}, which tasks do not decode",
                                           non_retryable=True)  # fmt: skip
        elif (request.method != "HEAD" and encoding in ("identity", "") and declared.isdigit()
              and int(declared) > self.max_body_bytes):  # fmt: skip
            problem = body_too_large(self.max_body_bytes)
        if problem is not None:
            await response.aclose()
            raise problem
        assert isinstance(response.stream, httpx.AsyncByteStream)
        decoded = encoding not in ("identity", "")  # then the length and the encoding are no longer the body's
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if not decoded or k.lower() not in ("content-encoding", "content-length")]  # fmt: skip
        return httpx.Response(
            response.status_code, headers=headers, extensions=response.extensions,
            stream=_CappedBody(response.stream, self.max_body_bytes, encoding),
        )  # fmt: skip


def task_http_client(policy: HostPolicy, max_body_bytes: int) -> httpx.AsyncClient:
    """The client HTTP and GraphQL tasks call through: the host policy on every connection, bodies capped,
    no redirects, nothing from the server's environment (proxies, ``.netrc``) and no cookies kept from one
    task's call for the next (another workflow's)."""
    no_cookies = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return httpx.AsyncClient(transport=GuardedTransport(policy, max_body_bytes), trust_env=False,
                             follow_redirects=False, cookies=no_cookies)  # fmt: skip
