"""retryTask with a patch through the real HTTP app: an admin fixes a failed HTTP task's
config or the instance data it renders from, and a real server on loopback then gets the call; a
patch that would carry a secret, or is malformed, is refused and changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from engine.storage.models import task_events
from engine.transitions.engine import Engine
from engine.workers.builtin import BUILTIN_EXECUTORS
from engine.workers.executor import SystemTaskContext
from engine.workers.worker import Worker
from server.settings import Settings
from tests.server.conftest import GraphQL
from tests.server.live import serving
from tests.server.test_task_api import snapshot
from tests.workers.support import LOOPBACK_ALLOWED

SECRET = "s3cr3t-token-value"
# Nothing listens on port 9 (discard): the one attempt fails at once, and the task is FAILED.
DEFINITION = {"key": "patched_call", "start": "call", "nodes": [
    {"id": "call", "type": "http", "storeAs": "answer", "retry": {"maxAttempts": 1},
     "config": {"method": "GET", "url": "{{ base }}/orders/{{ order }}"}}]}  # fmt: skip
RETRY = """mutation($id: ID!, $patch: JSON) { retryTask(input: {taskId: $id, patch: $patch}) {
  __typename ... on TaskSuccess { task { status input } }
  ... on ValidationFailed { code fieldErrors { field code } } ... on Error { code message } } }"""
INSTANCE = "query($id: ID!) { workflowInstance(id: $id) { status data } }"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, secrets={"API_TOKEN": SECRET})


@pytest.fixture
async def receiver() -> AsyncIterator[str]:
    async def order(request: Request) -> JSONResponse:
        return JSONResponse({"order": request.path_params["order"]})

    async with serving(Starlette(routes=[Route("/orders/{order}", order)])) as ws_url:
        yield ws_url.replace("ws://", "http://").removesuffix("/graphql")


async def run_worker(engine: Engine) -> None:
    async with SystemTaskContext(clock=engine.clock, host_policy=LOOPBACK_ALLOWED) as context:
        await Worker(engine, {e.type: e for e in BUILTIN_EXECUTORS}, context).run_until_idle()


async def failed_call(engine: Engine, data: dict[str, Any]) -> tuple[str, str]:
    await engine.deploy(DEFINITION, "dana")
    instance = await engine.start("patched_call", data, "alice")
    await run_worker(engine)
    task_id = str(instance.tokens[0].task_id)
    return instance.id, task_id


async def test_a_patched_config_is_what_the_retry_calls(gql: GraphQL, app_engine: Engine, receiver: str) -> None:
    instance_id, task_id = await failed_call(app_engine, {"base": "http://127.0.0.1:9", "order": "A-1"})
    assert (await gql(INSTANCE, user="dana", id=instance_id))["data"]["workflowInstance"]["status"] == "FAILED"

    patch = {"config": {"url": f"{receiver}/orders/A-1"}}
    retried = (await gql(RETRY, user="dana", id=task_id, patch=patch))["data"]["retryTask"]
    assert retried == {
        "__typename": "TaskSuccess",
        "task": {"status": "PENDING", "input": {"configPatch": patch["config"]}},
    }
    await run_worker(app_engine)

    done = (await gql(INSTANCE, user="dana", id=instance_id))["data"]["workflowInstance"]
    assert done["status"] == "COMPLETED" and done["data"]["answer"]["body"] == {"order": "A-1"}
    async with app_engine.db.read() as session:
        [event] = (await session.execute(
            select(task_events.c.actor_id, task_events.c.data)
            .where(task_events.c.task_id == task_id, task_events.c.kind == "RETRIED")
        )).all()  # fmt: skip
    assert event.actor_id == "dana" and event.data["patch"] == patch, "who patched what is in the history"


async def test_patched_instance_data_is_what_the_config_renders_from(
    gql: GraphQL, app_engine: Engine, receiver: str
) -> None:
    instance_id, task_id = await failed_call(app_engine, {"base": "http://127.0.0.1:9", "order": "B-2"})

    retried = await gql(RETRY, user="dana", id=task_id, patch={"data": {"base": receiver, "order": "B-3"}})
    assert retried["data"]["retryTask"]["task"]["status"] == "PENDING"
    await run_worker(app_engine)

    done = (await gql(INSTANCE, user="dana", id=instance_id))["data"]["workflowInstance"]
    assert done["status"] == "COMPLETED" and done["data"]["order"] == "B-3"
    assert done["data"]["answer"]["body"] == {"order": "B-3"}


async def test_a_patch_carrying_a_secret_or_malformed_is_refused_and_changes_nothing(
    gql: GraphQL, app_engine: Engine
) -> None:
    _, task_id = await failed_call(app_engine, {"base": "http://127.0.0.1:9", "order": "C-1"})
    before = await snapshot(app_engine)

    cases = {
        "patch.config.headers.Authorization": {"config": {"headers": {"Authorization": f"Bearer {SECRET}"}}},
        "patch.data.token": {"data": {"token": "{{ secrets.API_TOKEN }}"}},
        "patch.config.url": {"config": {"url": "http://x/{{ 'a' ~ secrets['API_TOKEN'] }}"}},
    }
    for field, patch in cases.items():
        refused = (await gql(RETRY, user="dana", id=task_id, patch=patch))["data"]["retryTask"]
        assert refused["code"] == "VALIDATION_FAILED", refused
        assert refused["fieldErrors"] == [{"field": field, "code": "SECRET_NOT_ALLOWED"}]
    unknown = (await gql(RETRY, user="dana", id=task_id, patch={"headers": {}}))["data"]["retryTask"]
    assert unknown["fieldErrors"] == [{"field": "patch.headers", "code": "UNKNOWN_FIELD"}]
    not_an_object = (await gql(RETRY, user="dana", id=task_id, patch={"config": "x"}))["data"]["retryTask"]
    assert not_an_object["fieldErrors"] == [{"field": "patch.config", "code": "INVALID"}]
    forbidden = (await gql(RETRY, user="carol", id=task_id, patch={"data": {"order": "C-2"}}))["data"]["retryTask"]
    assert forbidden["code"] == "FORBIDDEN"
    assert await snapshot(app_engine) == before
