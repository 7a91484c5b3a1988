"""The ``http`` executor against a real uvicorn/Starlette server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from engine.clock import ManualClock
from engine.errors import ExecutionFailedError
from engine.workers.executor import ExecutionResult, SystemTaskContext
from engine.workers.hostpolicy import HostPolicy
from engine.workers.http import HttpExecutor
from tests.workers.conftest import Target
from tests.workers.support import TASK_ID, attempt

HTTP = HttpExecutor()


async def run(
    config: Mapping[str, Any],
    context: SystemTaskContext,
    *,
    task_id: str = TASK_ID,
    secrets: dict[str, str] | None = None,
) -> Any:
    result = await HTTP.execute(attempt("http", config, task_id=task_id, secrets=secrets), context)
    assert isinstance(result, ExecutionResult)
    return result


async def test_json_response_is_parsed_and_the_request_recorded(target: Target, context: SystemTaskContext) -> None:
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


async def test_the_target_sees_the_task_id_as_idempotency_key(target: Target, context: SystemTaskContext) -> None:
    config = {"url": f"{target.url}/echo", "headers": {"idempotency-key": "not-the-task"}}

    result = await run(config, context, task_id="task-42")

    assert target.last("/echo")["headers"]["idempotency-key"] == "task-42"
    assert result.output["body"]["idempotencyKey"] == "task-42"


async def test_non_json_body_is_kept_as_text(target: Target, context: SystemTaskContext) -> None:
    result = await run({"url": f"{target.url}/text"}, context)

    assert result.output["status"] == 200
    assert result.output["body"] == "plain words"


async def test_body_is_sent_as_is(target: Target, context: SystemTaskContext) -> None:
    await run({"method": "PUT", "url": f"{target.url}/echo", "body": '{"raw": true}'}, context)

    assert target.last("/echo")["body"] == '{"raw": true}'


async def test_server_error_fails_retryably_with_request_and_response(
    target: Target, context: SystemTaskContext
) -> None:
    with pytest.raises(ExecutionFailedError) as failure:
        await run({"method": "POST", "url": f"{target.url}/status/500", "json": {}}, context)

    error: Any = failure.value
    assert not error.non_retryable
    assert "answered 500" in error.message
    assert error.response["status"] == 500
    assert error.response["body"] == "boom"
    assert error.request["url"] == f"{target.url}/status/500"


async def test_client_error_is_not_retried(target: Target, context: SystemTaskContext) -> None:
    with pytest.raises(ExecutionFailedError) as failure:
        await run({"url": f"{target.url}/status/404"}, context)

    assert failure.value.non_retryable


async def test_expect_status_accepts_what_it_lists(target: Target, context: SystemTaskContext) -> None:
    result = await run({"url": f"{target.url}/status/404", "expectStatus": [200, 404]}, context)

    assert result.output["status"] == 404


async def test_redirects_are_not_followed(target: Target, context: SystemTaskContext) -> None:
    result = await run({"url": f"{target.url}/redirect", "expectStatus": 302}, context)

    assert result.output["headers"]["location"] == "/echo"


async def test_timeout_fails_retryably_with_a_clear_message(target: Target, context: SystemTaskContext) -> None:
    started = time.monotonic()
    with pytest.raises(ExecutionFailedError) as failure:
        await run({"url": f"{target.url}/slow?seconds=1", "timeoutMs": 150}, context)

    assert time.monotonic() - started < 0.9
    assert not failure.value.non_retryable
    assert failure.value.message == f"GET {target.url}/slow?seconds=1 timed out after 150 ms"


async def test_connection_refused_is_retryable(context: SystemTaskContext) -> None:
    with pytest.raises(ExecutionFailedError) as failure:
        await run({"url": "http://127.0.0.1:9/nothing-listens-here", "timeoutMs": 2000}, context)

    assert not failure.value.non_retryable
    assert "ConnectError" in failure.value.message


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data/",
        "http://168.63.129.16/machine",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://127.0.0.1:5432/",
        "http://127.1.2.3/",
        "http://[::1]/",
        "http://0.0.0.0/",
        "http://[::]/",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://[fe80::1]/",
        "http://[fd00::1]/",
        "http://[fc00::1]/",
        "http://[64:ff9b::a01:203]/",
        "http://[::7f00:1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://[2002:7f00:1::]/",
        "http://224.0.0.1/",
    ],
)
async def test_non_public_and_metadata_addresses_are_refused_by_default(
    url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up: list[str] = []
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def spy(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(host)
        return await real(host, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", spy)
    context = SystemTaskContext(clock=clock)  # the default policy
    try:
        with pytest.raises(ExecutionFailedError) as failure:
            await run({"url": url, "timeoutMs": 5000}, context)
    finally:
        await context.aclose()

    # Refused before any connect (a connect to 10.1.2.3 would wait out the timeout instead), and a denied
    # name is not even looked up.
    assert failure.value.non_retryable
    assert "is not a public address" in failure.value.message or "cloud metadata" in failure.value.message
    assert looked_up == []
    assert failure.value.request == {"method": "GET", "url": url, "headers": {"Idempotency-Key": TASK_ID}, "query": {}}


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "017700000001", "127.1"])
async def test_other_spellings_of_loopback_are_refused_as_what_they_resolve_to(host: str, clock: ManualClock) -> None:
    async with SystemTaskContext(clock=clock) as context:
        with pytest.raises(ExecutionFailedError) as failure:
            await run({"url": f"http://{host}:9/", "timeoutMs": 5000}, context)

    assert failure.value.non_retryable
    assert "(127.0.0.1) is not a public address" in failure.value.message


async def test_the_default_policy_refuses_a_loopback_server(target: Target, clock: ManualClock) -> None:
    context = SystemTaskContext(clock=clock)
    seen = len(target.seen)
    try:
        with pytest.raises(ExecutionFailedError) as failure:
            await run({"url": f"{target.url}/echo"}, context)
        with pytest.raises(ExecutionFailedError) as by_name:
            await run({"url": target.url.replace("127.0.0.1", "localhost") + "/echo"}, context)
    finally:
        await context.aclose()

    assert failure.value.non_retryable and by_name.value.non_retryable
    assert "'127.0.0.1' is not a public address" in failure.value.message
    assert "'localhost' (" in by_name.value.message and "is not a public address" in by_name.value.message
    assert len(target.seen) == seen


async def test_the_allow_list_reopens_an_address_on_one_port(target: Target, context: SystemTaskContext) -> None:
    port = int(target.url.rsplit(":", 1)[1])
    on_port = replace(context, host_policy=HostPolicy(allow=(f"127.0.0.1:{port}",)))
    other_port = replace(context, host_policy=HostPolicy(allow=(f"127.0.0.1:{port + 1}", "10.0.0.0/8")))

    try:
        result = await run({"url": f"{target.url}/echo"}, on_port)
        with pytest.raises(ExecutionFailedError) as failure:
            await run({"url": f"{target.url}/echo"}, other_port)
    finally:
        await on_port.aclose()
        await other_port.aclose()

    assert result.output["status"] == 200
    assert failure.value.non_retryable
    assert "allow list does not name it" in failure.value.message


async def test_the_allow_list_reopens_a_name_and_its_addresses(target: Target, context: SystemTaskContext) -> None:
    by_name = replace(context, host_policy=HostPolicy(allow=("localhost",)))

    try:
        result = await run({"url": target.url.replace("127.0.0.1", "localhost") + "/echo"}, by_name)
    finally:
        await by_name.aclose()

    assert result.output["status"] == 200


async def test_deny_wins_and_metadata_cannot_be_reopened(target: Target, context: SystemTaskContext) -> None:
    denied = replace(context, host_policy=HostPolicy(allow=("127.0.0.1", "169.254.0.0/16"), deny=("127.0.0.0/8",)))

    try:
        with pytest.raises(ExecutionFailedError) as loopback:
            await run({"url": f"{target.url}/echo"}, denied)
        with pytest.raises(ExecutionFailedError) as metadata:
            await run({"url": "http://169.254.169.254/"}, denied)
    finally:
        await denied.aclose()

    assert "is denied by the host policy" in loopback.value.message
    assert "cloud metadata endpoint" in metadata.value.message


async def test_a_public_name_on_the_deny_list_is_not_looked_up(
    context: SystemTaskContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up: list[str] = []

    async def spy(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(host)
        raise AssertionError("a denied name must not be resolved")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", spy)
    denied = replace(context, host_policy=HostPolicy(deny=("*.example.com",)))

    try:
        with pytest.raises(ExecutionFailedError) as failure:
            await run({"url": "https://api.example.com/v1"}, denied)
    finally:
        await denied.aclose()

    assert failure.value.non_retryable
    assert "'api.example.com' is denied by the host policy" in failure.value.message
    assert looked_up == []


async def test_a_config_that_renders_badly_fails_for_good(context: SystemTaskContext) -> None:
    with pytest.raises(ExecutionFailedError) as failure:
        await run({"url": "ftp://example.com/file", "timeoutMs": "soon"}, context)

    assert failure.value.non_retryable
    assert "'url'" in failure.value.message and "'timeoutMs'" in failure.value.message


async def test_query_parameters_join_those_already_in_the_url(target: Target, context: SystemTaskContext) -> None:
    await run({"url": f"{target.url}/echo?page=2&sort=name", "query": {"tag": "a"}}, context)
    await run({"url": f"{target.url}/echo?only=here"}, context)

    assert [seen["query"] for seen in target.seen if seen["path"] == "/echo"][-2:] == [
        {"page": "2", "sort": "name", "tag": "a"},
        {"only": "here"},
    ]
