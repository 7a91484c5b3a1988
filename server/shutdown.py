"""Graceful shutdown of a served process (``stepwise serve``).

On SIGTERM (or SIGINT) uvicorn stops accepting connections, lets in-flight HTTP requests finish for
up to ``STEPWISE_SHUTDOWN_SECONDS`` and closes WebSockets with code 1012 ("service restart"), which
graphql-ws clients reconnect on (``after`` the last cursor they received loses nothing). This module
adds what uvicorn cannot know: the moment the signal arrives, ``/readyz`` answers 503 (a balancer
stops sending work) and the embedded worker stops claiming and gets the same grace for the attempts
it runs, then hands the rest back (:mod:`engine.worker`). The lifespan then closes the event hub and
the database pool once numbering rounds in flight have ended.

The signal handlers uvicorn installed are chained, not replaced; this watches only in a served
process (``create_app_from_env``), never in tests that start apps in their own process.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Shutdown:
    """Whether this process has begun to shut down; :attr:`begun` is set once it has."""

    def __init__(self) -> None:
        self.begun = asyncio.Event()

    @property
    def in_progress(self) -> bool:
        return self.begun.is_set()

    @contextmanager
    def on_signals(self) -> Iterator[None]:
        """While the block runs, SIGTERM and SIGINT also set :attr:`begun` (then call the previous handler)."""
        loop = asyncio.get_running_loop()
        previous: dict[signal.Signals, Any] = {}

        def handle(signum: int, frame: FrameType | None) -> None:
            if not self.begun.is_set():
                log.info("%s received: shutting down", signal.Signals(signum).name)
            loop.call_soon_threadsafe(self.begun.set)
            earlier = previous.get(signal.Signals(signum))
            if callable(earlier):
                earlier(signum, frame)

        for sig in SIGNALS:
            previous[sig] = signal.signal(sig, handle)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
