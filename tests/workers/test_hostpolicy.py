"""The host policy where connections are made: one lookup per connection, its answer checked and used,
and response bodies capped (engine.workers.hostpolicy), against real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import replace
from typing import Any

import pytest

from engine.errors import ExecutionFailedError
from engine.workers.executor import ExecutionResult, SystemTaskContext
from engine.workers.graphql import GraphQLExecutor
from engine.workers.hostpolicy import GuardedTransport, HostPolicy, check_entries, is_public, refusal
from engine.workers.http import HttpExecutor
from tests.workers.conftest import Target
from tests.workers.support import attempt


def test_public_means_globally_reachable_and_not_an_ipv4_address_in_disguise() -> None:
    public = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "168.63.129.16"]
    private = ["127.0.0.1", "0.0.0.0", "10.0.0.1", "172.31.255.255", "192.168.0.1", "100.64.0.1", "169.254.1.1",
               "::1", "::", "fe80::1", "fd00::1", "fc00::1", "64:ff9b::808:808", "::808:808", "::ffff:8.8.8.8",
               "2002:808:808::1", "224.0.0.1", "ff02::1", "192.0.2.1", "198.18.0.1", "240.0.0.1"]  # fmt: skip

    assert [a for a in public if not is_public(ipaddress.ip_address(a))] == []
    assert [a for a in private if is_public(ipaddress.ip_address(a))] == []


def test_metadata_is_refused_even_where_it_is_public_or_allowed() -> None:
    policy = HostPolicy(allow=("168.63.0.0/16", "169.254.0.0/16", "metadata.google.internal"))

    for host, address in [("168.63.129.16", "168.63.129.16"), ("x.test", "::ffff:169.254.169.254"),
                          ("metadata.google.internal", None)]:  # fmt: skip
        reason = refusal(host, ipaddress.ip_address(address) if address else None, 80, policy)
        assert reason is not None and "cloud metadata" in reason


def test_entries_with_ports_and_brackets() -> None:
    policy = HostPolicy(allow=("[::1]:8000", "10.0.0.0/8", ".internal:443"))
    loopback6 = ipaddress.ip_address("::1")

    assert refusal("::1", loopback6, 8000, policy) is None
    assert refusal("::1", loopback6, 8001, policy) is not None
    assert refusal("db.internal", ipaddress.ip_address("10.9.9.9"), 5432, policy) is None  # by network
    assert refusal("api.internal", ipaddress.ip_address("192.168.1.1"), 443, policy) is None  # by name and port
    assert refusal("api.internal", ipaddress.ip_address("192.168.1.1"), 80, policy) is not None
    assert check_entries(["10.0.0.0/8", "host:port", "[::1]:x", "api.test:443"]) == ["host:port", "[::1]:x"]


async def test_a_name_is_resolved_once_and_the_checked_answer_is_the_one_connected_to(
    target: Target, context: SystemTaskContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the first answer is allowed (127.0.0.2, where nothing listens), every later one is
    the target on 127.0.0.1, which the policy refuses. A second lookup would reach the target."""
    port = int(target.url.rsplit(":", 1)[1])
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    answers: list[str] = []

    async def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.stepwise.test":
            return await real(host, *args, **kwargs)
        answers.append("127.0.0.2" if not answers else "127.0.0.1")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[-1], port))]

    monkeypatch.setattr(loop, "getaddrinfo", rebinding)
    rebind = replace(context, host_policy=HostPolicy(allow=("127.0.0.2",)))
    seen = len(target.seen)
    try:
        with pytest.raises(ExecutionFailedError) as failure:
            await HttpExecutor().execute(attempt("http", {"url": f"http://rebind.stepwise.test:{port}/echo"}), rebind)
    finally:
        await rebind.aclose()

    assert "ConnectError" in failure.value.message  # connected to 127.0.0.2 (refused), not to the target
    assert answers == ["127.0.0.2"]
    assert len(target.seen) == seen


async def test_the_request_keeps_its_host_header_when_connecting_to_the_checked_address(
    target: Target, context: SystemTaskContext
) -> None:
    result = await HttpExecutor().execute(
        attempt("http", {"url": target.url.replace("127.0.0.1", "localhost") + "/echo"}), context
    )

    assert isinstance(result, ExecutionResult)
    assert target.last("/echo")["headers"]["host"] == target.url.replace("http://127.0.0.1", "localhost")


def test_the_transport_still_connects_through_the_checked_backend() -> None:
    """GuardedTransport replaces httpx's pool (httpx takes no network backend): a new httpx that stopped
    reading ``_pool`` would silently skip the policy; the tests above would catch it too, this says why."""
    transport = GuardedTransport(HostPolicy(), 1024)

    assert type(transport._pool._network_backend).__name__ == "CheckedNetworkBackend"


@pytest.mark.parametrize("how", ["length", "chunked", "gzip"])
async def test_a_response_body_over_the_limit_fails_for_good(
    target: Target, context: SystemTaskContext, how: str
) -> None:
    capped = replace(context, max_body_bytes=10_000)
    try:
        fits = await HttpExecutor().execute(attempt("http", {"url": f"{target.url}/big?bytes=10000&as={how}"}), capped)
        with pytest.raises(ExecutionFailedError) as failure:
            await HttpExecutor().execute(attempt("http", {"url": f"{target.url}/big?bytes=10001&as={how}"}), capped)
    finally:
        await capped.aclose()

    assert isinstance(fits, ExecutionResult) and fits.output["body"] == "a" * 10_000
    assert failure.value.non_retryable
    assert "larger than the limit of 10000 bytes" in failure.value.message
    assert failure.value.request is not None


async def test_a_head_request_is_not_judged_by_the_length_it_announces(
    target: Target, context: SystemTaskContext
) -> None:
    capped = replace(context, max_body_bytes=1000)
    try:
        result = await HttpExecutor().execute(
            attempt("http", {"method": "HEAD", "url": f"{target.url}/big?bytes=5000"}), capped
        )
    finally:
        await capped.aclose()

    assert isinstance(result, ExecutionResult)
    assert result.output["headers"]["content-length"] == "5000" and result.output["body"] == ""


async def test_a_graphql_response_over_the_limit_fails_for_good(target: Target, context: SystemTaskContext) -> None:
    capped = replace(context, max_body_bytes=100)
    config = {"url": f"{target.url}/graphql", "query": '{ greet(name: "%s") }' % ("x" * 200)}
    try:
        with pytest.raises(ExecutionFailedError) as failure:
            await GraphQLExecutor().execute(attempt("graphql", config), capped)
    finally:
        await capped.aclose()

    assert failure.value.non_retryable
    assert "larger than the limit of 100 bytes" in failure.value.message


async def test_cookies_from_one_call_are_not_sent_with_the_next(target: Target, context: SystemTaskContext) -> None:
    await context.http.get(f"{target.url}/cookie")
    await HttpExecutor().execute(attempt("http", {"url": f"{target.url}/reflect"}), context)

    assert "cookie" not in target.last("/reflect")["headers"]
