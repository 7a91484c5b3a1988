"""Running system tasks next to the server (the embedded worker) or alone (``stepwise worker``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from opentelemetry.sdk.trace import TracerProvider

from engine import (
    BUILTIN_EXECUTORS,
    DeliveryPolicy,
    EmailNotifier,
    Engine,
    SystemTaskContext,
    WebhookDispatcher,
    Worker,
)
from server.settings import Settings
from server.tracing import instrument_http_client


@asynccontextmanager
async def running_worker(
    engine: Engine,
    settings: Settings,
    stop: asyncio.Event | None = None,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[Worker]:
    """A worker polling in the background, woken by every commit of this process, stopped on exit or
    as soon as ``stop`` is set (a shutdown has begun): attempts running then get
    ``settings.shutdown_seconds`` to finish before they are handed back."""
    context = SystemTaskContext(
        clock=engine.clock, smtp_url=settings.smtp_url,
        host_policy=settings.host_policy(),
        settings=settings.template_settings, max_body_bytes=settings.max_json_bytes, calendars=engine.calendars,
    )  # fmt: skip
    lease = timedelta(seconds=settings.worker_lease_seconds)
    async with context:
        if tracer_provider is not None:
            instrument_http_client(context.http, tracer_provider)
        worker = Worker(
            engine, {e.type: e for e in BUILTIN_EXECUTORS}, context, secrets=settings.secrets, lease=lease,
            poll_interval=settings.worker_poll_seconds,
        )  # fmt: skip
        worker.notifier = EmailNotifier(engine, context, settings.email_tokens(engine), settings.public_url)
        worker.webhooks = webhooks = WebhookDispatcher(
            engine.db, engine.clock, settings.host_policy(), worker.worker_id, webhook_policy(settings, lease)
        )

        async def wake() -> None:
            worker.wake()

        engine.commit_listeners.append(wake)
        stop = stop or asyncio.Event()
        loop = asyncio.create_task(worker.run(stop, grace_seconds=settings.shutdown_seconds))
        try:
            yield worker
        finally:
            stop.set()
            engine.commit_listeners.remove(wake)
            await loop
            await webhooks.aclose()


def webhook_policy(settings: Settings, lease: timedelta) -> DeliveryPolicy:
    return DeliveryPolicy(
        max_attempts=settings.webhook_max_attempts, first_retry=timedelta(seconds=settings.webhook_retry_seconds),
        timeout=settings.webhook_timeout_seconds, lease=lease, log_retention=timedelta(days=settings.webhook_log_days),
    )  # fmt: skip
