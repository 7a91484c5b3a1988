"""``/metrics``: what a scrape after a scenario counts, and who may scrape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from engine.clock import ManualClock
from engine.transitions.engine import Engine
from engine.workers.builtin import BUILTIN_EXECUTORS
from engine.workers.executor import SystemTaskContext
from engine.workers.worker import Worker
from server.app import create_app
from server.auth import issue_token
from server.settings import Settings
from tests.server.conftest import GraphQL
from tests.server.live import EVENT_FIELDS, AsgiSocket, wait_until
from tests.workers.support import LOOPBACK_ALLOWED

FLOW = {
    "key": "measured", "start": "say",
    "nodes": [
        {"id": "say", "type": "echo", "storeAs": "said", "config": {"output": {"hello": "world"}}},
        {"id": "call", "type": "http", "retry": {"maxAttempts": 1},
         "config": {"method": "GET", "url": "http://127.0.0.1:9/unreachable", "timeoutMs": 2000}},
    ],
    "edges": [{"from": "say", "to": "call"}],
}  # fmt: skip
START = """mutation StartMeasured { startWorkflow(input: {definitionKey: "measured"}) {
  __typename ... on StartWorkflowSuccess { workflowInstance { id } } } }"""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def test_a_scrape_after_a_scenario_counts_what_happened(
    app: Starlette, app_engine: Engine, client: httpx.AsyncClient, gql: GraphQL, settings: Settings
) -> None:
    await app_engine.deploy(FLOW)
    async with AsgiSocket(app, issue_token(settings, "dana")) as socket:
        await socket.subscribe("1", f"subscription {{ taskEvents {{ {EVENT_FIELDS} }} }}")
        started = await gql(START, user="dana")
        assert started["data"]["startWorkflow"]["__typename"] == "StartWorkflowSuccess"
        assert (await socket.next())["type"] == "next"
        anonymous = await gql("query WhoAmI { me { id } }")
        assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        await gql("{ me {", user="dana")

        async with SystemTaskContext(clock=app_engine.clock, host_policy=LOOPBACK_ALLOWED) as context:
            worker = Worker(app_engine, {e.type: e for e in BUILTIN_EXECUTORS}, context)
            assert await worker.run_until_idle() == 2

        live = await scrape(client)
        assert value(live, "stepwise_subscriptions") == 1
        assert value(live, "stepwise_events_delivered_total") >= 1

    await wait_until(lambda: app.state.events.subscriptions == 0, "the subscription to end")
    found = await scrape(client)
    assert value(found, "stepwise_graphql_operations_total", operation="StartMeasured", type="mutation") == 1
    assert value(found, "stepwise_graphql_operations_total", operation="WhoAmI", type="query") == 1
    assert value(found, "stepwise_graphql_operations_total", operation="anonymous", type="subscription") == 1
    assert value(found, "stepwise_graphql_operation_duration_seconds_count", operation="StartMeasured",
                 type="mutation") == 1  # fmt: skip
    assert value(found, "stepwise_graphql_errors_total", code="UNAUTHENTICATED") == 1
    assert value(found, "stepwise_graphql_errors_total", code="GRAPHQL_PARSE_FAILED") == 1
    assert value(found, "stepwise_transitions_total", kind="start") == 1
    assert value(found, "stepwise_transitions_total", kind="transition") == 2  # echo done, http failed
    assert value(found, "stepwise_transition_duration_seconds_count", kind="start") == 1
    assert value(found, "stepwise_events_written_total") >= 3
    assert value(found, "stepwise_worker_claims_total", task_type="echo") == 1
    assert value(found, "stepwise_worker_claims_total", task_type="http") == 1
    assert value(found, "stepwise_worker_attempts_total", task_type="echo", outcome="completed") == 1
    assert value(found, "stepwise_worker_attempts_total", task_type="http", outcome="failed") == 1
    assert value(found, "stepwise_worker_failures_total", task_type="http") == 1
    assert ("stepwise_worker_failures_total", frozenset({("task_type", "echo")})) not in found
    assert value(found, "stepwise_http_requests_total", method="POST", route="/graphql", status="200") == 3
    assert value(found, "stepwise_http_request_duration_seconds_count", method="GET", route="/metrics") == 1
    assert value(found, "stepwise_subscriptions") == 0
    assert value(found, "stepwise_events_read_total") >= 3
    assert value(found, "stepwise_event_position") >= 3
    assert value(found, "stepwise_db_pool_connections", state="checked_out") >= 0
    assert value(found, "stepwise_subscription_queue_depth_max") == 0


async def test_operation_names_beyond_the_limit_are_counted_together(
    app: Starlette, client: httpx.AsyncClient, gql: GraphQL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("server.metrics.MAX_OPERATION_NAMES", 2)
    for name in ("One", "Two", "Three", "Four"):
        await gql(f"query {name} {{ __typename }}")
    found = await scrape(client)
    assert value(found, "stepwise_graphql_operations_total", operation="One", type="query") == 1
    assert value(found, "stepwise_graphql_operations_total", operation="other", type="query") == 2


@pytest.fixture
async def guarded(settings: Settings, clock: ManualClock) -> AsyncIterator[Starlette]:
    app = create_app(replace(settings, metrics_token="scrape-token-0123456789"), clock=clock)
    async with app.router.lifespan_context(app):
        yield app


async def test_a_metrics_token_is_required_when_set(guarded: Starlette) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded), base_url="http://t") as http:
        refused = await http.get("/metrics")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert (await http.get("/metrics", headers={"authorization": "Bearer wrong"})).status_code == 401
        allowed = await http.get("/metrics", headers={"authorization": "Bearer scrape-token-0123456789"})
        assert allowed.status_code == 200 and "stepwise_http_requests_total" in allowed.text


async def test_without_a_token_only_loopback_clients_may_scrape(app: Starlette) -> None:
    remote = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=remote, base_url="http://t") as http:
        refused = await http.get("/metrics")
        assert refused.status_code == 403 and "STEPWISE_METRICS_TOKEN" in refused.text


async def test_metrics_can_be_turned_off(settings: Settings, clock: ManualClock) -> None:
    app = create_app(replace(settings, metrics=False), clock=clock)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            assert (await http.get("/metrics")).status_code == 404
            assert (await http.post("/graphql", json={"query": "{ __typename }"})).status_code == 200
