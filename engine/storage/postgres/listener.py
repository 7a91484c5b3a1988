"""One PostgreSQL ``LISTEN`` connection that outlives network trouble.

It is a plain asyncpg connection outside SQLAlchemy's pool (a pooled connection would be handed to
someone else, or recycled, with the LISTEN still on it). A lost connection — the server restarted,
the backend was terminated, a socket died silently (caught by a health check every
``health_seconds``) — is re-opened after ``reconnect_seconds``; ``on_state`` hears of each change,
so its owner can catch up on what it missed while nobody was listening.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from functools import partial
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

log = logging.getLogger(__name__)

Connect = Callable[[], Awaitable[asyncpg.Connection]]
_CONNECTION_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


def connect_to(url: URL) -> Connect:
    """Opens asyncpg connections to the database a SQLAlchemy ``postgresql+asyncpg`` URL names."""
    options: dict[str, Any] = url.translate_connect_args(username="user", database="database")
    if "ssl" in url.query:
        options["ssl"] = url.query["ssl"]

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(**options, timeout=10)

    return connect


class Listener:
    """Keeps ``LISTEN channel`` open while :meth:`run` runs; calls ``on_notify(payload)`` per notification."""

    def __init__(
        self,
        connect: Connect,
        channel: str,
        on_notify: Callable[[str], None],
        on_state: Callable[[bool], None],
        *,
        health_seconds: float = 5.0,
        reconnect_seconds: float = 1.0,
    ) -> None:
        self.connect, self.channel = connect, channel
        self.on_notify, self.on_state = on_notify, on_state
        self.health_seconds, self.reconnect_seconds = health_seconds, reconnect_seconds
        self.listening = False
        self.connections = 0
        """How many times the connection was opened (1 + reconnections)."""
        self.pid: int | None = None
        """The server process id of the current connection."""

    async def run(self, stop: asyncio.Event, first_attempt: asyncio.Event) -> None:
        """Listen until ``stop``; ``first_attempt`` is set once the first connection is up or has failed."""
        while not stop.is_set():
            try:
                connection = await self.connect()
            except _CONNECTION_ERRORS as exc:
                log.warning("cannot open the LISTEN connection (%s); retrying", exc)
                first_attempt.set()
                await _wait_any((stop,), self.reconnect_seconds)
                continue
            lost = asyncio.Event()
            connection.add_termination_listener(partial(_set_event, lost))
            try:
                await connection.add_listener(self.channel, self._notified)
                self.listening, self.pid = True, connection.get_server_pid()
                self.connections += 1
                first_attempt.set()
                self.on_state(True)
                while not stop.is_set() and not lost.is_set():
                    await _wait_any((stop, lost), self.health_seconds)
                    if not stop.is_set() and not lost.is_set():  # a silently dead socket shows up here
                        await connection.fetchval("SELECT 1", timeout=self.health_seconds)
            except _CONNECTION_ERRORS as exc:
                log.warning("the LISTEN connection failed: %s", exc)
            finally:
                self.listening = False
                connection.terminate()
                self.on_state(False)
            if not stop.is_set():
                log.warning("the LISTEN connection was lost; reconnecting in %s s", self.reconnect_seconds)
                await _wait_any((stop,), self.reconnect_seconds)

    def _notified(self, connection: object, pid: int, channel: str, payload: str) -> None:
        self.on_notify(payload)


def _set_event(event: asyncio.Event, _connection: object) -> None:
    event.set()


async def _wait_any(events: Sequence[asyncio.Event], seconds: float) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        with suppress(TimeoutError):
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
