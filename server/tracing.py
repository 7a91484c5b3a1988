"""OpenTelemetry traces, exported over OTLP/HTTP when ``STEPWISE_OTLP_ENDPOINT`` is set; off otherwise.

One trace per HTTP request (a server span, continuing the caller's ``traceparent`` if it sent one)
holds Strawberry's spans (the operation, its parsing, validation and resolvers), SQLAlchemy's (one
per statement run through SQLAlchemy; a transition's last statement on PostgreSQL goes to the driver
directly and has none), and httpx's for the calls system tasks make. The provider is the app's own,
never the global one: tests run many apps in one process, each with its own exporter.

Spans carry no resolver arguments (they hold user input: form values, comments); the operation span
carries the document, as Strawberry records it, and never the variables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from graphql import GraphQLResolveInfo
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Tracer
from strawberry.extensions import SchemaExtension
from strawberry.extensions.tracing import OpenTelemetryExtension

from engine import Database
from server.settings import Settings

TRACES_PATH = "/v1/traces"


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for a collector's base URL (or the traces URL itself)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


def tracer_provider_for(settings: Settings) -> TracerProvider | None:
    """An OTLP-exporting provider when an endpoint is configured, else None (tracing off)."""
    if settings.otlp_endpoint is None:
        return None
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.service_name}),
        sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(settings.otlp_endpoint))))
    return provider


def request_tracer(provider: TracerProvider) -> Tracer:
    return provider.get_tracer("stepwise.server")


def instrument_database(db: Database, provider: TracerProvider) -> None:
    """A span for each statement SQLAlchemy runs on ``db``'s engine (listeners on that engine only)."""
    connections = NoOpMeterProvider().get_meter("stepwise").create_up_down_counter("db.client.connections.usage")
    tracer = provider.get_tracer("opentelemetry.instrumentation.sqlalchemy")
    EngineTracer(tracer, db.engine.sync_engine, connections)  # type: ignore[no-untyped-call]


def instrument_http_client(client: httpx.AsyncClient, provider: TracerProvider) -> None:
    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)


def _no_arguments(arguments: dict[str, Any], info: GraphQLResolveInfo[Any]) -> dict[str, Any]:
    return {}


def graphql_tracing(provider: TracerProvider) -> Callable[[], SchemaExtension]:
    """A factory for the schema's ``extensions`` list."""
    return lambda: OpenTelemetryExtension(tracer_provider=provider, arg_filter=_no_arguments)
