"""The ``http`` executor against a real uvicorn/Starlette server on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import httpx
import pytest

from engine.errors import ExecutionFailedError
from engine.workers.executor import ExecutionContext, ExecutionResult, HostPolicy
from engine.workers.http import HttpExecutor
from tests.workers.conftest import Target
from tests.workers.support import TASK_ID, attempt

HTTP = HttpExecutor()


async def run(
    config: Mapping[str, Any],
    context: ExecutionContext,
    *,
    task_id: str = TASK_ID,
    secrets: dict[str, str] | None = None,
) -> Any:
    result = await HTTP.execute(attempt("http", config, task_id=task_id, secrets=secrets), context)
    assert isinstance(result, ExecutionResult)
    return result


async def test_json_response_is_parsed_and_the_request_recorded(target: Target, context: ExecutionContext) -> None:
    config = {
        "method": "POST",
        "url": f"{target.url}/echo",
        "query": {"page": 2, "tags": ["a", "b"], "flag": True},
        "headers": {"Authorization": "Bearer s3cr3t-token", "X-Trace": "abc"},
        "json": {"amount": 12.5, "note": "paid with s3cr3t-token"},
    }

    result = await run(config, context, secrets={"apiToken": "s3cr3t-token"})

    assert result.output["status"] == 200
    assert result.output["headers"]["content-type"] == "application/json"
    body = result.output["body"]
    assert body["method"] == "POST"
    assert body["json"] == {"amount": 12.5, "note": "paid with s3cr3t-token"}
    assert body["query"] == {"page": "2", "tags": "b", "flag": "true"}
    seen = target.last("/echo")
    assert seen["headers"]["authorization"] == "Bearer s3cr3t-token"
    assert seen["query"]["page"] == "2"
    # What is recorded keeps the shape of the call but neither the header nor the secret.
    assert result.request == {
        "method": "POST",
        "url": f"{target.url}/echo",
        "headers": {"Authorization": "Bearer ***", "X-Trace": "abc", "Idempotency-Key": TASK_ID},
        "query": {"page": "2", "tags": ["a", "b"], "flag": "true"},
        "json": {"amount": 12.5, "note": "paid with ***"},
    }
    assert "s3cr3t-token" not in repr(result.response)


async def test_the_target_sees_the_task_id_as_idempotency_key(target: Target, context: ExecutionContext) -> None:
    config = {"url": f"{target.url}/echo", "headers": {"idempotency-key": "not-the-task"}}

    result = await run(config, context, task_id="task-42")

    assert target.last("/echo")["headers"]["idempotency-key"] == "task-42"
    assert result.output["body"]["idempotencyKey"] == "task-42"


async def test_non_json_body_is_kept_as_text(target: Target, context: ExecutionContext) -> None:
    result = await run({"url": f"{target.url}/text"}, context)

    assert result.output["status"] == 200
    assert result.output["body"] == "plain words"


async def test_body_is_sent_as_is(target: Target, context: ExecutionContext) -> None:
    await run({"method": "PUT", "url": f"{target.url}/echo", "body": '{"raw": true}'}, context)

    assert target.last("/echo")["body"] == '{"raw": true}'


async def test_server_error_fails_retryably_with_request_and_response(
    target: Target, context: ExecutionContext
) -> None:
    with pytest.raises(ExecutionFailedError) as failure:
        await run({"method": "POST", "url": f"{target.url}/status/500", "json": {}}, context)

    error: Any = failure.value
    assert not error.non_retryable
    assert "answered 500" in error.message
    assert error.response["status"] == 500
    assert error.response["body"] == "boom"
    assert error.request["url"] == f"{target.url}/status/500"


async def test_client_error_is_not_retried(target: Target, context: ExecutionContext) -> None:
    with pytest.raises(ExecutionFailedError) as failure:
        await run({"url": f"{target.url}/status/404"}, context)

    assert failure.value.non_retryable


async def test_expect_status_accepts_what_it_lists(target: Target, context: ExecutionContext) -> None:
    result = await run({"url": f"{target.url}/status/404", "expectStatus": [200, 404]}, context)

    assert result.output["status"] == 404


async def test_redirects_are_not_followed(target: Target, context: ExecutionContext) -> None:
    result = await run({"url": f"{target.url}/redirect", "expectStatus": 302}, context)

    assert result.output["headers"]["location"] == "/echo"


async def test_timeout_fails_retryably_with_a_clear_message(target: Target, context: ExecutionContext) -> None:
    started = time.monotonic()
    with pytest.raises(ExecutionFailedError) as failure:
        await run({"url": f"{target.url}/slow?seconds=1", "timeoutMs": 150}, context)

    assert time.monotonic() - started < 0.9
    assert not failure.value.non_retryable
    assert failure.value.message == f"GET {target.url}/slow?seconds=1 timed out after 150 ms"


async def test_connection_refused_is_retryable(context: ExecutionContext) -> None:
    with pytest.raises(ExecutionFailedError) as failure:
        await run({"url": "http://127.0.0.1:9/nothing-listens-here", "timeoutMs": 2000}, context)

    assert not failure.value.non_retryable
    assert "ConnectError" in failure.value.message


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://metadata.google.internal/computeMetadata/v1/",
    ],
)
async def test_denied_hosts_are_refused_before_any_connection(url: str, clock: object) -> None:
    sent: list[httpx.Request] = []

    async def spy(request: httpx.Request) -> None:
        sent.append(request)

    async with httpx.AsyncClient(trust_env=False, event_hooks={"request": [spy]}) as client:
        context = ExecutionContext(http=client, clock=clock)  # type: ignore[arg-type]
        started = time.monotonic()
        with pytest.raises(ExecutionFailedError) as failure:
            await run({"url": url, "timeoutMs": 5000}, context)

    assert sent == []
    assert time.monotonic() - started < 0.5  # no connect attempt waiting out a timeout
    assert failure.value.non_retryable
    assert "denied" in failure.value.message
    assert failure.value.request == {"method": "GET", "url": url, "headers": {"Idempotency-Key": TASK_ID}, "query": {}}


async def test_a_name_that_resolves_into_a_denied_network_is_refused(target: Target, context: ExecutionContext) -> None:
    url = target.url.replace("127.0.0.1", "localhost") + "/echo"
    context = replace(context, host_policy=HostPolicy(deny=("127.0.0.0/8", "::1/128")))

    with pytest.raises(ExecutionFailedError) as failure:
        await run({"url": url}, context)

    assert failure.value.non_retryable
    assert "in denied network" in failure.value.message
    assert not [seen for seen in target.seen if seen["path"] == "/echo" and "localhost" in seen["headers"]["host"]]


async def test_allow_list_admits_listed_networks_only(target: Target, context: ExecutionContext) -> None:
    allowed = replace(context, host_policy=HostPolicy(allow=("127.0.0.1/32",)))
    elsewhere = replace(context, host_policy=HostPolicy(allow=("10.0.0.0/8", "api.example.com")))

    result = await run({"url": f"{target.url}/echo"}, allowed)
    with pytest.raises(ExecutionFailedError) as failure:
        await run({"url": f"{target.url}/echo"}, elsewhere)

    assert result.output["status"] == 200
    assert failure.value.non_retryable
    assert "allow list" in failure.value.message


async def test_allow_list_admits_listed_names(target: Target, context: ExecutionContext) -> None:
    by_name = replace(context, host_policy=HostPolicy(allow=("localhost",)))

    result = await run({"url": target.url.replace("127.0.0.1", "localhost") + "/echo"}, by_name)

    assert result.output["status"] == 200


async def test_a_config_that_renders_badly_fails_for_good(context: ExecutionContext) -> None:
    with pytest.raises(ExecutionFailedError) as failure:
        await run({"url": "ftp://example.com/file", "timeoutMs": "soon"}, context)

    assert failure.value.non_retryable
    assert "'url'" in failure.value.message and "'timeoutMs'" in failure.value.message
