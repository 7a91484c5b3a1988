"""The event hub (engine/events/hub.py): commit order, the seam between replay and live, fan-out,
back-pressure and the PostgreSQL listener's reconnection."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager, suppress
from typing import Any, Literal

import asyncpg
import pytest
from sqlalchemy import text

from engine.errors import SubscriberOverflowError, SubscriptionLimitError
from engine.events.hub import EventFilter, EventHub
from engine.events.log import Delivery
from engine.events.numbering import write_events
from engine.state import Task, TaskEventKind, User
from engine.storage.database import Database
from engine.storage.task_events import NewTaskEvent, TaskEventRepository
from engine.storage.tasks import TaskRepository
from engine.tasks.service import TaskService
from engine.transitions.engine import Engine
from server.demo import load_demo
from tests.server.live import TIMEOUT, wait_until

EVERYTHING = EventFilter()


@pytest.fixture
async def demo(engine: Engine) -> Engine:
    await load_demo(engine)
    return engine


@asynccontextmanager
async def running_hub(engine: Engine, **options: Any) -> AsyncIterator[EventHub]:
    hub = EventHub(engine.db, **options)
    async with hub.running():
        engine.commit_listeners.append(hub.on_commit)
        try:
            yield hub
        finally:
            engine.commit_listeners.remove(hub.on_commit)


async def person(engine: Engine, user_id: str) -> User:
    found = await engine.user(user_id)
    assert found is not None
    return found


async def new_form_task(engine: Engine, by: str = "alice") -> Task:
    """A new task, its creation numbered (engine.sequencer numbers events after start returns): a
    subscription that joins after this does not begin with it."""
    instance = await engine.start("expense_approval", {"entityName": "Lunch"}, by)
    await engine.sequencer.idle()
    async with engine.db.read() as session:
        [task] = await TaskRepository(session).find_by_instance(instance.id)
    return task


async def event_positions(engine: Engine, after: int = 0) -> list[int | None]:
    await engine.sequencer.idle()
    async with engine.db.read() as session:
        return [e.position for e in await TaskEventRepository(session).after(after, 10_000)]


async def take(stream: AsyncGenerator[Delivery, None], count: int) -> list[Delivery]:
    return [await asyncio.wait_for(anext(stream), TIMEOUT) for _ in range(count)]


async def latest(engine: Engine) -> int:
    """The highest position, once what this process committed is numbered."""
    await engine.sequencer.idle()
    async with engine.db.read() as session:
        return await TaskEventRepository(session).latest_position()


async def test_replay_then_live_with_no_gap_and_no_duplicate(demo: Engine) -> None:
    alice, tasks = await person(demo, "alice"), TaskService(demo)
    task = await new_form_task(demo)
    start = await latest(demo)
    async with running_hub(demo, batch_size=2) as hub:  # small batches: the replay takes several reads
        for amount in range(5):
            await tasks.save_progress(alice, task.id, {"amount": amount}, None)
        async with aclosing(hub.stream(alice, EVERYTHING, after=start)) as stream:
            first = await take(stream, 3)
            # Changes while the replay is still being read land behind it, once.
            for amount in range(5, 8):
                await tasks.save_progress(alice, task.id, {"amount": amount}, None)
            rest = await take(stream, 6)
    assert [d.position for d in first + rest] == await event_positions(demo, start)
    assert [d.event.kind for d in first[:2]] == [TaskEventKind.CLAIMED, TaskEventKind.PROGRESS_SAVED]


async def test_concurrent_writers_reach_a_live_subscriber_exactly_once_in_commit_order(demo: Engine) -> None:
    dana = await person(demo, "dana")
    forms = [await new_form_task(demo) for _ in range(12)]
    start = await latest(demo)
    async with running_hub(demo) as hub, aclosing(hub.stream(dana, EVERYTHING)) as stream:
        first = asyncio.ensure_future(anext(stream))
        await wait_until(lambda: hub.subscriptions_of("dana") == 1, "the subscription")
        alice = await person(demo, "alice")
        await asyncio.gather(*(TaskService(demo).save_progress(alice, t.id, {"amount": 1}, None) for t in forms))
        delivered = [await asyncio.wait_for(first, TIMEOUT), *await take(stream, 2 * len(forms) - 1)]
    positions = [d.position for d in delivered]
    assert positions == sorted(positions) == await event_positions(demo, start)


async def test_visibility_and_filters_follow_the_task_as_it_is_now(demo: Engine) -> None:
    alice, bob, carol, erin = [await person(demo, u) for u in ("alice", "bob", "carol", "erin")]
    tasks = TaskService(demo)
    task = await new_form_task(demo)
    async with running_hub(demo) as hub, aclosing(hub.stream(erin, EVERYTHING)) as erins:
        first = asyncio.ensure_future(anext(erins))
        await wait_until(lambda: hub.subscriptions_of("erin") == 1, "erin's subscription")
        await tasks.assign(carol, task.id, "erin")
        given = await asyncio.wait_for(first, TIMEOUT)
        assert given.event.kind is TaskEventKind.ASSIGNED and given.task.assigned_user_id == "erin"
        await tasks.assign(carol, task.id, "bob")
        await tasks.post_message(bob, task.id, "mine now")
        own = await new_form_task(demo, by="erin")
        [next_one] = await take(erins, 1)
        assert next_one.task.id == own.id  # nothing of the reassigned task reached her
    # The filters, on what erin was given: her assignment (by carol) and her own new task.
    assert EventFilter.notifications().matches(erin, given) and not EventFilter.notifications().matches(carol, given)
    assert EventFilter(assigned_to_me=True).matches(erin, given)
    assert not EventFilter(assigned_to_me=True).matches(erin, next_one)
    # Delegated by bob to erin: hers to work on and still his to complete, so "assigned to me" for both.
    delegated = dataclasses.replace(given, task=dataclasses.replace(given.task, assigned_user_id="bob",
                                                                    delegated_to="erin"))  # fmt: skip
    assert EventFilter(assigned_to_me=True).matches(erin, delegated)
    assert EventFilter(assigned_to_me=True).matches(bob, delegated)
    assert EventFilter.notifications().matches(erin, delegated)
    assert EventFilter(role="requester", workflow_instance_id=own.workflow_instance_id).matches(erin, next_one)
    assert not EventFilter(role="approver").matches(erin, next_one)
    assert EventFilter().matches(alice, next_one)  # erin's instance, but alice holds its role


async def test_a_full_queue_ends_only_that_subscription(demo: Engine) -> None:
    alice, tasks = await person(demo, "alice"), TaskService(demo)
    task = await new_form_task(demo)
    async with (
        running_hub(demo, queue_size=2) as hub,
        aclosing(hub.stream(alice, EVERYTHING)) as slow,
        aclosing(hub.stream(alice, EVERYTHING)) as fast,
    ):
        slow_first = asyncio.ensure_future(anext(slow))  # joins the hub, then never reads again
        fast_first = asyncio.ensure_future(anext(fast))
        await wait_until(lambda: hub.subscriptions_of("alice") == 2, "both subscriptions")
        await tasks.claim(alice, task.id)
        claimed = (await asyncio.wait_for(slow_first, TIMEOUT)).position
        await asyncio.wait_for(fast_first, TIMEOUT)
        for amount in range(3):
            await tasks.save_progress(alice, task.id, {"amount": amount}, None)
            await take(fast, 1)
        with pytest.raises(SubscriberOverflowError) as overflow:
            await anext(slow)
        assert overflow.value.resume_after == claimed  # the last event it was given
        await tasks.post_message(alice, task.id, "still flowing")
        [message] = await take(fast, 1)
        assert message.event.kind is TaskEventKind.MESSAGE_POSTED and message.message is not None
    assert hub.subscriptions_of("alice") == 0


async def test_a_user_has_a_bounded_number_of_subscriptions(demo: Engine) -> None:
    alice = await person(demo, "alice")
    async with running_hub(demo, max_per_user=1) as hub, aclosing(hub.stream(alice, EVERYTHING)) as first:
        pending = asyncio.ensure_future(anext(first))
        await wait_until(lambda: hub.subscriptions_of("alice") == 1, "the first subscription")
        with pytest.raises(SubscriptionLimitError):
            await anext(hub.stream(alice, EVERYTHING))
        pending.cancel()
        with suppress(asyncio.CancelledError):
            await pending


@pytest.mark.postgres_only
async def test_a_lost_listener_reconnects_and_catches_up(database_url: str, demo: Engine) -> None:
    """Events committed by another process while the LISTEN connection is down arrive after it reconnects."""
    alice = await person(demo, "alice")
    gate = asyncio.Event()
    gate.set()

    async def connect() -> asyncpg.Connection:
        await gate.wait()
        return await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))

    other_process = Engine(Database(database_url), demo.registry, clock=demo.clock)  # its commits only NOTIFY
    try:
        # No poll to fall back on: only the listener, or catching up after reconnecting, delivers.
        hub = EventHub(demo.db, poll_seconds=3600, reconnect_seconds=0.01, listen_connect=connect)
        async with hub.running(), aclosing(hub.stream(alice, EVERYTHING)) as stream:
            await wait_until(lambda: hub.listening and hub.subscriptions_of("alice") == 0, "the listener")
            pending = asyncio.ensure_future(anext(stream))
            await wait_until(lambda: hub.subscriptions_of("alice") == 1, "the subscription")
            await new_form_task(other_process)
            assert (await asyncio.wait_for(pending, TIMEOUT)).event.kind is TaskEventKind.CREATED  # via NOTIFY

            gate.clear()
            catch_ups = hub.catch_ups
            async with demo.db.read() as session:
                await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": hub.listener.pid})
            await wait_until(lambda: not hub.listening, "the listener to notice")
            await wait_until(lambda: hub.catch_ups > catch_ups, "the reader to settle")  # it read once on the loss
            missed = await new_form_task(other_process)  # nobody is listening, nobody polls
            gate.set()
            [caught_up] = await take(stream, 1)
            assert caught_up.task.id == missed.id and hub.listener.connections == 2
    finally:
        await other_process.db.dispose()


async def test_an_event_its_process_never_numbered_arrives_at_the_next_poll(demo: Engine) -> None:
    """A process that dies between its commit and its numbering round (PostgreSQL) leaves its events
    without positions, where no reader sees them and no round announces them: the hub, having heard
    nothing for ``poll_seconds``, runs a round itself. (On SQLite the poll is how other processes'
    commits arrive at all.)"""
    alice = await person(demo, "alice")
    task = await new_form_task(demo)
    async with running_hub(demo, poll_seconds=0.2) as hub, aclosing(hub.stream(alice, EVERYTHING)) as stream:
        pending = asyncio.ensure_future(anext(stream))
        await wait_until(lambda: hub.subscriptions_of("alice") == 1, "the subscription")
        async with demo.db.transaction() as session:  # the events of a transition, but no round after it
            written = await write_events(session, [NewTaskEvent(TaskEventKind.UPDATED, task, "alice",
                                                                demo.clock.now(), None)])  # fmt: skip
        arrived = await asyncio.wait_for(pending, TIMEOUT)
    assert arrived.event.id == written and arrived.event.kind is TaskEventKind.UPDATED


@pytest.mark.postgres_only
async def test_a_quiet_hub_with_its_listener_up_reads_nothing(demo: Engine) -> None:
    """Its poll's round numbers nothing, and anything numbered elsewhere would have been announced:
    so it does not read the log (which an idle server would otherwise do every poll)."""
    async with running_hub(demo, poll_seconds=0.1) as hub:
        await wait_until(lambda: hub.listening, "the listener")
        await asyncio.sleep(0.15)
        before = hub.catch_ups
        await asyncio.sleep(0.5)  # five polls
        assert hub.catch_ups == before


class WakeWhileTimingOut(asyncio.Event):
    """The hub's wake flag, with a wake that lands while ``wait_for`` is cancelling a wait that timed out: on a
    loaded host the poll's timer and a NOTIFY (or the commit listener) are handled in the same turn of the loop."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    async def wait(self) -> Literal[True]:
        try:
            return await super().wait()
        except asyncio.CancelledError:
            if self.armed:
                self.armed = False
                self.set()
            raise


@pytest.mark.postgres_only
async def test_a_wake_that_lands_as_a_poll_times_out_is_not_lost(database_url: str, demo: Engine) -> None:
    """The poll's round numbers nothing (the event's own process numbered it) and LISTEN is up, so the poll
    does not read: the wake is all that says there is something to read, and it must not be cleared."""
    alice = await person(demo, "alice")
    other_process = Engine(Database(database_url), demo.registry, clock=demo.clock)
    try:
        # Polls far enough apart that the event is numbered by its own process, not by a poll's round.
        async with running_hub(demo, poll_seconds=0.5) as hub, aclosing(hub.stream(alice, EVERYTHING)) as stream:
            await wait_until(lambda: hub.listening, "the listener")
            wake = hub._wake = WakeWhileTimingOut()
            pending = asyncio.ensure_future(anext(stream))
            await wait_until(lambda: hub.subscriptions_of("alice") == 1, "the subscription")
            hub.listener.on_notify = lambda payload: None  # this round's NOTIFY is the wake below
            task = await new_form_task(other_process)
            wake.armed = True
            arrived = await asyncio.wait_for(pending, TIMEOUT)
            assert arrived.task.id == task.id and not wake.armed
    finally:
        await other_process.db.dispose()


@pytest.mark.postgres_only
async def test_an_event_whose_notify_is_lost_arrives_with_the_next_poll(database_url: str, demo: Engine) -> None:
    """Another process numbers the event and its NOTIFY never reaches this hub (a listener reconnecting, say):
    LISTEN is up and the poll's round numbers nothing, yet the log is ahead of the hub, so the poll reads it."""
    alice = await person(demo, "alice")
    other_process = Engine(Database(database_url), demo.registry, clock=demo.clock)
    try:
        async with running_hub(demo, poll_seconds=0.3) as hub, aclosing(hub.stream(alice, EVERYTHING)) as stream:
            await wait_until(lambda: hub.listening, "the listener")
            pending = asyncio.ensure_future(anext(stream))
            await wait_until(lambda: hub.subscriptions_of("alice") == 1, "the subscription")
            hub.listener.on_notify = lambda payload: None
            task = await new_form_task(other_process)
            arrived = await asyncio.wait_for(pending, TIMEOUT)
            assert arrived.task.id == task.id
    finally:
        await other_process.db.dispose()
