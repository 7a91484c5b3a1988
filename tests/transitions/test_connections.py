"""How many pooled connections a transition (or the email notifier) holds at once: one.

Work that holds a connection and waits for a second one beside it waits for ever once every
connection is held by work doing the same (a hundred duplicate submits on a fresh server process
did: every one held its transition's connection and waited for another to read the instance's
definition, until the pool's 30 s timeout)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event

from engine.catalog import default_registry
from engine.clock import ManualClock
from engine.state import InstanceStatus
from engine.storage.database import Database
from engine.tasks.email_actions import EmailActionTokens
from engine.transitions.engine import Engine
from engine.workers.executor import SystemTaskContext
from engine.workers.notifications import EmailNotifier
from tests.transitions.test_durability import approval_then_archive


class PeakConnections:
    """The most connections checked out of ``db``'s pool at one time."""

    def __init__(self) -> None:
        self.out = self.peak = 0

    def checked_out(self, *_: Any) -> None:
        self.out += 1
        self.peak = max(self.peak, self.out)

    def checked_in(self, *_: Any) -> None:
        self.out -= 1


@asynccontextmanager
async def counting(db: Database) -> AsyncIterator[PeakConnections]:
    pool = db.engine.sync_engine.pool
    counter = PeakConnections()
    event.listen(pool, "checkout", counter.checked_out)
    event.listen(pool, "checkin", counter.checked_in)
    try:
        yield counter
    finally:
        event.remove(pool, "checkout", counter.checked_out)
        event.remove(pool, "checkin", counter.checked_in)


async def test_a_transition_on_a_process_that_never_read_the_definition_holds_one_connection(
    engine: Engine, database_url: str
) -> None:
    await engine.deploy(approval_then_archive())
    instance = await engine.start("approval", {}, "alice")
    await engine.sequencer.idle()

    fresh = Database(database_url)  # another process: the definition is not cached
    try:
        cold = Engine(fresh, default_registry(), clock=ManualClock())
        async with counting(fresh) as connections:
            signalled = await cold.send_signal(instance.id, "approval", {"decision": "approved"}, "alice")
        await cold.sequencer.idle()
    finally:
        await fresh.dispose()
    assert connections.peak == 1, "the definition is read on the transition's own connection"
    assert signalled.revision > instance.revision  # the approval completed: the archive task waits
    assert signalled.status is InstanceStatus.WAITING_FOR_SIGNAL


async def test_the_notifier_on_a_process_that_never_read_the_definition_holds_one_connection(
    engine: Engine, database_url: str
) -> None:
    await engine.deploy(approval_then_archive())
    await engine.start("approval", {}, "alice")  # its task's CREATED is an event the notifier reads
    await engine.sequencer.idle()

    fresh = Database(database_url)
    try:
        cold = Engine(fresh, default_registry(), clock=ManualClock())
        tokens = EmailActionTokens(cold, "a-secret-key-of-at-least-thirty-two-bytes")
        async with SystemTaskContext(clock=cold.clock) as context, counting(fresh) as connections:
            sent = await EmailNotifier(cold, context, tokens, "http://127.0.0.1:9").run_once()
    finally:
        await fresh.dispose()
    assert sent == 0  # the node asks for no email: the definition was read to learn that
    assert connections.peak == 1, "the definition is read on the notifier's own connection"
