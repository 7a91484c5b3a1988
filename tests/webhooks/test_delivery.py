"""Webhook deliveries to a real receiver on loopback: signed, every event, in order per task, retried."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from engine import (
    MAX_WEBHOOK_ATTEMPTS,
    DeliveryPolicy,
    DeliveryStatus,
    ForbiddenError,
    Services,
    TaskEventKind,
    User,
    ValidationError,
    Webhook,
    WebhookDispatcher,
    WebhookFilter,
    WebhookService,
    decode_event_cursor,
    encode_event_cursor,
)
from engine.clock import ManualClock
from engine.definitions.builder import WorkflowBuilder
from engine.storage.models import task_events, webhook_attempts, webhook_deliveries, webhooks
from engine.storage.tasks import TaskRepository
from engine.transitions.engine import Engine
from engine.workers.hostpolicy import HostPolicy
from tests.webhooks.receiver import Received, Receiver, ReceiverServer
from tests.workers.support import LOOPBACK_ALLOWED

ADMIN = User("dana", "Dana", roles=frozenset({"admin"}))
BOB = User("bob", "Bob", roles=frozenset({"approver"}))


def review_then_approve() -> WorkflowBuilder:
    builder = WorkflowBuilder("purchase")
    builder.user_task("review", assign_to_role="approver", form=[{"key": "note", "type": "text", "label": "Note"}])
    builder.user_task("approve", schema_type="userTask.approval", assign_to_role="approver")
    builder.edge("review", "approve")
    return builder


@dataclass
class World:
    engine: Engine
    clock: ManualClock
    services: Services
    receiver: Receiver
    server: ReceiverServer
    dispatcher: WebhookDispatcher

    async def subscribe(self, events: Sequence[TaskEventKind] = (), filter: WebhookFilter | None = None) -> Webhook:
        service = self.services.webhooks
        webhook, secret = await service.create(ADMIN, self.server.url, events, filter or WebhookFilter())
        self.receiver.secrets.append(secret)
        return webhook

    async def scenario(self, instances: int) -> list[str]:
        """``instances`` purchases, each reviewed (claimed, saved, submitted) and approved by bob."""
        await self.engine.deploy(review_then_approve().build())
        ids = []
        for number in range(instances):
            instance = await self.engine.start("purchase", {"n": number}, "alice")
            ids.append(instance.id)
        for instance_id in ids:
            review = await self.open_task(instance_id)
            await self.services.tasks.claim(BOB, review)
            await self.services.tasks.save_progress(BOB, review, {"note": "draft"}, None)
            await self.services.tasks.submit(BOB, review, {"note": "fine"}, None)
            await self.services.tasks.decide(BOB, await self.open_task(instance_id), "approved", "ok", None, None)
        await self.engine.sequencer.idle()
        return ids

    async def open_task(self, instance_id: str) -> str:
        async with self.engine.db.read() as session:
            tasks = await TaskRepository(session).find_by_instance(instance_id)
        [task] = [task for task in tasks if task.status.is_open]
        return task.id

    async def deliver_everything(self, step: timedelta = timedelta(minutes=5), rounds: int = 50) -> None:
        """Rounds until nothing is pending, moving the clock past each back-off."""
        for _ in range(rounds):
            await self.dispatcher.run_until_idle()
            async with self.engine.db.read() as session:
                pending = await session.scalar(
                    select(func.count()).where(webhook_deliveries.c.status == DeliveryStatus.PENDING.value)
                )
            if not pending:
                return
            self.clock.advance(step)
        raise AssertionError("deliveries still pending")

    async def events_by_task(self) -> dict[str, list[tuple[int, str]]]:
        async with self.engine.db.read() as session:
            rows = await session.execute(select(task_events).order_by(task_events.c.position))
            by_task: dict[str, list[tuple[int, str]]] = defaultdict(list)
            for row in rows:
                by_task[row.task_id].append((row.position, row.kind))
        return by_task


@pytest.fixture
def receiver(clock: ManualClock) -> Receiver:
    return Receiver(now=lambda: int(clock.now().timestamp()))


@pytest.fixture
def server(receiver: Receiver) -> Iterator[ReceiverServer]:
    server = ReceiverServer(receiver)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def world(engine: Engine, clock: ManualClock, receiver: Receiver, server: ReceiverServer) -> AsyncIterator[World]:
    services = Services.build(engine, host_policy=LOOPBACK_ALLOWED)
    policy = DeliveryPolicy(max_attempts=5, first_retry=timedelta(seconds=10))
    dispatcher = WebhookDispatcher(engine.db, clock, LOOPBACK_ALLOWED, "test-worker", policy)
    try:
        yield World(engine, clock, services, receiver, server, dispatcher)
    finally:
        await dispatcher.aclose()


def positions_by_task(received: Sequence[Received]) -> dict[str, list[int]]:
    """The event positions each task's requests carried, in arrival order."""
    by_task: dict[str, list[int]] = defaultdict(list)
    for item in received:
        position = decode_event_cursor(item.body["id"])
        assert position is not None
        by_task[item.body["task"]["id"]].append(position)
    return by_task


async def test_every_event_of_a_scenario_arrives_signed_once_and_in_order_per_task(world: World) -> None:
    webhook = await world.subscribe()

    await world.scenario(instances=4)
    await world.deliver_everything()

    received = world.receiver.snapshot()
    expected = await world.events_by_task()
    assert sum(map(len, expected.values())) == 4 * 7, "created, claimed, saved, completed; created, claimed, completed"
    assert all(item.verified_with == (0,) and item.answered == 200 for item in received)
    assert {task: [p for p, _ in events] for task, events in expected.items()} == positions_by_task(received)
    for item in received:
        assert item.delivery_id == item.body["id"], "the header and the body name the same delivery"
        assert item.body["webhookId"] == webhook.id
        assert item.body["task"]["definitionKey"] == "purchase"
    approval = next(item.body["task"]["id"] for item in received if item.body["task"]["nodeId"] == "approve")
    assert [item.body["kind"] for item in received if item.body["task"]["id"] == approval] == [
        "CREATED", "CLAIMED", "COMPLETED"]  # fmt: skip
    page, more, attempts = await world.services.webhooks.deliveries(ADMIN, webhook.id, 100, None)
    assert not more and len(page) == 28
    assert {d.status for d in page} == {DeliveryStatus.DELIVERED}
    assert all(len(attempts[d.id]) == 1 and attempts[d.id][0].status_code == 200 for d in page)


async def test_deliveries_keep_their_connections_to_the_receiver_alive(world: World) -> None:
    await world.subscribe()

    await world.scenario(instances=4)
    await world.deliver_everything()

    received = world.receiver.snapshot()
    assert len(received) == 28
    connections = {item.connection for item in received}
    assert len(connections) <= 8, "at most one per task in flight at once (8 tasks), each kept for the next event"


async def test_a_receiver_failing_for_a_while_gets_every_event_once_it_recovers_never_one_ahead(
    world: World,
) -> None:
    webhook = await world.subscribe()
    world.receiver.fail_next = 12

    await world.scenario(instances=3)
    await world.deliver_everything()

    received = world.receiver.snapshot()
    assert sum(1 for item in received if item.answered == 500) == 12
    for task_id in {item.body["task"]["id"] for item in received}:
        # A retry repeats a position; the task's next event only comes once the one before was acknowledged.
        requests = [item for item in received if item.body["task"]["id"] == task_id]
        decoded = [decode_event_cursor(item.body["id"]) for item in requests]
        positions = [position for position in decoded if position is not None]
        assert positions == sorted(positions) and len(positions) == len(decoded), task_id
        for earlier, later in itertools.pairwise(requests):
            if earlier.body["id"] != later.body["id"]:
                assert earlier.answered == 200, (
                    f"{task_id}: an event was sent before the one before it was acknowledged"
                )
    acknowledged = positions_by_task(world.receiver.acknowledged())
    expected = await world.events_by_task()
    assert acknowledged == {task: [p for p, _ in events] for task, events in expected.items()}, (
        "each event acknowledged once"
    )
    page, _, attempts = await world.services.webhooks.deliveries(ADMIN, webhook.id, 100, None)
    failed_first = [d for d in page if len(attempts[d.id]) > 1]
    assert failed_first, "some deliveries needed more than one attempt"
    for delivery in failed_first:
        log = attempts[delivery.id]
        assert [a.status_code for a in log[:-1]] == [500] * (len(log) - 1) and log[-1].status_code == 200
        assert log[0].error == "the receiver answered 500"
        assert [a.number for a in log] == list(range(1, len(log) + 1))


async def test_back_off_doubles_and_a_delivery_that_never_succeeds_fails_and_lets_the_next_event_go(
    world: World,
) -> None:
    webhook = await world.subscribe()
    world.receiver.fail_next = 5  # the policy's five attempts of the first event
    await world.engine.deploy(review_then_approve().build())
    instance = await world.engine.start("purchase", {}, "alice")
    await world.engine.sequencer.idle()
    start = world.clock.now()

    times = []
    for _ in range(5):
        await world.dispatcher.run_until_idle()
        times.append(world.clock.now() - start)
        async with world.engine.db.read() as session:
            due = await session.scalar(select(func.min(webhook_deliveries.c.next_attempt_at)))
        if due is None:
            break
        world.clock.advance(due - world.clock.now())

    assert times == [timedelta(0), timedelta(seconds=10), timedelta(seconds=30), timedelta(seconds=70),
                     timedelta(seconds=150)]  # fmt: skip
    [delivery] = (await world.services.webhooks.deliveries(ADMIN, webhook.id, 10, None))[0]
    assert delivery.status is DeliveryStatus.FAILED and delivery.attempt_count == 5
    review = await world.open_task(instance.id)
    await world.services.tasks.claim(BOB, review)
    await world.engine.sequencer.idle()
    await world.dispatcher.run_until_idle()
    assert [r.body["kind"] for r in world.receiver.acknowledged()] == ["CLAIMED"]


async def test_redelivery_sends_the_same_id_and_body_again(world: World) -> None:
    webhook = await world.subscribe()
    await world.scenario(instances=1)
    await world.deliver_everything()
    [first, *_] = (await world.services.webhooks.deliveries(ADMIN, webhook.id, 100, None))[0][::-1]
    before = len(world.receiver.snapshot())

    again = await world.services.webhooks.redeliver(ADMIN, first.id)
    assert again.status is DeliveryStatus.PENDING
    await world.deliver_everything()

    [repeat] = world.receiver.snapshot()[before:]
    assert repeat.delivery_id == encode_event_cursor(first.position)
    assert repeat.body == world.receiver.snapshot()[0].body


async def test_the_events_and_filter_choose_what_is_delivered(world: World) -> None:
    await world.subscribe(events=[TaskEventKind.COMPLETED], filter=WebhookFilter(node_id="approve"))

    await world.scenario(instances=2)
    await world.deliver_everything()

    received = world.receiver.snapshot()
    assert [(r.body["kind"], r.body["task"]["nodeId"]) for r in received] == [("COMPLETED", "approve")] * 2


async def test_during_a_rotation_both_secrets_sign_until_the_grace_period_ends(world: World) -> None:
    webhook = await world.subscribe()
    _, new_secret = await world.services.webhooks.rotate_secret(ADMIN, webhook.id)
    world.receiver.secrets.append(new_secret)
    await world.engine.deploy(review_then_approve().build())
    instance = await world.engine.start("purchase", {}, "alice")
    await world.engine.sequencer.idle()
    await world.deliver_everything()
    [during] = world.receiver.snapshot()
    assert during.verified_with == (0, 1) and during.signature.count("v1=") == 2

    world.clock.advance(timedelta(hours=24, seconds=1))
    await world.services.tasks.claim(BOB, await world.open_task(instance.id))
    await world.engine.sequencer.idle()
    await world.deliver_everything()
    after = world.receiver.snapshot()[-1]
    assert after.verified_with == (1,) and after.signature.count("v1=") == 1


async def test_a_webhook_gets_only_events_committed_after_it_was_created(world: World) -> None:
    await world.engine.deploy(review_then_approve().build())
    await world.engine.start("purchase", {}, "alice")
    await world.engine.sequencer.idle()

    await world.subscribe()
    instance = await world.engine.start("purchase", {}, "alice")
    await world.engine.sequencer.idle()
    await world.deliver_everything()

    assert [r.body["task"]["workflowInstanceId"] for r in world.receiver.snapshot()] == [instance.id]


async def test_a_disabled_webhook_is_paused_and_catches_up_when_enabled(world: World) -> None:
    webhook = await world.subscribe()
    await world.services.webhooks.update(ADMIN, webhook.id, enabled=False)
    await world.scenario(instances=1)
    await world.deliver_everything()
    assert world.receiver.snapshot() == []

    await world.services.webhooks.update(ADMIN, webhook.id, enabled=True)
    await world.deliver_everything()
    assert len(world.receiver.acknowledged()) == 7


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://127.0.0.1:9/hook", "HOST_REFUSED"),  # loopback, which the default policy refuses
        ("http://169.254.169.254/latest/meta-data", "HOST_REFUSED"),  # cloud metadata, always refused
        ("http://metadata.google.internal/", "HOST_REFUSED"),
        ("http://[::ffff:10.0.0.1]/hook", "HOST_REFUSED"),
        ("ftp://93.184.215.14/hook", "INVALID_URL"),
        ("https://user:pw@93.184.215.14/hook", "INVALID_URL"),
        ("not a url", "INVALID_URL"),
    ],
)
async def test_a_url_the_host_policy_refuses_is_refused_at_creation_and_nothing_is_stored(
    engine: Engine, url: str, code: str
) -> None:
    service = WebhookService(engine, HostPolicy())

    with pytest.raises(ValidationError) as refused:
        await service.create(ADMIN, url, (), WebhookFilter())

    assert [(f.field, f.code) for f in refused.value.field_errors] == [("url", code)]
    async with engine.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(webhooks)) == 0


async def test_the_host_policy_applies_again_at_delivery(world: World, clock: ManualClock) -> None:
    webhook = await world.subscribe()  # registered while loopback was allowed
    strict = WebhookDispatcher(world.engine.db, clock, HostPolicy(), "strict-worker")
    await world.engine.deploy(review_then_approve().build())
    await world.engine.start("purchase", {}, "alice")
    await world.engine.sequencer.idle()
    try:
        await strict.run_until_idle()
    finally:
        await strict.aclose()

    assert world.receiver.snapshot() == []
    [delivery] = (await world.services.webhooks.deliveries(ADMIN, webhook.id, 10, None))[0]
    assert delivery.status is DeliveryStatus.FAILED and delivery.attempt_count == 1, "refused for good at once"
    assert delivery.last_error is not None and "allow list" in delivery.last_error


async def test_managing_webhooks_is_for_admins_only(world: World) -> None:
    for attempt in (
        world.services.webhooks.create(BOB, world.server.url, (), WebhookFilter()),
        world.services.webhooks.webhooks(BOB),
    ):
        with pytest.raises(ForbiddenError):
            await attempt


async def test_the_worker_deletes_settled_deliveries_older_than_the_log_keeps_and_never_pending_ones(
    world: World,
) -> None:
    webhook = await world.subscribe()
    await world.scenario(instances=1)
    await world.deliver_everything()
    world.receiver.fail_next = 1_000  # what is queued next stays pending
    await world.engine.deploy(review_then_approve().build())
    await world.engine.start("purchase", {}, "alice")
    await world.engine.sequencer.idle()
    await world.dispatcher.run_until_idle()

    world.clock.advance(timedelta(days=30, minutes=1))
    await world.dispatcher.run_once()

    page, _, _ = await world.services.webhooks.deliveries(ADMIN, webhook.id, 100, None)
    assert [(d.event_kind, d.status) for d in page] == [(TaskEventKind.CREATED, DeliveryStatus.PENDING)]
    async with world.engine.db.read() as session:
        logged = set((await session.execute(select(webhook_attempts.c.delivery_id))).scalars())
    assert logged == {page[0].id}, "only the pending delivery's attempts are left"


def test_the_back_off_stops_doubling_at_its_ceiling_however_many_attempts() -> None:
    policy = DeliveryPolicy(max_attempts=MAX_WEBHOOK_ATTEMPTS)

    delays = [policy.delay_after(n) for n in (1, 2, 11, 45, 1100)]

    assert delays == [timedelta(seconds=5), timedelta(seconds=10), timedelta(hours=1), timedelta(hours=1),
                      timedelta(hours=1)]  # fmt: skip
