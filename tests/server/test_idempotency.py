"""Idempotency keys through the real HTTP app: a repeat with the same key answers as the
first and changes nothing, the same key with other input is a Conflict, concurrent duplicates make
one change (in one server and across two server processes), and the worker purges old keys."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import GraphQLInputObjectType, GraphQLNonNull, GraphQLScalarType
from sqlalchemy import func, select
from starlette.applications import Starlette

from engine import BUILTIN_EXECUTORS, ManualClock, SystemTaskContext, Worker
from engine.storage.models import idempotency_keys, task_events
from engine.transitions.engine import Engine
from schema.schema import build_schema
from server.auth import issue_token
from server.settings import Settings
from tests.server.conftest import GraphQL
from tests.server.live import server_processes, serving
from tests.server.test_task_api import VALID, snapshot
from tests.server.test_workflow_api import start_expense

RESULT = """__typename
  ... on TaskSuccess { task { id status revision draft output assignee { id } completedBy { id } } }
  ... on ValidationFailed { message code fieldErrors { field code } }
  ... on Error { code message }"""
SUBMIT = f"""mutation($id: ID!, $values: JSON, $key: String) {{
  submitTask(input: {{taskId: $id, values: $values, idempotencyKey: $key}}) {{ {RESULT} }} }}"""
SAVE = f"""mutation($id: ID!, $values: JSON!, $key: String) {{
  saveTaskProgress(input: {{taskId: $id, values: $values, idempotencyKey: $key}}) {{ {RESULT} }} }}"""
START = """mutation($input: JSON, $key: String) {
  startWorkflow(input: {definitionKey: "expense_approval", input: $input, idempotencyKey: $key}) {
    __typename ... on StartWorkflowSuccess { workflowInstance { id status tasks { id } } }
    ... on Error { code message } } }"""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(
        settings, mutations_per_minute=0, operations_per_user=0
    )  # a hundred duplicates at once are the point


async def keys_stored(engine: Engine) -> int:
    async with engine.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(idempotency_keys)) or 0)


async def completions(engine: Engine, task_id: str) -> int:
    async with engine.db.read() as session:
        found = await session.scalar(
            select(func.count()).select_from(task_events)
            .where(task_events.c.task_id == task_id, task_events.c.kind == "COMPLETED")
        )  # fmt: skip
    return int(found or 0)


def test_every_mutation_input_has_an_optional_idempotency_key() -> None:
    """Mutations added later must declare it too (``schema.idempotency.idempotency_key_field``)."""
    mutations = build_schema()._schema.mutation_type
    assert mutations is not None
    lacking = []
    for name, field in mutations.fields.items():
        argument = field.args.get("input")
        input_type = argument.type.of_type if argument and isinstance(argument.type, GraphQLNonNull) else None
        key = input_type.fields.get("idempotencyKey") if isinstance(input_type, GraphQLInputObjectType) else None
        if key is None or not (isinstance(key.type, GraphQLScalarType) and key.type.name == "String"):
            lacking.append(name)
    assert lacking == [], f"mutations without an optional `idempotencyKey: String` in their input: {lacking}"


async def test_a_repeat_returns_the_first_answer_and_changes_nothing(gql: GraphQL, app_engine: Engine) -> None:
    task_id = (await start_expense(gql))["tasks"][0]["id"]

    saved = await gql(SAVE, user="alice", id=task_id, values={"amount": 10}, key="save-1")
    after_first = await snapshot(app_engine)
    repeated = await gql(SAVE, user="alice", id=task_id, values={"amount": 10}, key="save-1")

    assert saved["data"]["saveTaskProgress"]["task"]["revision"] == 2
    assert repeated == saved, "a save that would succeed again is answered from the key, not run"
    assert await snapshot(app_engine) == after_first

    submitted = await gql(SUBMIT, user="alice", id=task_id, values=VALID, key="submit-1")
    after_submit = await snapshot(app_engine)
    again = await gql(SUBMIT, user="alice", id=task_id, values=VALID, key="submit-1")
    unkeyed = await gql(SUBMIT, user="alice", id=task_id, values=VALID)

    assert submitted["data"]["submitTask"]["task"]["status"] == "COMPLETED"
    assert again == submitted
    assert unkeyed["data"]["submitTask"]["__typename"] == "Conflict", "without the key it is a second submit"
    assert await snapshot(app_engine) == after_submit
    assert await keys_stored(app_engine) == 2


async def test_a_key_used_with_other_input_is_a_conflict_and_changes_nothing(gql: GraphQL, app_engine: Engine) -> None:
    task_id = (await start_expense(gql))["tasks"][0]["id"]
    await gql(SAVE, user="alice", id=task_id, values={"amount": 10}, key="k")
    before = await snapshot(app_engine)

    other_values = (await gql(SAVE, user="alice", id=task_id, values={"amount": 11}, key="k"))["data"]
    other_mutation = (await gql(SUBMIT, user="alice", id=task_id, values=VALID, key="k"))["data"]

    for answer in (other_values["saveTaskProgress"], other_mutation["submitTask"]):
        assert (answer["__typename"], answer["code"]) == ("Conflict", "IDEMPOTENCY_KEY_REUSED")
    assert await snapshot(app_engine) == before
    assert await keys_stored(app_engine) == 1


async def test_keys_are_per_user_and_a_failed_request_stores_none(gql: GraphQL, app_engine: Engine) -> None:
    first = await gql(START, user="alice", input={"entityName": "A"}, key="same")
    second = await gql(START, user="carol", input={"entityName": "A"}, key="same")
    assert (
        first["data"]["startWorkflow"]["workflowInstance"]["id"]
        != (second["data"]["startWorkflow"]["workflowInstance"]["id"])
    )
    refused = await gql(SUBMIT, user="alice", id="no-such-task", values=VALID, key="refused")
    assert refused["data"]["submitTask"]["code"] == "NOT_FOUND"
    assert await keys_stored(app_engine) == 2

    too_long = (await gql(START, user="alice", input={}, key="x" * 256))["data"]["startWorkflow"]
    empty = (await gql(START, user="alice", input={}, key=""))["data"]["startWorkflow"]
    assert too_long["code"] == empty["code"] == "VALIDATION_FAILED"
    assert await keys_stored(app_engine) == 2


async def test_the_worker_purges_keys_past_their_time(
    gql: GraphQL, app_engine: Engine, clock: ManualClock, settings: Settings
) -> None:
    task_id = (await start_expense(gql))["tasks"][0]["id"]
    await gql(SAVE, user="alice", id=task_id, values={"amount": 10}, key="old")
    worker = Worker(app_engine, {e.type: e for e in BUILTIN_EXECUTORS}, SystemTaskContext(clock=clock))

    clock.advance(timedelta(hours=settings.idempotency_key_hours) - timedelta(minutes=1))
    await worker.run_once()
    assert await keys_stored(app_engine) == 1
    clock.advance(timedelta(minutes=2))
    await worker.run_once()
    assert await keys_stored(app_engine) == 0

    anew = await gql(SAVE, user="alice", id=task_id, values={"amount": 10}, key="old")
    assert anew["data"]["saveTaskProgress"]["task"]["revision"] == 3, "a purged key is a new request"


async def _duplicates(urls: list[str], token: str, query: str, variables: dict[str, Any], count: int) -> list[Any]:
    """``count`` identical requests at once over several connections per server in ``urls``."""
    clients = [httpx.AsyncClient(base_url=url, timeout=60) for url in urls for _ in range(4)]
    headers = {"Authorization": f"Bearer {token}"}
    try:
        responses = await asyncio.gather(*(
            clients[n % len(clients)].post("/graphql", json={"query": query, "variables": variables}, headers=headers)
            for n in range(count)
        ))  # fmt: skip
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
    assert {response.status_code for response in responses} == {200}, [r.text for r in responses][:3]
    return [response.json() for response in responses]


async def test_a_hundred_concurrent_duplicates_make_one_change(
    gql: GraphQL, app: Starlette, app_engine: Engine, settings: Settings
) -> None:
    task_id = (await start_expense(gql))["tasks"][0]["id"]
    variables = {"id": task_id, "values": VALID, "key": "submit-once"}

    async with serving(app) as ws_url:
        url = ws_url.replace("ws://", "http://").removesuffix("/graphql")
        answers = await _duplicates([url], issue_token(settings, "alice"), SUBMIT, variables, 100)

    assert len({json.dumps(answer, sort_keys=True) for answer in answers}) == 1, answers[:2]
    assert answers[0]["data"]["submitTask"]["task"]["status"] == "COMPLETED"
    assert await completions(app_engine, task_id) == 1
    assert await keys_stored(app_engine) == 1


@pytest.mark.postgres_only
async def test_duplicates_across_two_server_processes_make_one_change(
    gql: GraphQL, app_engine: Engine, database_url: str, tmp_path: Path
) -> None:
    task_id = (await start_expense(gql))["tasks"][0]["id"]
    secret = "two-processes-secret-of-at-least-32-bytes"
    env = {
        "STEPWISE_DATABASE_URL": database_url, "STEPWISE_FILES_DIR": str(tmp_path / "files"),
        "STEPWISE_EMBEDDED_WORKER": "false", "STEPWISE_SECRET_KEY": secret, "STEPWISE_MUTATIONS_PER_MINUTE": "0",
        "STEPWISE_OPERATIONS_PER_USER": "0", "STEPWISE_METRICS": "false",
    }  # fmt: skip
    token = issue_token(replace(Settings(), secret_key=secret), "alice")
    variables = {"id": task_id, "values": VALID, "key": "across-processes"}

    async with server_processes(2, env, tmp_path) as urls:
        answers = await _duplicates(urls, token, SUBMIT, variables, 100)

    assert len({json.dumps(answer, sort_keys=True) for answer in answers}) == 1, answers[:2]
    assert answers[0]["data"]["submitTask"]["task"]["status"] == "COMPLETED"
    assert await completions(app_engine, task_id) == 1
    assert await keys_stored(app_engine) == 1
