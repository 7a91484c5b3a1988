"""Request bodies are read only for someone, only up to a limit and only for so long.

Before: a 300 MB anonymous multipart POST was spooled to disk before its 401, and neither a body's
size nor the time a client took to send headers or a body was bounded. These tests talk to a real
uvicorn on loopback over raw sockets, so they can send headers that promise a body and no body.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from engine.clock import ManualClock
from server.app import create_app
from server.auth import issue_token
from server.demo import load_demo
from server.serving import HeaderDeadlineProtocol, http_protocol
from server.settings import Settings
from tests.server.live import TIMEOUT, serving

WITHIN_UPLOAD_LIMIT = 60_000_000
BOUNDARY = "stepwise-test-boundary"


@pytest.fixture
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where Python's temporary files (a multipart parser's spooled uploads) would go."""
    directory = tmp_path / "spool"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


@pytest.fixture
async def small_limits(settings: Settings, clock: ManualClock) -> AsyncIterator[Starlette]:
    limited = replace(settings, max_body_bytes=300_000, max_json_bytes=262_144, max_upload_bytes=400_000,
                      body_timeout_seconds=0.5)  # fmt: skip
    application = create_app(limited, clock=clock)
    async with application.router.lifespan_context(application):
        await load_demo(application.state.engine)
        yield application


async def exchange(url: str, head: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` (and ``body``) on a fresh connection; the response's status, headers and body,
    read until the server closes the connection."""
    host, port = url.removeprefix("ws://").split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head.encode() + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    header_block, _, content = rest.partition(b"\r\n\r\n")
    pairs = (line.decode().split(": ", 1) for line in header_block.split(b"\r\n") if line)
    headers = {name.lower(): value for name, value in pairs}
    return int(status_line.split()[1]), headers, content


def post_head(content_type: str, length: int, token: str | None = None) -> str:
    authorization = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"POST /graphql HTTP/1.1\r\nHost: stepwise.test\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n{authorization}\r\n")  # fmt: skip


def files_written(*directories: Path) -> list[Path]:
    return [path for directory in directories if directory.exists() for path in directory.rglob("*") if path.is_file()]


async def test_an_anonymous_upload_is_refused_before_its_body(app: Starlette, settings: Settings, spool: Path) -> None:
    """The headers promise 60 MB (within the upload limit) and no byte of it is sent: the 401 comes
    anyway, so it was decided without the body; nothing was spooled or staged, and the connection is
    closed, not drained."""
    async with serving(app) as url:
        for token in (None, "not-a-token"):
            status, headers, content = await exchange(url, post_head(f"multipart/form-data; boundary={BOUNDARY}",
                                                                     WITHIN_UPLOAD_LIMIT, token))  # fmt: skip
            assert status == 401, content
            assert headers["www-authenticate"] == "Bearer" and headers["connection"] == "close"
            assert json.loads(content)["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert files_written(spool, settings.files_dir) == []


async def test_an_oversized_body_is_refused_by_its_length(small_limits: Starlette, settings: Settings) -> None:
    token = issue_token(settings, "alice")
    async with serving(small_limits) as url:
        upload = await exchange(url, post_head(f"multipart/form-data; boundary={BOUNDARY}", 400_001, token))
        body = await exchange(url, post_head("application/json", 300_001, token))
        within = await exchange(url, post_head("application/json", 300_000, token),
                                json.dumps({"query": "{ me { id } }"}).ljust(300_000).encode())  # fmt: skip
    for status, headers, content in (upload, body):
        assert status == 413 and headers["connection"] == "close"
        assert json.loads(content)["errors"][0]["extensions"]["code"] == "BODY_TOO_LARGE"
    assert "upload may be at most 400000 bytes" in upload[2].decode()
    assert within[0] == 200 and json.loads(within[2]) == {"data": {"me": {"id": "alice"}}}


async def test_a_streamed_body_is_refused_once_past_the_limit(small_limits: Starlette, settings: Settings) -> None:
    """No Content-Length (chunked): the body is counted as it is read, and reading stops at the limit."""
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        yield b'{"query": "{ me { id } }", "variables": {"padding": "'
        while pulled < 1000:
            pulled += 1
            yield b"x" * 10_000

    transport = httpx.ASGITransport(app=small_limits)
    async with httpx.AsyncClient(transport=transport, base_url="http://stepwise.test") as http:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {issue_token(settings, 'alice')}"}
        response = await http.post("/graphql", content=endless(), headers=headers)
    assert response.status_code == 413, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "BODY_TOO_LARGE"
    assert pulled <= 31  # 300,000 bytes and the chunk that passed them, not the 10 MB on offer


async def test_a_body_that_does_not_arrive_in_time_is_408(small_limits: Starlette, settings: Settings) -> None:
    async with serving(small_limits) as url:
        status, headers, content = await exchange(
            url, post_head("application/json", 1000, issue_token(settings, "alice")), b'{"query": "{ me'
        )
    assert status == 408 and headers["connection"] == "close"
    assert json.loads(content)["errors"][0]["extensions"]["code"] == "BODY_TIMEOUT"


def test_the_header_deadline_comes_from_the_settings_and_reaches_worker_processes() -> None:
    protocol = http_protocol(replace(Settings(), header_timeout_seconds=0.3))
    copied = pickle.loads(pickle.dumps(protocol))  # uvicorn's --workers processes get their config pickled

    assert copied.func is HeaderDeadlineProtocol and copied.keywords == {"header_timeout": 0.3}


@pytest.fixture
def quick_headers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    original = uvicorn.Config.__init__

    def with_protocol(self: uvicorn.Config, *args: object, **kwargs: object) -> None:
        quick = http_protocol(replace(Settings(), header_timeout_seconds=0.3))
        original(self, *args, **{**kwargs, "http": quick})  # type: ignore[arg-type]

    monkeypatch.setattr(uvicorn.Config, "__init__", with_protocol)
    yield


@pytest.mark.usefixtures("quick_headers")
async def test_headers_that_never_end_lose_their_connection(app: Starlette) -> None:
    async with serving(app) as url:
        host, port = url.removeprefix("ws://").split("/")[0].split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /graphql HTTP/1.1\r\nHost: stepwise.test\r\nX-Slow: ")
        await writer.drain()
        closed = await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()
        assert closed == b""  # closed by the server, nothing answered
        # a request that sends its headers in time is served as ever on the same server
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as http:
            assert (await http.get("/healthz")).status_code == 200
