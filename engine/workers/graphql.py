"""The ``graphql`` system task: one GraphQL operation sent with the ``gql`` client over httpx.

Config: ``url``, ``query``, ``variables``, ``operationName``, ``headers`` and ``timeoutMs`` (default 10,000).
The result stored under ``storeAs`` is the response's ``data``. A response with ``errors`` fails the attempt
(retryable: resolvers fail for passing reasons too) and records ``{data, errors}`` as the response.

The transport reuses the context's :class:`httpx.AsyncClient` rather than opening a client per attempt, so
GraphQL calls share its connection pool and settings, as HTTP tasks do: the same host policy on every
connection, the same cap on response bodies, the same ``Idempotency-Key``, no redirects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import graphql as graphql_core
import httpx
from gql import Client, GraphQLRequest
from gql.transport.exceptions import (
    TransportConnectionFailed,
    TransportError,
    TransportQueryError,
    TransportServerError,
)
from gql.transport.httpx import HTTPXAsyncTransport

from engine.definitions.model import Node
from engine.errors import ExecutionFailedError
from engine.workers.config_checks import (
    as_text,
    check_int,
    check_keys,
    check_mapping,
    check_string,
    check_url,
    pending,
    require_valid,
)
from engine.workers.executor import ExecutionRequest, ExecutionResult, SystemTaskContext, WaitUntil
from engine.workers.http import DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS, retryable_status
from engine.workers.redaction import redact, redact_headers, redact_text

KEYS = ("url", "query", "variables", "headers", "operationName", "timeoutMs")


def config_problems(config: Mapping[str, Any], *, rendered: bool) -> list[str]:
    problems = check_keys(config, ("url", "query"), KEYS)
    problems += check_url(config, "url", rendered=rendered)
    problems += check_string(config, "query", rendered=rendered, non_empty=True)
    query = config.get("query")
    if isinstance(query, str) and query.strip() and not pending(query, rendered):
        try:
            graphql_core.parse(query)
        except graphql_core.GraphQLError as exc:
            problems.append(f"config 'query' does not parse: {exc.message}")
    problems += check_mapping(config, "variables", rendered=rendered)
    problems += check_mapping(config, "headers", rendered=rendered, scalar_values=True)
    problems += check_string(config, "operationName", rendered=rendered)
    problems += check_int(config, "timeoutMs", rendered=rendered, maximum=MAX_TIMEOUT_MS)
    return problems


class _ContextTransport(HTTPXAsyncTransport):
    """gql's httpx transport, lent the context's client instead of creating (and closing) its own."""

    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        super().__init__(url=url)
        self._lent = client

    async def connect(self) -> None:
        self.client = self._lent

    async def close(self) -> None:
        self.client = None  # the client belongs to the context, which closes it


class GraphQLExecutor:
    """Runs ``graphql`` nodes: one operation per attempt, checked against the host policy as it connects."""

    type = "graphql"
    task_type = "GRAPHQL"
    uses_secrets = True  # headers, URLs and bodies may render ``{{ secrets.NAME }}``

    def validate(self, node: Node) -> list[str]:
        return config_problems(node.config, rendered=False)

    async def execute(self, request: ExecutionRequest, context: SystemTaskContext) -> ExecutionResult | WaitUntil:
        config, secrets = request.config, request.secrets
        require_valid(config_problems(config, rendered=True), secrets)
        url = httpx.URL(str(config["url"]))
        headers = {str(k): as_text(v) for k, v in dict(config.get("headers") or {}).items()}
        headers = {k: v for k, v in headers.items() if k.lower() != "idempotency-key"}
        headers["Idempotency-Key"] = request.task_id
        variables = dict(config.get("variables") or {})
        operation_name = config.get("operationName")
        timeout_ms = int(config.get("timeoutMs", DEFAULT_TIMEOUT_MS))
        recorded = redact(
            {"url": str(url), "query": config["query"], "variables": variables, "operationName": operation_name,
             "headers": redact_headers(headers)},
            secrets,
        )  # fmt: skip
        label = redact_text(f"GraphQL call to {url}", secrets)

        def failed(message: str, *, non_retryable: bool = False, response: object = None) -> ExecutionFailedError:
            return ExecutionFailedError(
                redact_text(message, secrets), non_retryable=non_retryable, request=recorded, response=response
            )

        try:
            operation = GraphQLRequest(config["query"], variable_values=variables, operation_name=operation_name)
        except graphql_core.GraphQLError as exc:
            raise failed(f"the query does not parse: {exc.message}", non_retryable=True) from exc
        # The client's own timeout is off: one asyncio deadline covers resolving the host and the call.
        client = Client(transport=_ContextTransport(str(url), context.http), execute_timeout=None)
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                async with client as session:
                    data = await session.execute(
                        operation,
                        extra_args={"headers": headers, "timeout": timeout_ms / 1000, "follow_redirects": False},
                    )
        except TimeoutError as exc:
            raise failed(f"{label} timed out after {timeout_ms} ms") from exc
        except TransportQueryError as exc:
            response = redact({"data": exc.data, "errors": exc.errors}, secrets)
            raise failed(f"{label} returned errors: {_first_message(exc.errors)}", response=response) from exc
        except TransportServerError as exc:
            status = exc.code or 0
            message = f"{label} answered {status} without a GraphQL result"
            raise failed(message, non_retryable=not retryable_status(status), response={"status": status}) from exc
        except TransportConnectionFailed as exc:
            cause = exc.__cause__
            if isinstance(cause, ExecutionFailedError):  # the host policy or the body's size limit
                raise failed(f"{label}: {cause.message}", non_retryable=cause.non_retryable) from exc
            if isinstance(cause, httpx.TimeoutException):
                raise failed(f"{label} timed out after {timeout_ms} ms") from exc
            raise failed(f"{label} failed: {exc}") from exc
        except TransportError as exc:  # e.g. an answer that is not a GraphQL result
            raise failed(f"{label} failed: {exc}") from exc
        return ExecutionResult(output=data, request=recorded, response=redact({"data": data}, secrets))


def _first_message(errors: list[Any] | None) -> str:
    first = (errors or [None])[0]
    if isinstance(first, Mapping):
        return str(first.get("message", first))
    return str(first)
