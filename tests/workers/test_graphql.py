"""The ``graphql`` executor (gql over httpx) against a real Strawberry app served by uvicorn."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from engine.errors import ExecutionFailedError
from engine.workers.executor import ExecutionResult, SystemTaskContext
from engine.workers.graphql import GraphQLExecutor
from engine.workers.hostpolicy import HostPolicy
from tests.workers.conftest import Target
from tests.workers.support import attempt

GRAPHQL = GraphQLExecutor()


async def run(config: dict[str, Any], context: SystemTaskContext, secrets: dict[str, str] | None = None) -> Any:
    result = await GRAPHQL.execute(attempt("graphql", config, secrets=secrets), context)
    assert isinstance(result, ExecutionResult)
    return result


async def test_data_is_the_output(target: Target, context: SystemTaskContext) -> None:
    config = {
        "url": f"{target.url}/graphql",
        "query": "query Greet($name: String!) { greet(name: $name) } query Other { __typename }",
        "operationName": "Greet",
        "variables": {"name": "Alice"},
        "headers": {"X-Api-Key": "key-123"},
    }

    result = await run(config, context, secrets={"key": "key-123"})

    assert result.output == {"greet": "Hello, Alice!"}
    assert result.response == {"data": {"greet": "Hello, Alice!"}}
    assert result.request["headers"] == {"X-Api-Key": "***", "Idempotency-Key": "task-0001"}
    assert result.request["operationName"] == "Greet"
    seen = target.last("/graphql")
    assert seen["headers"]["x-api-key"] == "key-123"
    assert seen["headers"]["idempotency-key"] == "task-0001"


async def test_headers_reach_the_resolvers(target: Target, context: SystemTaskContext) -> None:
    config = {"url": f"{target.url}/graphql", "query": '{ header(name: "x-tenant") }', "headers": {"X-Tenant": "t1"}}

    result = await run(config, context)

    assert result.output == {"header": "t1"}


async def test_errors_fail_the_attempt_and_are_recorded(target: Target, context: SystemTaskContext) -> None:
    config = {"url": f"{target.url}/graphql", "query": '{ greet(name: "x") broken }'}

    with pytest.raises(ExecutionFailedError) as failure:
        await run(config, context)

    error: Any = failure.value
    assert not error.non_retryable
    assert "the resolver broke" in error.message
    assert error.response["data"] is None  # a non-null field failed, so data is null
    assert [e["message"] for e in error.response["errors"]] == ["the resolver broke"]
    assert error.request["query"] == config["query"]


async def test_validation_errors_from_the_server_are_recorded(target: Target, context: SystemTaskContext) -> None:
    with pytest.raises(ExecutionFailedError) as failure:
        await run({"url": f"{target.url}/graphql", "query": "{ nope }"}, context)

    error: Any = failure.value
    assert "nope" in error.message
    assert error.response["errors"]


async def test_a_path_that_is_not_graphql_fails(target: Target, context: SystemTaskContext) -> None:
    with pytest.raises(ExecutionFailedError) as failure:
        await run({"url": f"{target.url}/status/503", "query": "{ __typename }"}, context)

    assert "503" in failure.value.message
    assert not failure.value.non_retryable


async def test_timeout(target: Target, context: SystemTaskContext) -> None:
    with pytest.raises(ExecutionFailedError) as failure:
        await run({"url": f"{target.url}/slow?seconds=1", "query": "{ __typename }", "timeoutMs": 150}, context)

    assert "timed out after 150 ms" in failure.value.message
    assert not failure.value.non_retryable


async def test_host_policy_applies(target: Target, context: SystemTaskContext) -> None:
    denied = replace(context, host_policy=HostPolicy(deny=("127.0.0.0/8",)))

    with pytest.raises(ExecutionFailedError) as failure:
        await run({"url": f"{target.url}/graphql", "query": "{ __typename }"}, denied)

    assert failure.value.non_retryable
    assert "denied" in failure.value.message


async def test_the_context_client_stays_open(target: Target, context: SystemTaskContext) -> None:
    await run({"url": f"{target.url}/graphql", "query": "{ __typename }"}, context)

    assert not context.http.is_closed
    response = await context.http.get(f"{target.url}/text")
    assert response.text == "plain words"
