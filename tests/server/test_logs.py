"""Log lines: request and trace fields on every line, JSON or text, and no secret, token or document."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from graphql import GraphQLError, Source
from opentelemetry.sdk.trace import TracerProvider
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from engine.clock import ManualClock
from engine.workers.builtin import BUILTIN_EXECUTORS
from engine.workers.executor import SystemTaskContext
from engine.workers.worker import Worker
from server.app import create_app
from server.auth import issue_token
from server.demo import load_demo
from server.logs import REDACTED, Redactor, RequestInfo, log_handler, request_scope
from server.settings import Settings
from tests.workers.support import LOOPBACK_ALLOWED, ServerThread

API_KEY = "sk-live-7f3a9c1e5b2d8f40"
DOCUMENT_TEXT = "CONFIDENTIAL-CONTRACT-CLAUSE-42"


def test_the_redactor_blanks_secrets_bearer_tokens_and_jwts() -> None:
    redact = Redactor([API_KEY, "abc"])
    text = redact(f"key={API_KEY} auth=Bearer abc.def-ghi jwt=eyJhbGciOi.eyJzdWIi.c2ln abc")
    assert API_KEY not in text and "abc.def-ghi" not in text and "eyJhbGciOi" not in text
    assert text == f"key={REDACTED} auth=Bearer {REDACTED} jwt={REDACTED} abc"  # too short a secret stays


def _record(handler: logging.Handler, message: Any, *args: Any) -> logging.LogRecord:
    record = logging.LogRecord("stepwise.test", logging.WARNING, __file__, 1, message, args, None)
    handler.filter(record)
    return record


def test_a_json_line_carries_the_request_and_the_trace() -> None:
    stream = io.StringIO()
    handler = log_handler(replace(Settings(), log_format="json"), stream)
    tracer = TracerProvider().get_tracer("test")
    with request_scope(RequestInfo("req-1", user_id="alice", operation="Mine")):
        with tracer.start_as_current_span("work") as span:
            handler.handle(_record(handler, "did %s", "it"))
    line = json.loads(stream.getvalue())
    assert line["message"] == "did it" and line["level"] == "WARNING" and line["logger"] == "stepwise.test"
    assert (line["request_id"], line["user_id"], line["operation"]) == ("req-1", "alice", "Mine")
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert line["span_id"] == format(span.get_span_context().span_id, "016x")


def test_a_text_line_is_readable_and_says_nothing_of_a_request_outside_one() -> None:
    stream = io.StringIO()
    handler = log_handler(Settings(), stream)
    handler.handle(_record(handler, "plain"))
    with request_scope(RequestInfo("req-2")):
        handler.handle(_record(handler, "inside"))
    outside, inside = stream.getvalue().splitlines()
    assert outside.endswith("WARNING stepwise.test: plain")
    assert inside.endswith("WARNING stepwise.test [request_id=req-2]: inside")


def test_a_graphql_error_line_says_where_not_what_the_document_holds() -> None:
    stream = io.StringIO()
    handler = log_handler(Settings(), stream)
    source = Source(f'{{ tasks(filter: {{search: "{DOCUMENT_TEXT}"}}) {{ nope }} }}')
    error = GraphQLError("Cannot query field 'nope' on type 'TaskConnection'.", source=source, positions=[40])
    assert DOCUMENT_TEXT in str(error)
    handler.handle(_record(handler, error))
    assert DOCUMENT_TEXT not in stream.getvalue()
    assert "GraphQL request error at request (1:41): GraphQLError" in stream.getvalue()


@pytest.fixture
def failing_target() -> Iterator[str]:
    async def hook(request: Request) -> JSONResponse:
        return JSONResponse({"error": "down for maintenance"}, status_code=500)

    server = ServerThread(Starlette(routes=[Route("/hook/{key}", hook)]))
    server.start()
    try:
        yield f"{server.url}/hook"
    finally:
        server.stop()


SECRET_FLOW = {
    "key": "keyed_call", "start": "call",
    "nodes": [
        {"id": "call", "type": "http", "retry": {"maxAttempts": 1},
         "config": {"method": "GET", "url": "{{ settings.target }}/{{ secrets.apiKey }}?key={{ secrets.apiKey }}",
                    "timeoutMs": 2000, "headers": {"X-Api-Key": "{{ secrets.apiKey }}"}}},
    ],
    "edges": [],
}  # fmt: skip


async def test_a_scenario_using_secrets_logs_none_of_them(
    settings: Settings, clock: ManualClock, failing_target: str
) -> None:
    settings = replace(settings, log_format="json", secrets={"apiKey": API_KEY},
                       template_settings={"target": failing_target})  # fmt: skip
    stream = io.StringIO()
    root = logging.getLogger()
    handler, level = log_handler(settings, stream), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    token = issue_token(settings, "alice")
    try:
        app = create_app(settings, clock=clock)
        async with app.router.lifespan_context(app):
            engine = app.state.engine
            await load_demo(engine)
            await engine.deploy(SECRET_FLOW)
            await engine.start("keyed_call", {}, "alice")
            async with SystemTaskContext(
                clock=engine.clock, host_policy=LOOPBACK_ALLOWED, settings=settings.template_settings
            ) as context:
                worker = Worker(engine, {e.type: e for e in BUILTIN_EXECUTORS}, context, secrets=settings.secrets)
                assert await worker.run_until_idle() == 1
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                headers = {"authorization": f"Bearer {token}"}
                ok = await client.post("/graphql", json={"query": "query Mine { me { id } }"}, headers=headers)
                assert ok.status_code == 200
                broken = f'query Broken {{ tasks(filter: {{search: "{DOCUMENT_TEXT}"}}) {{ nope }} }}'
                await client.post("/graphql", json={"query": broken}, headers=headers)
                await client.get("/graphql", params={"query": f"{{ me {{ id }} }} # {DOCUMENT_TEXT}"}, headers=headers)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)

    output = stream.getvalue()
    lines = [json.loads(line) for line in output.splitlines()]
    assert API_KEY not in output and token not in output and DOCUMENT_TEXT not in output
    # The secret went where a log line could catch it: httpx logs every URL it calls (a webhook's
    # secret is often in its path, as Slack's are), and the line kept its path but not its query.
    called = [line["message"] for line in lines if line["logger"] == "httpx" and "/hook/" in line["message"]]
    assert called and all(f"/hook/{REDACTED} " in message and "key=" not in message for message in called)
    access = [line for line in lines if line["logger"] == "stepwise.access"]
    mine = next(line for line in access if line.get("operation") == "Mine")
    assert mine["user_id"] == "alice" and mine["status"] == 200 and mine["path"] == "/graphql"
    assert mine["request_id"] and mine["duration_ms"] >= 0
    assert any(line["message"].startswith("GraphQL request error at request") for line in lines)
    assert not [line for line in lines if line["level"] == "DEBUG" and line["logger"].startswith("aiosqlite")]
