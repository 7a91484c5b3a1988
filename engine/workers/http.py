"""The ``http`` system task: one HTTP request through the context's :class:`httpx.AsyncClient`.

Config: ``method`` (default ``GET``), ``url``, ``headers``, ``query``, ``json`` or ``body``, ``timeoutMs``
(default 10,000) and ``expectStatus`` (a status or a list; default any 2xx). The result stored under
``storeAs`` is ``{status, headers, body}``, the body parsed when the response says it is JSON.

Every request carries ``Idempotency-Key: <task id>``: execution is at-least-once, so a target that dedupes on
that header sees each task once however often it is retried or re-run after a crash. Every connection is
checked against the host policy (:mod:`engine.workers.hostpolicy`), redirects are not followed, and a
response body larger than the context's ``max_body_bytes`` ends the attempt.

Failures, and whether a retry may help:

- host refused by the policy, a body over the size limit, invalid config, unexpected 4xx (except
  408/425/429), unexpected 1xx-3xx: non-retryable;
- timeout, connection failure, 5xx, 408, 425, 429: retryable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

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
from engine.workers.redaction import redact, redact_headers, redact_text

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
DEFAULT_TIMEOUT_MS = 10_000
# Longer calls belong in a callback pattern (an HTTP task that starts the work, a signal that ends it).
MAX_TIMEOUT_MS = 300_000
KEYS = ("method", "url", "headers", "query", "json", "body", "timeoutMs", "expectStatus")
# Client errors that mean "not now" rather than "never".
RETRYABLE_CLIENT_ERRORS = frozenset({408, 425, 429})


def retryable_status(status: int) -> bool:
    """Whether an unexpected status may turn out differently on a later attempt."""
    return status >= 500 or status in RETRYABLE_CLIENT_ERRORS


def parse_body(response: httpx.Response) -> Any:
    """The body as JSON when the content type says JSON (and it parses), else as text."""
    content_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type == "application/json" or content_type.endswith("+json"):
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            pass  # a server that mislabels its body: keep the text rather than fail the task
    return response.text


def config_problems(config: Mapping[str, Any], *, rendered: bool) -> list[str]:
    problems = check_keys(config, ("url",), KEYS)
    if "json" in config and "body" in config:
        problems.append("config may have 'json' or 'body', not both")
    method = config.get("method", "GET")
    if not pending(method, rendered) and (not isinstance(method, str) or method.upper() not in METHODS):
        problems.append(f"config 'method' must be one of {', '.join(sorted(METHODS))}, not {method!r}")
    problems += check_url(config, "url", rendered=rendered)
    problems += check_mapping(config, "headers", rendered=rendered, scalar_values=True)
    problems += check_mapping(config, "query", rendered=rendered, scalar_values=True, lists=True)
    problems += check_string(config, "body", rendered=rendered)
    problems += check_int(config, "timeoutMs", rendered=rendered, maximum=MAX_TIMEOUT_MS)
    expect = config.get("expectStatus")
    if "expectStatus" in config and not pending(expect, rendered):
        statuses = expect if isinstance(expect, list) else [expect]
        if not statuses or not all(_is_status(status) for status in statuses):
            problems.append("config 'expectStatus' must be an HTTP status (100-599) or a non-empty list of them")
    return problems


def _is_status(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599


@dataclass(frozen=True)
class _Call:
    """A rendered, checked config, ready to send."""

    method: str
    url: str
    headers: dict[str, str]
    query: dict[str, str | list[str]]
    json: Any
    body: str | None
    timeout_ms: int
    expect: frozenset[int] | None

    @classmethod
    def from_config(cls, config: Mapping[str, Any], task_id: str) -> _Call:
        headers = {str(name): as_text(value) for name, value in dict(config.get("headers") or {}).items()}
        # The engine's key wins over one in the config: deduplication must see the task id.
        headers = {name: value for name, value in headers.items() if name.lower() != "idempotency-key"}
        headers["Idempotency-Key"] = task_id
        query = {
            str(name): [as_text(v) for v in value] if isinstance(value, list) else as_text(value)
            for name, value in dict(config.get("query") or {}).items()
        }
        expect = config.get("expectStatus")
        return cls(
            method=str(config.get("method", "GET")).upper(),
            url=str(config["url"]),
            headers=headers,
            query=query,
            json=config.get("json"),
            body=config.get("body"),
            timeout_ms=int(config.get("timeoutMs", DEFAULT_TIMEOUT_MS)),
            expect=None if expect is None else frozenset(expect if isinstance(expect, list) else [expect]),
        )

    def recorded(self, config: Mapping[str, Any]) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "method": self.method,
            "url": self.url,
            "headers": redact_headers(self.headers),
            "query": self.query,
        }
        if "json" in config:
            doc["json"] = self.json
        if "body" in config:
            doc["body"] = self.body
        return doc

    def expected(self, status: int) -> bool:
        return 200 <= status < 300 if self.expect is None else status in self.expect


class HttpExecutor:
    """Runs ``http`` nodes: one request per attempt, checked against the host policy as it connects."""

    type = "http"
    task_type = "HTTP"
    uses_secrets = True  # headers, URLs and bodies may render ``{{ secrets.NAME }}``

    def validate(self, node: Node) -> list[str]:
        return config_problems(node.config, rendered=False)

    async def execute(self, request: ExecutionRequest, context: SystemTaskContext) -> ExecutionResult | WaitUntil:
        secrets = request.secrets
        require_valid(config_problems(request.config, rendered=True), secrets)
        call = _Call.from_config(request.config, request.task_id)
        recorded = redact(call.recorded(request.config), secrets)
        label = redact_text(f"{call.method} {call.url}", secrets)
        try:
            # One deadline for the whole call: httpx's own timeout applies per phase (connect, each read), so a
            # server that trickles its answer byte by byte would otherwise never time out.
            async with asyncio.timeout(call.timeout_ms / 1000):
                response = await context.http.request(
                    call.method,
                    # Merged: httpx's ``params`` would replace a query string the URL already has.
                    httpx.URL(call.url).copy_merge_params(call.query),
                    headers=call.headers,
                    json=call.json if "json" in request.config else None,
                    content=call.body.encode() if call.body is not None else None,
                    timeout=call.timeout_ms / 1000,
                    follow_redirects=False,
                )
        except ExecutionFailedError as exc:  # the host policy or the body's size limit (engine.workers.hostpolicy)
            message = redact_text(f"{label}: {exc.message}", secrets)
            raise ExecutionFailedError(message, non_retryable=exc.non_retryable, request=recorded) from exc
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise ExecutionFailedError(f"{label} timed out after {call.timeout_ms} ms", request=recorded) from exc
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            message = redact_text(f"{label} cannot be sent: {exc}", secrets)
            raise ExecutionFailedError(message, non_retryable=True, request=recorded) from exc
        except httpx.HTTPError as exc:
            message = redact_text(f"{label} failed: {type(exc).__name__}: {exc}", secrets)
            raise ExecutionFailedError(message, request=recorded) from exc

        output = {"status": response.status_code, "headers": dict(response.headers.items()),
                  "body": parse_body(response)}  # fmt: skip
        recorded_response = redact({**output, "headers": redact_headers(output["headers"])}, secrets)
        if not call.expected(response.status_code):
            wanted = "a 2xx status" if call.expect is None else f"status {sorted(call.expect)}"
            raise ExecutionFailedError(
                f"{label} answered {response.status_code}, expected {wanted}",
                non_retryable=not retryable_status(response.status_code),
                request=recorded,
                response=recorded_response,
            )
        return ExecutionResult(output=output, request=recorded, response=recorded_response)
