"""GraphiQL in a real headless Chromium, against a real uvicorn, with every asset served locally."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import strawberry
import uvicorn
from playwright.async_api import ElementHandle, Page, Route, async_playwright, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route as HttpRoute
from starlette.routing import WebSocketRoute
from strawberry.asgi import GraphQL

from server.graphiql import graphiql_assets_mount, graphiql_html

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOST = "127.0.0.1"
TOKEN = "Bearer browser-test-token"

pytestmark = pytest.mark.browser


# --- a small self-contained app: the GraphiQL page, its assets and a toy schema -----------------------------


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "Hello from Stepwise"

    @strawberry.field
    def authorization(self, info: strawberry.Info) -> str:
        request: Request = info.context["request"]
        return "http:" + request.headers.get("authorization", "")


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def authorization(self, info: strawberry.Info) -> AsyncGenerator[str, None]:
        params = info.context.get("connection_params") or {}
        yield "ws:" + str(params.get("authorization", ""))


class _GraphQLApp(GraphQL[None, None]):
    async def render_graphql_ide(self, request: Request) -> Response:
        return HTMLResponse(graphiql_html("/graphql"))


def _build_app() -> Starlette:
    graphql_app = _GraphQLApp(strawberry.Schema(query=Query, subscription=Subscription))
    return Starlette(
        routes=[
            HttpRoute("/graphql", graphql_app),
            WebSocketRoute("/graphql", graphql_app),
            graphiql_assets_mount(),
        ]
    )


@pytest.fixture
def live_server() -> Iterator[str]:
    """Run uvicorn on a free loopback port in a background thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOCAL_HOST, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(_build_app(), loop="asyncio", lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://{LOCAL_HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _chromium_executable() -> str:
    if CHROMIUM.exists():
        return str(CHROMIUM)
    reason = f"{CHROMIUM} not found (install Debian's chromium package)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


async def _set_editor(page: Page, region: str, text: str) -> ElementHandle:
    """Replace the text of the CodeMirror editor in the page region (aria label) ``region``."""
    editor = page.get_by_role("region", name=region).locator(".CodeMirror").filter(visible=True)
    await expect(editor).to_be_visible()
    await editor.evaluate("(el, text) => el.CodeMirror.setValue(text)", text)
    return await editor.element_handle()


async def _run(page: Page, query: str) -> None:
    editor = await _set_editor(page, "Query Editor", query)
    # GraphiQL parses the query after a debounce; executing before that would use the previous document.
    await page.wait_for_function(
        "([el, text]) => el.CodeMirror.documentAST?.loc?.source.body === text", arg=[editor, query]
    )
    await page.locator("button.graphiql-execute-button").click()


async def test_graphiql_runs_queries_and_subscriptions_with_local_assets_only(live_server: str) -> None:
    executable = _chromium_executable()
    requested: list[str] = []
    page_errors: list[str] = []

    async def keep_local(route: Route) -> None:
        if urlsplit(route.request.url).hostname == LOCAL_HOST:
            await route.continue_()
        else:
            await route.abort()

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("request", lambda request: requested.append(request.url))
            page.on("websocket", lambda ws: requested.append(ws.url))
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            await page.route("**/*", keep_local)

            await page.goto(f"{live_server}/graphql")
            await expect(page.locator(".graphiql-container")).to_be_visible(timeout=15_000)
            result = page.locator(".result-window")

            await _run(page, "{ hello }")
            await expect(result).to_contain_text('"hello": "Hello from Stepwise"')

            # The bearer token typed into the Headers editor reaches HTTP requests ...
            await page.get_by_role("button", name="Headers").click()
            await _set_editor(page, "Headers", f'{{"Authorization": "{TOKEN}"}}')
            await _run(page, "{ authorization }")
            await expect(result).to_contain_text(f'"authorization": "http:{TOKEN}"')

            # ... and the WebSocket connection_init payload of subscriptions.
            await _run(page, "subscription { authorization }")
            await expect(result).to_contain_text(f'"authorization": "ws:{TOKEN}"')

            if screenshot := os.environ.get("GRAPHIQL_SCREENSHOT"):
                await page.screenshot(path=screenshot)
        finally:
            await browser.close()

    assert page_errors == []
    assert f"{live_server}/graphiql-assets/graphiql.min.js" in requested
    assert any(url.startswith(f"ws://{LOCAL_HOST}:") for url in requested)
    foreign = [url for url in requested if urlsplit(url).scheme not in ("data", "blob")]
    foreign = [url for url in foreign if urlsplit(url).hostname != LOCAL_HOST]
    assert foreign == []
