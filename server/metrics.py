"""Prometheus metrics, scraped at ``GET /metrics`` (the ``prometheus-client`` text format).

Counted as they happen: HTTP requests and their latency by method, route and status; GraphQL
operations and their latency by operation name and type; top-level GraphQL errors by code;
transitions and their latency, and the events they wrote; worker claims, attempts by outcome and
their latency, and failures, by task type. Read at each scrape: the database pool's connections;
the event hub's read and delivered events, its position in the log, live subscriptions, their
queue depths, and whether PostgreSQL's ``LISTEN`` connection is up; event-numbering rounds.

Operation names are the client's choice, so at most :data:`MAX_OPERATION_NAMES` distinct ones get
their own series; later ones are counted as ``other``, which keeps one client from growing the
scrape without bound.

``/metrics`` answers anyone sending ``Authorization: Bearer <STEPWISE_METRICS_TOKEN>`` when that is
set; without it, only clients on the loopback interface (a scraper on the same host).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from ipaddress import ip_address
from typing import Any

from graphql import GraphQLError
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from strawberry.types.execution import ExecutionContext, PreExecutionError

from engine import AttemptOutcome, Engine, EngineObserver, EventHub
from server.logs import current_request
from server.settings import Settings

MAX_OPERATION_NAMES = 200
OTHER = "other"
ANONYMOUS = "anonymous"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_FAILED = frozenset({AttemptOutcome.FAILED, AttemptOutcome.RETRYING})


class Metrics(EngineObserver):
    """One process's instruments, in a registry of its own (tests run many apps in one process)."""

    def __init__(self, engine: Engine, events: EventHub | None) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.http_requests = Counter(
            "stepwise_http_requests", "HTTP requests answered.", ["method", "route", "status"], registry=registry
        )
        self.http_seconds = Histogram(
            "stepwise_http_request_duration_seconds",
            "HTTP request latency.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.operations = Counter(
            "stepwise_graphql_operations",
            "GraphQL operations run (subscriptions: started).",
            ["operation", "type"],
            registry=registry,
        )
        self.operation_seconds = Histogram(
            "stepwise_graphql_operation_duration_seconds",
            "GraphQL operation latency.",
            ["operation", "type"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.graphql_errors = Counter(
            "stepwise_graphql_errors", "Top-level GraphQL errors, by extensions.code.", ["code"], registry=registry
        )
        self.transitions = Counter("stepwise_transitions", "Committed transitions.", ["kind"], registry=registry)
        self.transition_seconds = Histogram(
            "stepwise_transition_duration_seconds",
            "Transition latency (retries included).",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.events_written = Counter(
            "stepwise_events_written", "Task events committed by this process.", registry=registry
        )
        self.claims = Counter(
            "stepwise_worker_claims", "System tasks leased by this process's worker.", ["task_type"], registry=registry
        )
        self.attempts = Counter(
            "stepwise_worker_attempts",
            "Worker attempts, by how they ended.",
            ["task_type", "outcome"],
            registry=registry,
        )
        self.attempt_seconds = Histogram(
            "stepwise_worker_attempt_duration_seconds",
            "Worker attempt latency.",
            ["task_type"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.failures = Counter(
            "stepwise_worker_failures", "Attempts that failed (retried or not).", ["task_type"], registry=registry
        )
        registry.register(_LiveCollector(engine, events))
        self._operation_names: set[str] = set()
        # Each label set's children, looked up once: ``labels()`` checks and locks on every call.
        self._requests: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._operations: dict[tuple[str, str], tuple[Any, Any]] = {}

    # -- the engine's hooks ------------------------------------------------------------------------

    def transition_committed(self, kind: str, seconds: float, events: int) -> None:
        self.transitions.labels(kind).inc()
        self.transition_seconds.labels(kind).observe(seconds)
        if events:
            self.events_written.inc(events)

    def tasks_claimed(self, task_type: str, count: int) -> None:
        self.claims.labels(task_type).inc(count)

    def attempt_finished(self, task_type: str, outcome: AttemptOutcome, seconds: float) -> None:
        self.attempts.labels(task_type, outcome.value).inc()
        self.attempt_seconds.labels(task_type).observe(seconds)
        if outcome in _FAILED:
            self.failures.labels(task_type).inc()

    # -- requests and operations -------------------------------------------------------------------

    def request_answered(self, method: str, route: str, status: int, seconds: float) -> None:
        children = self._requests.get((method, route, status))
        if children is None:
            children = self._requests[method, route, status] = (
                self.http_requests.labels(method, route, str(status)), self.http_seconds.labels(method, route),
            )  # fmt: skip
        children[0].inc()
        children[1].observe(seconds)

    def operation_answered(self, label: str, kind: str, seconds: float) -> None:
        children = self._operations.get((label, kind))
        if children is None:
            children = self._operations[label, kind] = (
                self.operations.labels(label, kind), self.operation_seconds.labels(label, kind),
            )  # fmt: skip
        children[0].inc()
        children[1].observe(seconds)

    def operation_label(self, name: object) -> str:
        if not name or not isinstance(name, str):
            return ANONYMOUS
        if name in self._operation_names:
            return name
        if len(self._operation_names) >= MAX_OPERATION_NAMES:
            return OTHER
        self._operation_names.add(name)
        return name

    def operation_finished(
        self, execution: ExecutionContext, name: str | None, kind: str, seconds: float, failure: GraphQLError | None
    ) -> None:
        """Counts and times an operation, counts its top-level errors by code, and tells the log lines
        of the request which operation and user they belong to (schema.pipeline calls it, once each)."""
        self.operation_answered(self.operation_label(name), kind, seconds)
        result = execution.result
        errors = [failure] if failure else (result.errors if result else None) or execution.pre_execution_errors or []
        for error in errors:
            self.graphql_errors.labels(_error_code(error, execution.graphql_document is None, result)).inc()
        info = current_request()
        if info is not None:
            info.operation = name
            viewer = getattr(execution.context, "viewer", None)
            if viewer is not None:
                info.user_id = viewer.id

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _error_code(error: GraphQLError, unparsed: bool, result: Any) -> str:
    code = (error.extensions or {}).get("code")
    if isinstance(code, str):
        return code
    if unparsed:
        return "GRAPHQL_PARSE_FAILED"
    if isinstance(result, PreExecutionError) or error.path is None:
        return "GRAPHQL_VALIDATION_FAILED"
    return "INTERNAL_SERVER_ERROR"


class _LiveCollector(Collector):
    """What is read from the engine and the hub at scrape time rather than counted on the hot paths."""

    def __init__(self, engine: Engine, events: EventHub | None) -> None:
        self.engine = engine
        self.events = events

    def collect(self) -> Iterator[Metric]:
        pool: Any = self.engine.db.engine.sync_engine.pool
        connections = GaugeMetricFamily(
            "stepwise_db_pool_connections", "Database pool connections by state.", labels=["state"]
        )
        for state, reading in (("checked_out", "checkedout"), ("idle", "checkedin"), ("overflow", "overflow")):
            if hasattr(pool, reading):
                connections.add_metric([state], max(0, int(getattr(pool, reading)())))
        yield connections
        if hasattr(pool, "size"):
            yield GaugeMetricFamily("stepwise_db_pool_size", "Connections the pool keeps.", value=pool.size())
        yield CounterMetricFamily(
            "stepwise_event_numbering_rounds",
            "Event-numbering rounds run (PostgreSQL).",
            value=self.engine.sequencer.rounds,
        )
        hub = self.events
        if hub is None:
            return
        yield CounterMetricFamily("stepwise_events_read", "Events the hub read from the log.", value=hub.events_read)
        yield CounterMetricFamily("stepwise_events_delivered", "Events sent to subscriptions.", value=hub.delivered)
        yield GaugeMetricFamily(
            "stepwise_event_position", "The newest event position the hub has read.", value=hub.cursor
        )
        depths = hub.queue_depths()
        yield GaugeMetricFamily("stepwise_subscriptions", "Live subscriptions.", value=hub.subscriptions)
        yield GaugeMetricFamily(
            "stepwise_subscription_queued_events", "Events queued for all subscriptions.", value=sum(depths)
        )
        yield GaugeMetricFamily(
            "stepwise_subscription_queue_depth_max", "The longest subscription queue.", value=max(depths, default=0)
        )
        if self.engine.db.dialect == "postgresql":
            yield GaugeMetricFamily(
                "stepwise_event_listener_up", "Whether LISTEN is connected.", value=int(hub.listening)
            )


def metrics_route(metrics: Metrics, settings: Settings) -> Route:
    token = settings.metrics_token

    async def scrape(request: Request) -> Response:
        if token is not None:
            sent = request.headers.get("authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
                return PlainTextResponse(
                    "send Authorization: Bearer <STEPWISE_METRICS_TOKEN>",
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        elif not _loopback(request):
            return PlainTextResponse("set STEPWISE_METRICS_TOKEN to scrape from another host", status_code=403)
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", scrape, methods=["GET"])


def _loopback(request: Request) -> bool:
    if request.client is None:
        return False
    try:
        return ip_address(request.client.host).is_loopback
    except ValueError:
        return False
