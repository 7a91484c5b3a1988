"""``requestApproval(callbackUrl:)``: the decision is POSTed, signed, to a real Starlette
receiver on loopback, retried until it answers 2xx, and acknowledged exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest

from engine import DeliveryPolicy, WebhookDispatcher
from engine.clock import ManualClock
from engine.transitions.engine import Engine
from server.settings import Settings
from tests.server.conftest import GraphQL
from tests.server.test_action_approvals import REQUEST, counts, decide, refund_request
from tests.webhooks.receiver import Receiver, ReceiverServer
from tests.workers.support import LOOPBACK_ALLOWED

ASK = REQUEST.replace("task { id type", "callbackSecret task { id type")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Callbacks to loopback pass the host policy (the receiver is on 127.0.0.1)."""
    return replace(settings, http_allow=("127.0.0.1",))


@pytest.fixture
def receiver(clock: ManualClock) -> Iterator[tuple[Receiver, str]]:
    found = Receiver(now=lambda: int(clock.now().timestamp()))
    server = ReceiverServer(found)
    server.start()
    try:
        yield found, server.url
    finally:
        server.stop()


async def deliver(engine: Engine) -> int:
    dispatcher = WebhookDispatcher(engine.db, engine.clock, LOOPBACK_ALLOWED, "callbacks-test",
                                   DeliveryPolicy(first_retry=timedelta(seconds=5)))  # fmt: skip
    try:
        return await dispatcher.run_until_idle()
    finally:
        await dispatcher.aclose()


async def test_the_edited_decision_reaches_the_callback_signed_and_once(
    gql: GraphQL, app_engine: Engine, clock: ManualClock, receiver: tuple[Receiver, str]
) -> None:
    hook, url = receiver
    asked = (await gql(ASK, user="alice", input=refund_request("agent-9", callbackUrl=url)))["data"]["requestApproval"]
    assert asked["__typename"] == "RequestApprovalSuccess", asked
    secret, task_id = asked["callbackSecret"], asked["task"]["id"]
    assert secret.startswith("whsec_")
    hook.secrets.append(secret)
    repeat = (await gql(ASK, user="alice", input=refund_request("agent-9", callbackUrl=url)))["data"]
    assert repeat["requestApproval"]["callbackSecret"] == secret and repeat["requestApproval"]["task"]["id"] == task_id

    assert await deliver(app_engine) == 0 and hook.snapshot() == []  # nothing to say before the decision
    await decide(gql, taskId=task_id, decision="EDITED", arguments={"orderId": "A-17", "amount": 75})
    hook.fail_next = 1
    await deliver(app_engine)
    assert [r.answered for r in hook.snapshot()] == [500]
    assert await deliver(app_engine) == 0, "the retry waits for its back-off"
    clock.advance(timedelta(seconds=6))
    await deliver(app_engine)
    clock.advance(timedelta(hours=2))
    await deliver(app_engine)
    [acknowledged] = hook.acknowledged()
    assert acknowledged.verified_with == (0,) and acknowledged.delivery_id == task_id
    assert acknowledged.body["taskId"] == task_id and acknowledged.body["status"] == "COMPLETED"
    outcome = acknowledged.body["outcome"]
    assert outcome["decision"] == "edited" and outcome["arguments"] == {"orderId": "A-17", "amount": 75}
    assert len(hook.snapshot()) == 2


async def test_a_callback_url_stepwise_would_not_send_to_is_refused(gql: GraphQL, app_engine: Engine) -> None:
    await gql(ASK, user="alice", input=refund_request())
    before = await counts(app_engine)
    for bad in ("ftp://127.0.0.1/hook", "http://user:pw@127.0.0.1/hook"):
        refused = (await gql(ASK, user="alice", input=refund_request(callbackUrl=bad)))["data"]["requestApproval"]
        assert refused["fieldErrors"] == [{"field": "callbackUrl", "code": "INVALID_URL"}]
    assert await counts(app_engine) == before
