"""The webhook deliveries' client (engine/workers/webhook_http.py, aiohttp) against raw loopback servers that
answer exactly as each test writes: kept connections, stale ones, bodies of every framing, timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from engine.errors import ExecutionFailedError
from engine.workers.hostpolicy import HostPolicy
from engine.workers.webhook_http import DRAINED_ANSWER_BYTES, WebhookConnections, target_of

LOOPBACK = HostPolicy(allow=("127.0.0.1",))
NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"

Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]
"""Answers one request (its head and body as read); False closes the connection after."""


@dataclass
class RawServer:
    answer: Answer
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))  # fmt: skip
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if not await self.answer(request, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?tenant=a%20b"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Answer], Awaitable[RawServer]]]:
    servers: list[asyncio.Server] = []

    async def start(answer: Answer) -> RawServer:
        raw = RawServer(answer)
        server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
        raw.port = server.sockets[0].getsockname()[1]
        servers.append(server)
        return raw

    yield start
    for server in servers:
        server.close()


def answering(data: bytes, keep: bool = True) -> Answer:
    async def answer(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(data)
        await writer.drain()
        return keep

    return answer


@pytest.fixture
async def client() -> AsyncIterator[WebhookConnections]:
    connections = WebhookConnections(LOOPBACK, kept_alive=4)
    yield connections
    await connections.aclose()


async def test_posts_go_out_as_http_1_1_and_one_connection_carries_them_one_after_another(
    serve: Callable[[Answer], Awaitable[RawServer]], client: WebhookConnections
) -> None:
    server = await serve(answering(NO_CONTENT))

    statuses = [await client.post(server.url, b'{"n": %d}' % n, [("X-Test", "yes")], 5) for n in range(5)]

    assert statuses == [204] * 5
    assert server.connections == 1
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /hook?tenant=a%20b HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}".encode() in lines
    assert b"Content-Length: 8" in lines and b"X-Test: yes" in lines and body == b'{"n": 0}'


async def test_a_chunked_or_sized_answer_body_is_read_through_and_the_connection_kept(
    serve: Callable[[Answer], Awaitable[RawServer]], client: WebhookConnections
) -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    server = await serve(answering(chunked))
    assert [await client.post(server.url, b"{}", [], 5) for _ in range(3)] == [200, 200, 200]
    sized = b"HTTP/1.1 202 Accepted\r\nContent-Length: 3\r\n\r\nyes"
    other = await serve(answering(sized))
    assert [await client.post(other.url, b"{}", [], 5) for _ in range(3)] == [202, 202, 202]
    assert (server.connections, other.connections) == (1, 1)


async def test_an_answer_that_ends_with_its_connection_counts_and_the_next_post_connects_again(
    serve: Callable[[Answer], Awaitable[RawServer]], client: WebhookConnections
) -> None:
    server = await serve(answering(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbye", keep=False))

    assert [await client.post(server.url, b"{}", [], 5) for _ in range(2)] == [200, 200]
    assert server.connections == 2


async def test_a_kept_connection_the_receiver_closed_while_it_idled_is_replaced(
    serve: Callable[[Answer], Awaitable[RawServer]], client: WebhookConnections
) -> None:
    # It says keep-alive, then hangs up: the next POST finds the connection closed and opens another.
    server = await serve(answering(NO_CONTENT, keep=False))

    assert await client.post(server.url, b"{}", [], 5) == 204
    await asyncio.sleep(0.05)
    assert await client.post(server.url, b"{}", [], 5) == 204
    assert server.connections == 2 and len(server.requests) == 2


async def test_a_kept_connection_closed_unanswered_is_retried_once_on_a_new_one(
    serve: Callable[[Answer], Awaitable[RawServer]], client: WebhookConnections
) -> None:
    async def second_hangs_up(request: bytes, writer: asyncio.StreamWriter) -> bool:
        if len(server.requests) == 2:
            return False  # the kept connection's next request: closed without a word
        writer.write(NO_CONTENT)
        await writer.drain()
        return True

    server = await serve(second_hangs_up)

    assert [await client.post(server.url, b"{}", [], 5) for _ in range(2)] == [204, 204]
    assert server.connections == 2 and len(server.requests) == 3, "sent again, with the same body, once"
    assert server.requests[1] == server.requests[2]


async def test_a_large_answer_is_not_read_through_its_connection_goes_instead(
    serve: Callable[[Answer], Awaitable[RawServer]], client: WebhookConnections
) -> None:
    size = DRAINED_ANSWER_BYTES * 4
    server = await serve(answering(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size))

    assert [await client.post(server.url, b"{}", [], 5) for _ in range(2)] == [200, 200]
    assert server.connections == 2


async def test_no_answer_in_time_is_a_read_timeout(
    serve: Callable[[Answer], Awaitable[RawServer]], client: WebhookConnections
) -> None:
    async def hang(request: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(10)
        return False

    server = await serve(hang)
    with pytest.raises(httpx.ReadTimeout):
        await client.post(server.url, b"{}", [], 0.2)


async def test_a_receiver_that_hangs_up_or_answers_garbage_is_a_protocol_error(
    serve: Callable[[Answer], Awaitable[RawServer]], client: WebhookConnections
) -> None:
    async def hang_up(request: bytes, writer: asyncio.StreamWriter) -> bool:
        return False

    with pytest.raises(httpx.RemoteProtocolError):
        await client.post((await serve(hang_up)).url, b"{}", [], 5)
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post((await serve(answering(b"SMTP ready\r\n\r\n"))).url, b"{}", [], 5)


async def test_nothing_listening_is_a_connect_error(client: WebhookConnections) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(httpx.ConnectError):
        await client.post(f"http://127.0.0.1:{port}/hook", b"{}", [], 5)


async def test_the_host_policy_refuses_a_private_address_before_connecting(
    serve: Callable[[Answer], Awaitable[RawServer]],
) -> None:
    server = await serve(answering(NO_CONTENT))
    strict = WebhookConnections(HostPolicy(), kept_alive=4)
    try:
        with pytest.raises(ExecutionFailedError) as refused:
            await strict.post(server.url, b"{}", [], 5)
    finally:
        await strict.aclose()
    assert refused.value.non_retryable and "allow list" in refused.value.message
    assert server.connections == 0


def test_a_target_is_what_httpx_would_send() -> None:
    target = target_of("https://hooks.example.com/a b?x=1")
    assert (target.scheme, target.host, target.port) == ("https", "hooks.example.com", 443)
    assert (target.request_target, target.host_header) == ("/a%20b?x=1", "hooks.example.com")
    v6 = target_of("http://[::1]:8080")
    assert (v6.host, v6.request_target, v6.host_header) == ("::1", "/", "[::1]:8080")


async def test_a_host_name_is_resolved_through_the_host_policy_at_each_connect(
    serve: Callable[[Answer], Awaitable[RawServer]],
) -> None:
    """aiohttp resolves names with the policy's resolver: an admitted name connects, a refused one never."""
    server = await serve(answering(NO_CONTENT))
    by_name = f"http://localhost:{server.port}/hook"
    admitted = WebhookConnections(HostPolicy(allow=("localhost",)), kept_alive=4)
    strict = WebhookConnections(HostPolicy(), kept_alive=4)
    try:
        assert await admitted.post(by_name, b"{}", [], 5) == 204
        with pytest.raises(ExecutionFailedError) as refused:
            await strict.post(by_name, b"{}", [], 5)
    finally:
        await admitted.aclose()
        await strict.aclose()
    assert refused.value.non_retryable and server.connections == 1
