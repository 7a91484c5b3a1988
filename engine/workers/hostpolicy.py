"""Which hosts HTTP and GraphQL tasks may reach (:class:`~engine.workers.executor.HostPolicy`).

Entries are CIDRs or addresses (``169.254.0.0/16``, ``10.1.2.3``) or host names (``api.example.com``, and
``*.example.com`` or ``.example.com`` for a domain and everything under it). Names are checked as written;
addresses after resolving the host with the event loop's ``getaddrinfo``, so a DNS name that points at the
cloud metadata address is refused like the address itself. Deny wins; a non-empty allow list admits a host
that matches it by name or whose every address lies in an allowed network.

Known limit: httpx resolves the name again when it connects, so a DNS server that answers differently the
second time (DNS rebinding) is not stopped here; pair the policy with egress rules where that matters.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from engine.errors import ExecutionFailedError
from engine.workers.executor import HostPolicy

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class _Rules:
    networks: tuple[IPNetwork, ...]
    names: tuple[str, ...]

    def matches_name(self, host: str) -> bool:
        return any(_name_matches(pattern, host) for pattern in self.names)

    def network_of(self, address: IPAddress) -> IPNetwork | None:
        for candidate in _forms(address):
            for network in self.networks:
                if candidate.version == network.version and candidate in network:
                    return network
        return None


async def enforce_host_policy(host: str, port: int, policy: HostPolicy, *, request: object = None) -> None:
    """Raise :class:`ExecutionFailedError` unless ``policy`` lets a task call ``host``.

    A refusal is non-retryable (the policy will say the same next time); a host that does not resolve is
    retryable, as DNS failures often pass.
    """
    host = host.rstrip(".").lower()
    deny, allow = _rules(tuple(policy.deny)), _rules(tuple(policy.allow))
    if not host:
        raise ExecutionFailedError("the URL has no host", non_retryable=True, request=request)
    if deny.matches_name(host):
        raise _refused(f"host {host!r} is denied by the host policy", request)
    if not (deny.networks or allow.networks):
        addresses: list[IPAddress] = []
    else:
        addresses = await _resolve(host, port, request)
    for address in addresses:
        network = deny.network_of(address)
        if network is not None:
            raise _refused(f"host {host!r} ({address}) is in denied network {network}", request)
    if not policy.allow or allow.matches_name(host):
        return
    if not addresses or any(allow.network_of(address) is None for address in addresses):
        raise _refused(f"host {host!r} is not in the host policy's allow list", request)


def _refused(message: str, request: object) -> ExecutionFailedError:
    return ExecutionFailedError(message, non_retryable=True, request=request)


async def _resolve(host: str, port: int, request: object) -> list[IPAddress]:
    literal = _parse_address(host)
    if literal is not None:
        return [literal]  # an IP literal: nothing to look up, and no packet leaves before the check
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ExecutionFailedError(f"could not resolve host {host!r}: {exc}", request=request) from exc
    addresses = [_parse_address(str(info[4][0])) for info in infos]
    return [address for address in addresses if address is not None]


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


@lru_cache(maxsize=32)
def _rules(entries: tuple[str, ...]) -> _Rules:
    networks: list[IPNetwork] = []
    names: list[str] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            names.append(entry.strip().rstrip(".").lower())
    return _Rules(tuple(networks), tuple(names))
