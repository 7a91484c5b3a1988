"""Running system tasks next to the server (the embedded worker) or alone (``stepwise worker``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx

from engine import BUILTIN_EXECUTORS, Engine, ExecutionContext, HostPolicy, Worker
from server.settings import Settings


@asynccontextmanager
async def running_worker(engine: Engine, settings: Settings) -> AsyncIterator[Worker]:
    """A worker polling in the background, woken by every commit of this process, stopped on exit."""
    async with httpx.AsyncClient(follow_redirects=False) as http:
        context = ExecutionContext(
            http=http, clock=engine.clock, smtp_url=settings.smtp_url,
            host_policy=HostPolicy(allow=settings.http_allow, deny=settings.http_deny),
            settings=settings.template_settings,
        )  # fmt: skip
        worker = Worker(
            engine, {e.type: e for e in BUILTIN_EXECUTORS}, context, secrets=settings.secrets,
            lease=timedelta(seconds=settings.worker_lease_seconds), poll_interval=settings.worker_poll_seconds,
        )  # fmt: skip

        async def wake() -> None:
            worker.wake()

        engine.commit_listeners.append(wake)
        stop = asyncio.Event()
        loop = asyncio.create_task(worker.run(stop))
        try:
            yield worker
        finally:
            stop.set()
            engine.commit_listeners.remove(wake)
            await loop
