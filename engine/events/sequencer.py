"""Numbering this process's committed events (:mod:`engine.events.numbering`).

On PostgreSQL a transition's events get their positions after its commit, from a numbering round
this process runs in the background: the transition returns at once, and the engine's commit
listeners (the event hub, the worker) hear of it when the round has numbered its events. One round
runs at a time per process (across processes they queue for the event lock); each numbers every
event committed before it began, so however many transitions commit during a round, one more round
serves them all. Waiting for rounds in the transitions themselves cost 12% of the transitions/s
at 16 concurrent drivers (bench.engine_throughput): each waited for the round in progress and its own.

A round begins at once when the last one began at least ``min_interval`` ago, else when it has been
that long: a quiet process announces a commit within a round trip, a busy one runs at most 100 rounds
a second (by default), each numbering what several transitions committed. A round's commit costs
about what a transition's does, so at one driver a round per transition cost a quarter of the
transitions/s; ten milliseconds apart, nothing measurable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from engine.events.numbering import number_events
from engine.storage.database import Database

log = logging.getLogger(__name__)


class EventSequencer:
    def __init__(self, db: Database, numbered: Callable[[], Awaitable[None]], *, min_interval: float = 0.01) -> None:
        """``numbered`` is called after every round (it tells the engine's commit listeners); rounds
        begin at least ``min_interval`` seconds apart."""
        self.db = db
        self.numbered = numbered
        self.min_interval = min_interval
        self.rounds = 0
        """Rounds run by this process (for tests and metrics)."""
        self._wanted = False
        self._running: asyncio.Task[None] | None = None
        self._last_began = 0.0
        db.before_dispose(self.idle)

    def committed(self) -> None:
        """A transaction that wrote events committed: number them soon, in the background."""
        self._wanted = True  # a round in progress may have read before that commit: one more after it
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._rounds(), name="stepwise-event-numbering")

    async def idle(self) -> None:
        """Return once no round is running or wanted: every event this process committed before the
        call has been numbered (or its round failed, and it waits for the next anyone runs)."""
        while self._running is not None and not self._running.done():
            await asyncio.shield(self._running)

    async def _rounds(self) -> None:
        while self._wanted:
            wait = self._last_began + self.min_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_began = time.monotonic()
            self._wanted = False
            self.rounds += 1
            try:
                await number_events(self.db)
            except Exception:  # committed all the same: the next round anyone runs numbers them
                log.exception("numbering committed events failed")
                return
            await self.numbered()
