"""Escalations through the API: a task's ``escalations`` (fired and scheduled) over HTTP, and the
``REMINDED`` and ``ESCALATED`` events carried by a ``taskEvents`` subscription over a real WebSocket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from starlette.applications import Starlette

from engine.clock import ManualClock
from engine.definitions.builder import WorkflowBuilder, business, complete, reassign, remind
from engine.events.hub import EventHub
from engine.tasks.service import TaskService
from engine.transitions.engine import Engine
from engine.workers.builtin import BUILTIN_EXECUTORS
from engine.workers.executor import SystemTaskContext
from engine.workers.worker import Worker
from server.settings import Settings
from tests.server.conftest import GraphQL
from tests.server.live import serving, wait_until
from tests.server.test_subscriptions import EVENTS, NOTIFICATIONS, cursor_now, feed, kinds, task_at

LADDERED = WorkflowBuilder("laddered")
LADDERED.user_task(
    "review", schema_type="userTask.approval", assign_to_role="approver",
    escalation=[remind("PT4H"), reassign(business("P1D"), role="manager"),
                complete("P3D", {"decision": "rejected", "comment": "timed out"})],
)  # fmt: skip


@pytest.fixture
def hub(app: Starlette) -> EventHub:
    events: EventHub = app.state.events
    return events


@pytest.fixture
async def live_url(app: Starlette) -> AsyncIterator[str]:
    async with serving(app) as url:
        yield url


ESCALATIONS = """query($id: ID!) { task(id: $id) { assignedRole
  escalations { step action status dueAt firedAt detail } } }"""


async def test_escalations_are_listed_and_their_events_are_delivered(
    app_engine: Engine,
    clock: ManualClock,
    gql: GraphQL,
    live_url: str,
    settings: Settings,
    hub: EventHub,
) -> None:
    await app_engine.deploy(LADDERED.build(), deployed_by="dana")  # the clock: Monday 09:00 UTC
    instance = await app_engine.start("laddered", {}, "alice")
    task = await task_at(app_engine, instance, "review")
    start = await cursor_now(app_engine)
    async with (
        SystemTaskContext(clock=clock) as context,  # no SMTP server: a reminder is its event alone
        feed(live_url, settings, "dana", EVENTS, filter={"workflowInstanceId": instance.id}, after=start) as f,
        feed(live_url, settings, "bob", NOTIFICATIONS) as bobs,
    ):
        await wait_until(lambda: hub.subscriptions_of("bob") == 1, "bob's notifications to go live")
        worker = Worker(app_engine, {e.type: e for e in BUILTIN_EXECUTORS}, context)
        clock.advance(timedelta(hours=4))
        await worker.run_until_idle()
        # A candidate: the reminder is news to him (after the task's CREATED, if the hub had not
        # delivered that yet when his subscription went live).
        reminded = (await bobs.events(1, field="notifications"))[0]
        if reminded["kind"] == "CREATED":
            reminded = (await bobs.events(1, field="notifications"))[0]
        halfway = await gql(ESCALATIONS, user="bob", id=task.id)
        clock.advance(timedelta(hours=20))
        await worker.run_until_idle()
        delivered = await f.events(2)

    steps = halfway["data"]["task"]["escalations"]
    assert [(s["step"], s["action"], s["status"]) for s in steps] == [
        (0, "REMIND", "FIRED"), (1, "REASSIGN", "SCHEDULED"), (2, "COMPLETE", "SCHEDULED"),
    ]  # fmt: skip
    assert steps[0]["firedAt"].startswith("2026-01-05T13:00") and steps[0]["detail"]["recipients"] == ["bob"]
    assert steps[1]["dueAt"].startswith("2026-01-06T09:00")  # a business day: Tuesday, same hour
    assert steps[2]["dueAt"].startswith("2026-01-08T09:00")
    assert kinds(delivered) == ["REMINDED", "ESCALATED"]
    assert reminded["kind"] == "REMINDED" and reminded["task"]["id"] == task.id
    assert all(e["task"]["id"] == task.id and e["actor"] is None for e in delivered)

    after = await gql(ESCALATIONS, user="carol", id=task.id)
    assert after["data"]["task"]["assignedRole"] == "manager"
    assert [s["status"] for s in after["data"]["task"]["escalations"]] == ["FIRED", "FIRED", "SCHEDULED"]
    await app_engine.cancel(instance.id, "dana")
    cancelled = await gql(ESCALATIONS, user="carol", id=task.id)
    assert cancelled["data"]["task"]["escalations"][2]["status"] == "CANCELLED"  # the task ended first


async def test_the_demo_purchase_request_reminds_its_approvers_then_their_manager(
    app_engine: Engine, clock: ManualClock, gql: GraphQL
) -> None:
    alice = await app_engine.user("alice")
    assert alice is not None
    instance = await app_engine.start("purchase_request", {}, "alice")  # Monday 09:00 UTC
    request = await task_at(app_engine, instance, "request")
    await TaskService(app_engine).submit(alice, request.id, {"item": "Chair", "amount": 300}, None)
    approvers = await task_at(app_engine, instance, "approvers")
    async with SystemTaskContext(clock=clock) as context:
        worker = Worker(app_engine, {e.type: e for e in BUILTIN_EXECUTORS}, context)
        clock.advance(timedelta(hours=4))
        await worker.run_until_idle()
        clock.advance(timedelta(hours=20))  # Tuesday 09:00: one business day
        await worker.run_until_idle()

    body = await gql(ESCALATIONS, user="grace", id=approvers.id)
    steps = body["data"]["task"]["escalations"]
    assert [(s["action"], s["status"]) for s in steps] == [("REMIND", "FIRED"), ("REMIND", "FIRED")]
    assert steps[0]["detail"]["recipients"] == ["grace", "henry", "ivan"]  # the approvers; alice is excluded
    assert steps[1]["detail"]["recipients"] == ["carol"] and steps[1]["detail"]["to"] == {"role": "manager"}
