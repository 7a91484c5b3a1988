"""Traces: one per request, continuing the caller's, with the operation, resolver and SQL spans in it;
exported over OTLP/HTTP to a real receiver on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine.clock import ManualClock
from server.app import create_app
from server.auth import issue_token
from server.demo import load_demo
from server.settings import Settings
from server.tracing import traces_url
from tests.workers.support import ServerThread

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
QUERY = "query Mine($first: Int!) { me { id } tasks(first: $first) { totalCount } }"


def test_the_traces_url_is_the_collectors_base_url_with_the_otlp_path() -> None:
    assert traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert traces_url("http://collector:4318/v1/traces") == "http://collector:4318/v1/traces"


async def test_a_request_is_one_trace_with_operation_resolver_and_sql_spans(
    settings: Settings, clock: ManualClock
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(settings, clock=clock, tracer_provider=provider)
    async with app.router.lifespan_context(app):
        await load_demo(app.state.engine)
        exporter.clear()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            headers = {"authorization": f"Bearer {issue_token(settings, 'alice')}", "traceparent": TRACEPARENT}
            response = await http.post("/graphql", json={"query": QUERY, "variables": {"first": 5}}, headers=headers)
    assert response.status_code == 200 and response.json()["data"]["me"] == {"id": "alice"}
    assert response.headers["x-request-id"]

    spans = [span for span in exporter.get_finished_spans() if format(span.context.trace_id, "032x") == TRACE_ID]
    by_name = {span.name: span for span in spans}
    server = by_name["POST /graphql"]
    assert server.attributes is not None and server.attributes["http.response.status_code"] == 200
    assert server.attributes["graphql.operation.name"] == "Mine"
    operation = by_name["GraphQL Query: Mine"]
    assert operation.parent is not None and operation.parent.span_id == server.context.span_id
    resolver = by_name["GraphQL Resolving: tasks"]
    assert not [key for key in (resolver.attributes or {}) if key.startswith("graphql.param.")]  # no user input
    statements = [span for span in spans if (span.attributes or {}).get("db.statement")]
    assert statements, sorted(by_name)
    assert all(_descends_from(span, server, spans) for span in statements)


def _descends_from(span: ReadableSpan, ancestor: ReadableSpan, spans: list[ReadableSpan]) -> bool:
    by_id = {s.context.span_id: s for s in spans}
    current: ReadableSpan | None = span
    while current is not None and current.parent is not None:
        if current.parent.span_id == ancestor.context.span_id:
            return True
        current = by_id.get(current.parent.span_id)
    return False


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """A real OTLP/HTTP receiver on loopback: decodes each POST /v1/traces with opentelemetry-proto."""
    received: list[ExportTraceServiceRequest] = []

    async def traces(request: Request) -> Response:
        assert request.headers["content-type"] == "application/x-protobuf"
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.body())
        received.append(message)
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf")

    server = ServerThread(Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])]))
    server.start()
    try:
        yield server.url, received
    finally:
        server.stop()


async def test_traces_reach_an_otlp_http_receiver(
    settings: Settings, clock: ManualClock, otlp_receiver: tuple[str, list[ExportTraceServiceRequest]]
) -> None:
    url, received = otlp_receiver
    app = create_app(replace(settings, otlp_endpoint=url, service_name="stepwise-under-test"), clock=clock)
    async with app.router.lifespan_context(app):
        await load_demo(app.state.engine)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            headers = {"authorization": f"Bearer {issue_token(settings, 'alice')}", "traceparent": TRACEPARENT}
            response = await http.post("/graphql", json={"query": QUERY, "variables": {"first": 5}}, headers=headers)
            assert response.status_code == 200
    # The lifespan's end flushed the batch: everything is at the receiver now.
    exported = [
        (resource_spans.resource, span)
        for message in received
        for resource_spans in message.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    ours = [(resource, span) for resource, span in exported if span.trace_id.hex() == TRACE_ID]
    names = {span.name for _, span in ours}
    assert {"POST /graphql", "GraphQL Query: Mine", "GraphQL Resolving: me"} <= names
    services = {
        attribute.value.string_value
        for resource, _ in ours
        for attribute in resource.attributes
        if attribute.key == "service.name"
    }
    assert services == {"stepwise-under-test"}
