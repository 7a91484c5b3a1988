"""Webhooks with real time and a real ``stepwise worker`` process: killed (SIGKILL) with deliveries in flight,
while the receiver then goes down and comes back. Nothing is lost, and a duplicate always has the same id."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine import DeliveryStatus, Services, User, WebhookFilter, decode_event_cursor
from engine.catalog import default_registry
from engine.storage.database import Database
from engine.storage.models import task_events, webhook_deliveries
from engine.storage.tasks import TaskRepository
from engine.transitions.engine import Engine
from tests.support import eventually, kill, tail
from tests.webhooks.receiver import Receiver, ReceiverServer
from tests.webhooks.test_delivery import BOB, review_then_approve
from tests.workers.support import LOOPBACK_ALLOWED

STEPWISE = Path(sys.executable).with_name("stepwise")
ADMIN = User("dana", "Dana", roles=frozenset({"admin"}))


def spawn_worker(database_url: str, log: Path) -> subprocess.Popen[bytes]:
    """``stepwise worker``: 2 s leases, quick polls, retries from 0.2 s, 1 s per request."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("STEPWISE_")}
    env.update(
        STEPWISE_DATABASE_URL=database_url, STEPWISE_SECRET_KEY="webhook-crash-test-secret-key-0123456789",
        STEPWISE_WORKER_LEASE_SECONDS="2", STEPWISE_WORKER_POLL_SECONDS="0.1", STEPWISE_HTTP_ALLOW="127.0.0.1",
        STEPWISE_WEBHOOK_RETRY_SECONDS="0.2", STEPWISE_WEBHOOK_MAX_ATTEMPTS="40", STEPWISE_WEBHOOK_TIMEOUT_SECONDS="1",
        PYTHONUNBUFFERED="1",
    )  # fmt: skip
    with log.open("wb") as out:
        return subprocess.Popen([str(STEPWISE), "worker"], env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.postgres_only
async def test_a_worker_killed_mid_delivery_and_a_receiver_down_lose_nothing_and_repeat_only_with_the_same_id(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    assert STEPWISE.exists(), f"{STEPWISE} is missing: install the project into the venv (pip install -e .)"
    engine = Engine(db, default_registry())  # real time, as the worker process has
    services = Services.build(engine, host_policy=LOOPBACK_ALLOWED)
    receiver = Receiver(now=lambda: int(time.time()))
    receiver.hold = threading.Event()  # the receiver takes requests and does not answer: in flight at the kill
    server = ReceiverServer(receiver)
    server.start()
    webhook, secret = await services.webhooks.create(ADMIN, server.url, (), WebhookFilter())
    receiver.secrets.append(secret)
    await engine.deploy(review_then_approve().build())
    for number in range(8):
        instance = await engine.start("purchase", {"n": number}, "alice")
        async with db.read() as session:
            [task] = await TaskRepository(session).find_by_instance(instance.id)
        await services.tasks.claim(BOB, task.id)
        await services.tasks.submit(BOB, task.id, {"note": "ok"}, None)
    await engine.sequencer.idle()
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = second = None
    try:
        first = spawn_worker(database_url, first_log)

        async def held() -> bool:
            assert first is not None and first.poll() is None, f"the first worker exited:\n{tail(first_log)}"
            return len(receiver.snapshot()) >= 8

        await eventually(held, 30, lambda: f"nothing reached the receiver:\n{tail(first_log)}")
        in_flight = {item.delivery_id for item in receiver.snapshot()}
        kill(first)
        async with db.read() as session:
            leased = await session.scalar(select(func.count()).where(webhook_deliveries.c.lease_owner.is_not(None)))
        assert leased, "the dead worker held leases: they must run out before anyone sends those again"
        receiver.hold.set()
        server.stop()  # and the receiver is down while the next worker starts
        receiver.hold = None
        second = spawn_worker(database_url, second_log)
        await asyncio.sleep(1.5)  # refused connections, retried with back-off
        server.start()

        async def all_delivered() -> bool:
            assert second is not None and second.poll() is None, f"the second worker exited:\n{tail(second_log)}"
            async with db.read() as session:
                open_ = await session.scalar(
                    select(func.count()).where(webhook_deliveries.c.status != DeliveryStatus.DELIVERED.value)
                )
                total = await session.scalar(select(func.count()).select_from(webhook_deliveries))
            return bool(total) and open_ == 0

        await eventually(all_delivered, 90, lambda: f"deliveries still open:\n{tail(second_log)}")
    finally:
        kill(first)
        kill(second)
        if receiver.hold is not None:
            receiver.hold.set()
        server.stop()

    async with db.read() as session:
        events = {row.position: (row.task_id, row.kind) for row in await session.execute(select(task_events))}
    received = receiver.snapshot()
    assert all(item.verified_with == (0,) for item in received), "every request, repeats too, is signed"
    by_id: dict[str, set[tuple[str, str]]] = {}
    for item in received:
        by_id.setdefault(item.delivery_id, set()).add((item.body["task"]["id"], item.body["kind"]))
    assert all(len(seen) == 1 for seen in by_id.values()), "one id, one event, however often it came"
    positions = {decode_event_cursor(delivery_id) for delivery_id in by_id}
    assert positions == set(events), "every event arrived, nothing else"
    for position, seen in zip(map(decode_event_cursor, by_id), by_id.values(), strict=True):
        assert position is not None and seen == {events[position]}
    acknowledged = [item for item in received if item.answered == 200]
    assert {item.delivery_id for item in acknowledged} == set(by_id), "each was acknowledged at last"
    assert in_flight <= {item.delivery_id for item in acknowledged}, "what the dead worker had sent came again"
    repeated = [i for i in by_id if sum(1 for item in received if item.delivery_id == i) > 1]
    assert set(in_flight) <= set(repeated)
    for task_id in {task for task, _ in events.values()}:
        firsts = []
        for item in acknowledged:
            if item.body["task"]["id"] == task_id and item.delivery_id not in firsts:
                firsts.append(item.delivery_id)
        assert [decode_event_cursor(i) for i in firsts] == sorted(p for p, (t, _) in events.items() if t == task_id)
