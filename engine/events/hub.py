"""Real time (docs/design.md §4): committed task events, pushed to subscribers the moment they commit.

How events are numbered is :mod:`engine.events.numbering`, how they are read back :mod:`engine.events.log`;
this module fans them out.

Reading
-------
One :class:`EventHub` per server process. It reads each committed event once (with its task as it is
now, the instance's starter, the users it mentions and the message of ``MESSAGE_POSTED``) and fans it out in memory to
its subscribers' bounded queues. It is woken by the engine's commit listener (every commit of this
process, once its events are numbered, and all of SQLite's real-time signalling), on PostgreSQL by
its single ``LISTEN`` connection (:mod:`engine.storage.postgres.listener`; every numbering round, other
processes' too), and by a poll when it has heard nothing for a while (SQLite's other processes, a
``LISTEN`` connection that is down, and on PostgreSQL events no round has numbered: the poll runs
one). A lost ``LISTEN`` connection is re-opened, and the hub then reads everything after the last
position it saw.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager, suppress
from dataclasses import dataclass

from engine.errors import SubscriberOverflowError, SubscriptionLimitError
from engine.events.log import Delivery, load_deliveries
from engine.events.numbering import CHANNEL, number_events
from engine.state import TaskEventKind, User
from engine.storage.database import Database
from engine.storage.postgres.listener import Connect, Listener, connect_to
from engine.storage.task_events import TaskEventRepository
from engine.tasks.permissions import can_see_task, is_assigned_to, is_candidate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventFilter:
    """Which visible events a subscription wants. Visibility (docs/design.md §5) is always applied first."""

    workflow_instance_id: str | None = None
    step_instance_id: str | None = None
    task_id: str | None = None
    assigned_to_me: bool = False
    role: str | None = None
    kinds: frozenset[TaskEventKind] | None = None
    relevant_only: bool = False
    """Only tasks assigned to the user, their roles or their groups."""
    others_only: bool = False
    """Leave out events whose actor is the user."""

    @classmethod
    def notifications(cls) -> EventFilter:
        """Changes others make to tasks assigned to the user, their roles or their groups."""
        return cls(relevant_only=True, others_only=True)

    @classmethod
    def messages(cls, task_id: str) -> EventFilter:
        return cls(task_id=task_id, kinds=frozenset({TaskEventKind.MESSAGE_POSTED}))

    def matches(self, user: User, delivery: Delivery) -> bool:
        event, task = delivery.event, delivery.task
        if not can_see_task(user, task, delivery.started_by):
            return False
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        if self.others_only and event.actor_id == user.id:
            return False
        if self.relevant_only and not (is_assigned_to(user, task) or is_candidate(user, task)):
            return False
        if self.assigned_to_me and not is_assigned_to(user, task):
            return False
        return (
            (self.workflow_instance_id is None or event.workflow_instance_id == self.workflow_instance_id)
            and (self.step_instance_id is None or event.step_instance_id == self.step_instance_id)
            and (self.task_id is None or event.task_id == self.task_id)
            and (self.role is None or task.assigned_role == self.role)
        )


class _Overflowed(Exception):
    pass


class _Closed(Exception):
    pass


class _Subscriber:
    """One live subscription's bounded queue, filled by the hub and drained by the subscription."""

    def __init__(self, accepts: Callable[[Delivery], bool], capacity: int) -> None:
        self.accepts = accepts
        self.capacity = capacity
        self.queue: deque[Delivery] = deque()
        self.ready = asyncio.Event()
        self.overflowed = False
        self.closed = False

    def offer(self, delivery: Delivery) -> bool:
        """Queue ``delivery`` if wanted; False when the queue overflowed (the subscriber is done)."""
        try:
            wanted = self.accepts(delivery)
        except Exception:  # a broken filter must not stop the hub or the other subscribers
            log.exception("subscription filter failed on event %s", delivery.position)
            wanted = False
        if not wanted:
            return True
        if len(self.queue) >= self.capacity:
            self.overflowed = True
            self.queue.clear()  # free the memory now; the subscription ends at its next read
            self.ready.set()
            return False
        self.queue.append(delivery)
        self.ready.set()
        return True

    def close(self) -> None:
        self.closed = True
        self.ready.set()

    async def next(self) -> Delivery:
        while True:
            if self.overflowed:
                raise _Overflowed
            if self.queue:
                return self.queue.popleft()
            if self.closed:
                raise _Closed
            self.ready.clear()
            await self.ready.wait()


class EventHub:
    """Fans committed task events out to this process's subscribers; see the module docstring.

    ``queue_size`` bounds each subscriber's backlog; ``max_per_user`` bounds a user's live
    subscriptions in this process. ``listen_connect`` opens the PostgreSQL ``LISTEN`` connection
    (a plain asyncpg connection to the database by default; tests pass their own).
    """

    def __init__(
        self,
        db: Database,
        *,
        queue_size: int = 1000,
        max_per_user: int = 50,
        batch_size: int = 500,
        poll_seconds: float = 5.0,
        reconnect_seconds: float = 1.0,
        listen_connect: Connect | None = None,
    ) -> None:
        self.db = db
        self.queue_size = queue_size
        self.max_per_user = max_per_user
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.reconnect_seconds = reconnect_seconds
        self.listener = Listener(
            listen_connect or connect_to(db.engine.url), CHANNEL, self._on_notify, self._on_listening,
            health_seconds=poll_seconds, reconnect_seconds=reconnect_seconds,
        )  # fmt: skip
        self._subscribers: set[_Subscriber] = set()
        self._per_user: Counter[str] = Counter()
        self._cursor = 0
        self._wake = asyncio.Event()
        self._started = False
        self.catch_ups = 0
        """How many times the reader has read up to the newest event (for tests and metrics)."""
        self.events_read = 0
        """Events the reader has read from the log and fanned out (for metrics)."""
        self.delivered = 0
        """Events handed to subscriptions, replays included (for metrics)."""

    @property
    def listening(self) -> bool:
        """PostgreSQL: whether the ``LISTEN`` connection is up."""
        return self.listener.listening

    @property
    def cursor(self) -> int:
        """The highest position fanned out so far."""
        return self._cursor

    def subscriptions_of(self, user_id: str) -> int:
        return self._per_user[user_id]

    @property
    def subscriptions(self) -> int:
        """Live subscriptions in this process."""
        return self._per_user.total()

    def queue_depths(self) -> list[int]:
        """Each live subscription's backlog: events queued for it and not yet sent."""
        return [len(subscriber.queue) for subscriber in self._subscribers]

    def wake(self) -> None:
        """Read new events now (the in-process signal)."""
        self._wake.set()

    async def on_commit(self) -> None:
        """An :attr:`Engine.commit_listeners <engine.transitions.engine.Engine.commit_listeners>` callback."""
        self.wake()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[EventHub]:
        """Read and fan out events (and on PostgreSQL listen) until the block exits."""
        stop = asyncio.Event()
        tasks = []
        if self.db.dialect == "postgresql":
            # LISTEN first, then read the starting cursor: nothing numbered in between goes unseen.
            first_attempt = asyncio.Event()
            tasks.append(asyncio.create_task(self.listener.run(stop, first_attempt), name="stepwise-events-listener"))
            await first_attempt.wait()
        async with self.db.read() as session:
            self._cursor = await TaskEventRepository(session).latest_position()
        self._started = True
        tasks.append(asyncio.create_task(self._read_loop(stop), name="stepwise-events-reader"))
        try:
            yield self
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with suppress(asyncio.CancelledError):
                    await task
            for subscriber in self._subscribers:
                subscriber.close()
            self._subscribers.clear()

    async def stream(self, user: User, filter: EventFilter, after: int | None = None) -> AsyncGenerator[Delivery, None]:
        """The events ``user`` may see that match ``filter``, in commit order, until the caller stops.

        With ``after`` (a position) it first replays what committed after it from the database,
        then continues live with no gap and no duplicate at the seam: it joins the hub (from then on
        its queue gets every event past the hub's cursor), catches up from the database once more,
        and drops queued events it has already read. Without ``after`` it starts at the hub's cursor.

        Raises :class:`SubscriptionLimitError` when the user has too many live subscriptions here,
        and :class:`SubscriberOverflowError` (with the position to resume after) when its queue overflows.
        """
        if self._per_user[user.id] >= self.max_per_user:
            raise SubscriptionLimitError(
                f"at most {self.max_per_user} live subscriptions per user; end one before starting another"
            )
        self._per_user[user.id] += 1
        subscriber: _Subscriber | None = None

        def accepts(delivery: Delivery) -> bool:
            return filter.matches(user, delivery)

        position = after

        async def replay() -> AsyncGenerator[Delivery, None]:
            nonlocal position
            assert position is not None
            while True:
                batch = await load_deliveries(self.db, position, self.batch_size)
                for delivery in batch.deliveries:
                    if accepts(delivery):
                        yield delivery
                position = batch.read_through
                if not batch.full:
                    return

        try:
            if position is not None:  # the bulk of a replay, before joining, so the queue stays small
                async with aclosing(replay()) as replayed:
                    async for delivery in replayed:
                        self.delivered += 1
                        yield delivery
            subscriber = _Subscriber(accepts, self.queue_size)
            self._subscribers.add(subscriber)
            if position is None:
                position = self._cursor
            else:  # what committed during the replay; the queue holds everything past the hub's cursor
                async with aclosing(replay()) as replayed:
                    async for delivery in replayed:
                        self.delivered += 1
                        yield delivery
            seen = last = position
            while True:
                try:
                    delivery = await subscriber.next()
                except _Overflowed:
                    raise SubscriberOverflowError(
                        f"this subscription fell more than {self.queue_size} events behind and was ended; "
                        "subscribe again with `after` set to the last cursor received",
                        resume_after=last,
                    ) from None
                except _Closed:
                    return
                if delivery.position <= seen:
                    continue
                last = delivery.position
                self.delivered += 1
                yield delivery
        finally:
            if subscriber is not None:
                self._subscribers.discard(subscriber)
            self._per_user[user.id] -= 1
            if self._per_user[user.id] <= 0:
                del self._per_user[user.id]

    # -- the reader and the listener -----------------------------------------------------------

    async def _read_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # While LISTEN is up every numbering round anywhere wakes the hub. Having heard nothing
            # for poll_seconds it looks anyway: SQLite's other processes cannot signal, a listener
            # may be down, and on PostgreSQL an event whose process died before numbering it waits
            # for the next round anyone runs (engine.events.numbering), so the hub runs one.
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            # Woken is whether a wake is pending now, not whether the wait saw it: a wake that lands while
            # wait_for is cancelling its timed-out wait sets the flag after the wait gave up, and clearing
            # it as a timeout lost it; with LISTEN up the poll below then skipped the read, and the event
            # waited for the next one (a page open all along never showed it).
            woken = self._wake.is_set()
            self._wake.clear()
            try:
                if not woken:
                    numbered = await number_events(self.db)
                    # Nothing new anywhere, as LISTEN would have said; one index probe of the log's head
                    # still checks, so a wake lost some other way (a NOTIFY dropped with a reconnecting
                    # listener) delays an event by one poll rather than until the next event.
                    if numbered is None and self.listening and not await self._log_is_ahead():
                        continue
                await self._catch_up()
            except Exception:  # a database hiccup: the next wake or poll reads from the same cursor
                log.exception("reading task events after %s failed", self._cursor)
                await _wait(stop, self.reconnect_seconds)

    async def _log_is_ahead(self) -> bool:
        async with self.db.read() as session:
            return await TaskEventRepository(session).latest_position() > self._cursor

    async def _catch_up(self) -> None:
        while True:
            # With nobody subscribed (most commits of a quiet server) the users are not worth reading.
            batch = await load_deliveries(self.db, self._cursor, self.batch_size, with_users=bool(self._subscribers))
            # Publishing and moving the cursor happen without an await in between, so a subscriber
            # joining sees every event either already fanned out (position <= cursor) or still to come.
            for delivery in batch.deliveries:
                for subscriber in list(self._subscribers):
                    if not subscriber.offer(delivery):
                        self._subscribers.discard(subscriber)
            self._cursor = batch.read_through
            self.events_read += len(batch.deliveries)
            if not batch.full:
                self.catch_ups += 1
                return

    def _on_notify(self, payload: str) -> None:
        try:
            latest = int(payload)
        except ValueError:
            latest = self._cursor + 1
        if latest > self._cursor:
            self.wake()

    def _on_listening(self, up: bool) -> None:
        # Up again: catch up on whatever committed while nobody listened (not needed for the first
        # connection, which is up before the starting cursor is read). Down: the reader polls.
        if self._started or not up:
            self.wake()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
