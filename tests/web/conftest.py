"""The web app in Debian's Chromium (Playwright) against real ``stepwise serve`` processes on loopback,
on the test's own database (SQLite or PostgreSQL, as every database test here).

- ``servers``: start ``stepwise serve`` processes sharing the database, the signing key and the blob
  directory (a second process is another server of the same deployment), stop or restart one.
- ``browser``: one headless Chromium for the session; ``sign_in`` opens a context signed in as a demo
  user through the page's own development sign-in.
- Every page is checked at the end: no page error, no request to another host, no CSP violation.
- Screenshots of the main screens go to ``test-screenshots/`` (not committed; see .gitignore).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, WebSocketRoute, async_playwright, expect

from engine.transitions.engine import Engine
from server.auth import issue_token
from server.demo import load_demo
from server.settings import Settings
from tests.server.live import START_TIMEOUT
from tests.support import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
SECRET = "web-test-secret-key-of-at-least-thirty-two-bytes"
REPOSITORY = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPOSITORY / "test-screenshots"
TIMEOUT_MS = 10_000
PARTNER_KEY = "partner-secret-4711"

pytestmark = pytest.mark.browser
expect.set_options(timeout=TIMEOUT_MS)


def chromium_executable() -> str:
    if CHROMIUM.exists():
        return str(CHROMIUM)
    reason = f"{CHROMIUM} not found: install Debian's chromium package (`apt-get install chromium`), or run `make test`"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class Server:
    port: int
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        stepwise = Path(sys.executable).parent / "stepwise"
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [str(stepwise), "serve", "--port", str(self.port)], env=self.env, stdout=output,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        async with httpx.AsyncClient(base_url=self.url) as http:
            while True:
                assert self.process.poll() is None, f"the server at {self.url} exited: {self.log.read_text()}"
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"the server at {self.url} did not start: {self.log.read_text()}"
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(asyncio.to_thread(process.wait), 15)
        except TimeoutError:
            process.kill()
            process.wait()


@dataclass
class Servers:
    database_url: str
    tmp: Path
    running: list[Server] = field(default_factory=list)

    async def start(self) -> Server:
        port = free_port()
        first = self.running[0].port if self.running else port
        env = {
            **os.environ,
            "STEPWISE_DATABASE_URL": self.database_url,
            "STEPWISE_SECRET_KEY": SECRET,
            "STEPWISE_FILES_DIR": str(self.tmp / "files"),
            "STEPWISE_DEV": "true",
            "STEPWISE_DEV_MAILBOX_PORT": str(free_port()),
            "STEPWISE_EVENTS_POLL_SECONDS": "0.2",  # SQLite's other processes are heard of by polling
            "STEPWISE_TEMPLATE_SETTINGS": f'{{"notifyUrl": "http://127.0.0.1:{first}/dev/notify"}}',
            "STEPWISE_HTTP_ALLOW": f"127.0.0.1:{first}",
            "STEPWISE_MUTATIONS_PER_MINUTE": "0",
            "STEPWISE_LOG_LEVEL": "WARNING",
            "STEPWISE_SECRETS": f'{{"partnerKey": "{PARTNER_KEY}"}}',
        }
        server = Server(port, env, self.tmp / f"serve-{port}.log")
        await server.start()
        self.running.append(server)
        return server

    async def stop_all(self) -> None:
        for server in self.running:
            await server.stop()


@pytest.fixture
async def servers(database_url: str, tmp_path: Path, engine: Engine) -> AsyncIterator[Servers]:
    await load_demo(engine)
    group = Servers(database_url, tmp_path)
    try:
        yield group
    finally:
        await group.stop_all()


@pytest.fixture
async def server(servers: Servers) -> Server:
    return await servers.start()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_executable()
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@dataclass
class Watch:
    """What every page of a test must not do: throw, reach another host, or break the CSP."""

    problems: list[str] = field(default_factory=list)

    def page(self, page: Page) -> Page:
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on(
            "console",
            lambda message: (
                self.problems.append(f"console: {message.text}")
                if message.type == "error" and "Content Security Policy" in message.text
                else None
            ),
        )

        def request(url: str) -> None:
            parts = urlsplit(url)
            if parts.scheme not in ("data", "blob") and parts.hostname != "127.0.0.1":
                self.problems.append(f"request to another host: {url}")

        page.on("request", lambda r: request(r.url))
        page.on("websocket", lambda ws: request(ws.url))
        return page


@pytest.fixture
async def contexts(browser: Browser) -> AsyncIterator[tuple[list[BrowserContext], Watch]]:
    opened: list[BrowserContext] = []
    watch = Watch()
    try:
        yield opened, watch
    finally:
        for context in opened:
            await context.close()
    assert watch.problems == []


# Every toast shown, in order, kept after it fades (test-side: injected by Playwright, not the app's code).
RECORD_TOASTS = """
window.__toasts = [];
new MutationObserver(() => {
  for (const t of document.querySelectorAll("[data-testid=toast]")) {
    if (!t.dataset.recorded) { t.dataset.recorded = "1"; window.__toasts.push(t.textContent.replace("×", "").trim()); }
  }
}).observe(document, {subtree: true, childList: true});
"""


class LiveGate:
    """Sits in a page's WebSocket (Playwright's route): ``hold()`` keeps what the server sends from the page
    until ``release()`` — the page has not heard of a change yet, as on a slow network. ``end_streams()``
    ends the page's ``taskEvents`` subscriptions as the server does when it cannot go on with one."""

    def __init__(self) -> None:
        self.holding = False
        self.held: list[tuple[WebSocketRoute, str | bytes]] = []
        # Per connection: its server side and the ids of the page's live taskEvents subscriptions on it.
        self.streams: dict[WebSocketRoute, tuple[WebSocketRoute, set[str]]] = {}

    def route(self, page_side: WebSocketRoute) -> None:
        server_side = page_side.connect_to_server()
        ids: set[str] = set()
        self.streams[page_side] = (server_side, ids)

        def to_server(message: str | bytes) -> None:
            sent = json.loads(message) if isinstance(message, str) else {}
            if sent.get("type") == "subscribe" and "taskEvents" in sent["payload"]["query"]:
                ids.add(sent["id"])
            elif sent.get("type") == "complete":
                ids.discard(sent["id"])
            server_side.send(message)

        def to_page(message: str | bytes) -> None:
            if self.holding:
                self.held.append((page_side, message))
            else:
                page_side.send(message)

        page_side.on_message(to_server)
        server_side.on_message(to_page)

    def hold(self) -> None:
        self.holding = True

    def release(self) -> None:
        self.holding = False
        held, self.held = self.held, []
        for page_side, message in held:
            page_side.send(message)

    async def end_streams(self) -> None:
        """Ends the page's live ``taskEvents`` subscription the way the server ends one it cannot go on with
        (the subscriber fell behind, a database error): a ``next`` with only ``errors``, then ``complete``
        (tests/server/test_subscriptions.py shows that wire form). The server's side is ended too, so nothing
        more arrives on it. Waits for the page to have subscribed first (it does just after "Live")."""
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while not any(ids for _, ids in self.streams.values()):
            assert time.monotonic() < deadline, "the page never subscribed to taskEvents"
            await asyncio.sleep(0.02)
        for page_side, (server_side, ids) in list(self.streams.items()):
            for id in list(ids):
                ids.discard(id)
                server_side.send(json.dumps({"id": id, "type": "complete"}))
                failure = {"message": "reading task events failed", "extensions": {"code": "INTERNAL"}}
                page_side.send(json.dumps({"id": id, "type": "next", "payload": {"data": None, "errors": [failure]}}))
                page_side.send(json.dumps({"id": id, "type": "complete"}))


class Person:
    """One browser context signed in as a demo user, on one server."""

    def __init__(self, page: Page, user: str, server: Server, shots: Shots, gate: LiveGate) -> None:
        self.page, self.user, self.server, self.shots, self.gate = page, user, server, shots, gate

    async def goto(self, path: str) -> None:
        await self.page.goto(self.server.url + path)
        await expect(self.page.get_by_test_id("live")).to_have_attribute("data-state", "live", timeout=TIMEOUT_MS)

    async def toasts(self) -> list[str]:
        seen: list[str] = await self.page.evaluate("window.__toasts")
        return seen

    async def shot(self, name: str) -> None:
        await self.shots.take(self.page, f"{self.user}-{name}")


class Shots:
    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.prefix = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")

    async def take(self, page: Page, name: str) -> None:
        SCREENSHOTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / f"{self.prefix}-{name}.png"), full_page=True)


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    return Shots(request)


@pytest.fixture
def sign_in(browser: Browser, contexts: tuple[list[BrowserContext], Watch], shots: Shots) -> Any:
    opened, watch = contexts

    async def open_as(user: str, server: Server, *, width: int = 1280, height: int = 900) -> Person:
        context = await browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(TIMEOUT_MS)
        opened.append(context)
        await context.add_init_script(script=RECORD_TOASTS)
        gate = LiveGate()
        await context.route_web_socket("**/graphql", gate.route)
        page = watch.page(await context.new_page())
        await page.goto(server.url + "/")
        names = {"alice": "Alice Adams", "bob": "Bob Brown", "carol": "Carol Clark", "dana": "Dana Diaz",
                 "erin": "Erin Evans"}  # fmt: skip
        await page.get_by_role("button", name=names[user]).click()
        await expect(page.get_by_test_id("me")).to_have_text(names[user])
        await expect(page.get_by_test_id("live")).to_have_attribute("data-state", "live")
        return Person(page, user, server, shots, gate)

    return open_as


def token(user: str) -> str:
    from dataclasses import replace

    return issue_token(replace(Settings(), secret_key=SECRET), user)


async def graphql(server: Server, user: str, query: str, **variables: Any) -> dict[str, Any]:
    """A client of the same API beside the browsers (someone else acting)."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post(
            "/graphql", json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token(user)}"},
        )  # fmt: skip
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def step_of(*nodes: dict[str, Any], key: str) -> dict[str, Any]:
    """A definition whose nodes run one after another in one step ("Work") of one milestone."""
    ids = [node["id"] for node in nodes]
    return {
        "key": key, "title": key.replace("_", " ").title(),
        "milestones": [{"key": "main", "title": "Main", "steps": [{"key": "work", "title": "Work", "nodes": ids}]}],
        "start": ids[0], "nodes": list(nodes),
        "edges": [{"from": a, "to": b} for a, b in zip(ids, ids[1:], strict=False)],
    }  # fmt: skip


APPROVAL = step_of(
    {"id": "decide", "type": "userTask", "schemaType": "userTask.approval", "name": "Decide",
     "title": "Decide on {{ entityName }}", "description": "Asked by {{ startedBy.name }}",
     "assignToRole": "approver", "storeAs": "decision", "priority": "high"},
    key="web_approval",
)  # fmt: skip
FORM = step_of(
    {"id": "fill", "type": "userTask", "schemaType": "userTask.form", "name": "Fill", "title": "Fill {{ entityName }}",
     "assignToRole": "requester", "storeAs": "filled",
     "form": {"fields": [{"key": "note", "type": "text", "label": "Note", "required": True},
                         {"key": "count", "type": "number", "label": "Count", "mask": "integer"}]}},
    key="web_form",
)  # fmt: skip
# Nothing may be called on loopback's port 9 (the host policy refuses it): the one attempt fails at once.
FAILING = step_of(
    {"id": "call", "type": "http", "name": "Call the partner", "title": "Call the partner",
     "config": {"method": "GET", "url": "http://127.0.0.1:9/", "headers": {"X-Api-Key": "{{ secrets.partnerKey }}"}},
     "retry": {"maxAttempts": 1}},
    key="web_failing",
)  # fmt: skip


async def start(engine: Engine, definition: dict[str, Any], name: str, user: str = "alice") -> str:
    """Deploys (once) and starts ``definition`` as ``user``; returns the instance id."""
    await engine.deploy(definition, deployed_by="dana")
    instance = await engine.start(str(definition["key"]), {"entityName": name}, user)
    return instance.id


UPLOADS = step_of(
    {"id": "papers", "type": "userTask", "schemaType": "userTask.documentUpload", "name": "Papers",
     "title": "Send the papers for {{ entityName }}", "assignToRole": "requester",
     "documents": [{"key": "contract", "label": "Signed contract", "accept": ["application/pdf"], "maxFiles": 1,
                    "maxBytes": 2048},
                   {"key": "photos", "label": "Photos", "accept": ["image/*"], "minFiles": 1, "maxFiles": 2}]},
    key="web_uploads",
)  # fmt: skip
