"""stepwise_client against a real server on 127.0.0.1 (uvicorn): ask, a person decides over GraphQL, the
caller gets the decision, once, however it waits; and the example tool guard runs its tool once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.applications import Starlette

from engine import Engine
from examples.tool_guard import REFUND_SCHEMA, NotApproved, guarded
from server.auth import issue_token
from server.settings import Settings
from stepwise_client import (
    DecisionTimeoutError,
    StepwiseClient,
    StepwiseClientError,
    SyncStepwiseClient,
)
from tests.server.conftest import GraphQL
from tests.server.live import serving, wait_until
from tests.server.test_action_approvals import decide
from tests.server.test_service_accounts import make_service_account

SCHEMA = {"type": "object", "properties": {"amount": {"type": "number", "maximum": 500}}, "required": ["amount"]}


async def open_tasks(gql: GraphQL) -> list[dict[str, Any]]:
    body = await gql("{ tasks { edges { node { id type status input } } } }", user="bob")
    nodes = [edge["node"] for edge in body["data"]["tasks"]["edges"]]
    return [{"id": n["id"], "input": n["input"]} for n in nodes
            if n["type"] == "ACTION_APPROVAL" and n["status"] in ("PENDING", "CLAIMED")]  # fmt: skip


@pytest.fixture
async def http_url(app: Starlette, app_engine: Engine) -> Any:
    await make_service_account(app_engine, "refund-bot")
    async with serving(app) as url:
        yield url.replace("ws://", "http://")


async def test_ask_wait_and_get_the_edited_arguments(http_url: str, gql: GraphQL, settings: Settings) -> None:
    token = issue_token(settings, "refund-bot", service=True)
    async with StepwiseClient(http_url, token) as stepwise:
        handle = await stepwise.request_approval("refund", {"amount": 120}, arguments_schema=SCHEMA,
                                                 assign_to_role="approver", idempotency_key="run-1")  # fmt: skip
        assert await handle.poll() is None
        with pytest.raises(DecisionTimeoutError):
            await handle.decision(timeout=0)
        waiting = asyncio.ensure_future(handle.decision(timeout=30))
        await decide(gql, taskId=handle.task_id, decision="EDITED", arguments={"amount": 80})
        decision = await waiting
        assert decision.approved and decision.decision == "edited" and decision.arguments == {"amount": 80}
        assert decision.decided_by == "bob"
        # The caller crashed and asks again with its key: the same request, decided.
        again = await stepwise.request_approval("refund", {"amount": 120}, arguments_schema=SCHEMA,
                                                assign_to_role="approver", idempotency_key="run-1")  # fmt: skip
        assert again.task_id == handle.task_id
        assert await again.decision(timeout=0) == decision

        with pytest.raises(StepwiseClientError) as refused:
            await stepwise.request_approval("refund", {"amount": 900}, arguments_schema=SCHEMA,
                                            assign_to_role="approver")  # fmt: skip
        assert refused.value.code == "VALIDATION_FAILED" and "arguments.amount" in refused.value.field_errors


async def test_the_sync_client_for_scripts(http_url: str, gql: GraphQL, settings: Settings) -> None:
    token = issue_token(settings, "refund-bot", service=True)

    def script() -> str:
        with SyncStepwiseClient(http_url, token) as stepwise:
            handle = stepwise.request_approval("deploy", {"amount": 1}, assign_to_role="approver")
            return handle.task_id

    task_id = await asyncio.to_thread(script)
    await decide(gql, taskId=task_id, decision="REJECTED", feedback="not on a Friday")

    def wait() -> Any:
        with SyncStepwiseClient(http_url, token) as stepwise:
            return stepwise.handle(task_id).decision(timeout=10)

    decision = await asyncio.to_thread(wait)
    assert not decision.approved and decision.arguments is None and decision.feedback == "not on a Friday"


async def test_the_tool_guard_runs_the_tool_once_with_the_approved_arguments(
    http_url: str, gql: GraphQL, settings: Settings
) -> None:
    runs: list[dict[str, Any]] = []

    async def refund(order_id: str, amount: float) -> str:
        runs.append({"order_id": order_id, "amount": amount})
        return f"refunded {amount} on {order_id}"

    ledger: dict[str, Any] = {}
    async with StepwiseClient(http_url, issue_token(settings, "refund-bot", service=True)) as stepwise:
        tool = guarded(stepwise, refund, action="refund", assign_to_role="approver", arguments_schema=REFUND_SCHEMA,
                       ledger=ledger, timeout=30)  # fmt: skip
        call = asyncio.ensure_future(tool("call-1", order_id="A-17", amount=120))
        await wait_until(lambda: _one_open(gql), "the guard's request in the inbox")
        [task] = await open_tasks(gql)
        assert task["input"]["arguments"] == {"order_id": "A-17", "amount": 120}
        await decide(gql, taskId=task["id"], decision="EDITED", arguments={"order_id": "A-17", "amount": 60})
        assert await call == "refunded 60 on A-17"
        assert await tool("call-1", order_id="A-17", amount=120) == "refunded 60 on A-17"  # a replay
        assert runs == [{"order_id": "A-17", "amount": 60}]

        refused = asyncio.ensure_future(tool("call-2", order_id="B-2", amount=5))
        await wait_until(lambda: _one_open(gql), "the second request")
        [task] = await open_tasks(gql)
        await decide(gql, taskId=task["id"], decision="RESPONDED", feedback="ask the customer first")
        assert await refused == NotApproved("responded", "ask the customer first")
        assert len(runs) == 1


async def _one_open(gql: GraphQL) -> bool:
    return len(await open_tasks(gql)) == 1
