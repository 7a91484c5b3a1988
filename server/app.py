"""``create_app(settings)``: the Starlette application with its lifespan, routes and endpoint."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from datetime import timedelta

from opentelemetry.sdk.trace import TracerProvider
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route, WebSocketRoute

from engine import (
    BlobStore,
    Clock,
    Database,
    EventHub,
    Services,
    current_revision,
    head_revision,
    upgrade,
)
from schema.limits import OperationLimits
from schema.schema import build_schema
from server.access import ObservedRequests
from server.admission import FairRequests
from server.bodies import BoundedBodies
from server.devtools import Mailbox, dev_routes, running_mailbox
from server.email_actions import email_action_routes
from server.engines import engine_from_settings
from server.files import document_routes
from server.graphiql import graphiql_assets_mount
from server.graphql_app import StepwiseGraphQL
from server.health import health_routes
from server.logs import configure_logging
from server.metrics import Metrics, metrics_route
from server.rate_limits import RateLimits
from server.settings import Settings
from server.shutdown import Shutdown
from server.tracing import graphql_tracing, instrument_database, request_tracer, tracer_provider_for
from server.webapp import web_routes
from server.workers import running_worker

log = logging.getLogger(__name__)


class NotMigratedError(RuntimeError):
    """The database is not at the latest migration and the server was not told to migrate it."""


async def prepare_database(db: Database, settings: Settings) -> None:
    current, head = await current_revision(db), head_revision()
    if current == head:
        return
    if settings.auto_migrate:
        log.info("migrating the database from %s to %s", current, head)
        await upgrade(db)
        return
    raise NotMigratedError(
        f"the database at {settings.database_url} is at migration {current or 'none'}, not {head}: "
        "run `stepwise db upgrade` (or start with `stepwise serve --migrate`)"
    )


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    freeze_startup_objects: bool = False,
    tracer_provider: TracerProvider | None = None,
    handle_signals: bool = False,
) -> Starlette:
    """``tracer_provider`` replaces the one ``STEPWISE_OTLP_ENDPOINT`` would make (tests pass an
    in-memory one); ``handle_signals``: a served process's SIGTERM begins its graceful shutdown."""
    settings = settings or Settings.from_env()
    mailbox = Mailbox()
    if settings.dev and settings.smtp_url is None:
        settings = replace(settings, smtp_url=f"smtp://127.0.0.1:{settings.dev_mailbox_port}")
    engine = engine_from_settings(settings, clock)
    db = engine.db
    blobs = BlobStore(settings.files_dir)
    services = Services.build(  # once per app: every request goes through these
        engine, blobs, host_policy=settings.host_policy(),
        webhook_secret_grace=timedelta(hours=settings.webhook_secret_grace_hours), secrets=settings.secrets,
        email_tokens=settings.email_tokens(engine),
    )  # fmt: skip
    events = EventHub(
        db, queue_size=settings.subscription_queue_size, max_per_user=settings.subscriptions_per_user,
        poll_seconds=settings.events_poll_seconds,
    )  # fmt: skip
    metrics = Metrics(engine, events) if settings.metrics else None
    if metrics is not None:
        engine.observer = metrics
    tracing = tracer_provider or tracer_provider_for(settings)
    if tracing is not None:
        instrument_database(db, tracing)
    rate_limits = RateLimits(settings)
    instruments = [graphql_tracing(tracing)] if tracing else []
    limits = OperationLimits(max_depth=settings.max_query_depth, max_aliases=settings.max_aliases,
                             max_tokens=settings.max_tokens, max_document_bytes=settings.max_document_bytes,
                             max_cost=settings.max_query_cost)  # fmt: skip
    schema = build_schema(
        mask_errors=settings.mask_errors,
        instruments=instruments,
        observer=metrics,
        admission=rate_limits if rate_limits.enabled else None,
        fast_execution=settings.fast_paths.execution,
        limits=limits,
        anonymous_introspection=settings.anonymous_introspection or settings.dev,
    )
    graphql = StepwiseGraphQL(schema, services, settings, events, slots=rate_limits.slots)
    shutdown = Shutdown()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(db.dispose)
            if tracing is not None and tracer_provider is None:  # ours: flush what is batched, then stop
                stack.push_async_callback(asyncio.to_thread, tracing.shutdown)
            if handle_signals:
                stack.enter_context(shutdown.on_signals())
            await prepare_database(db, settings)
            await stack.enter_async_context(events.running())
            engine.commit_listeners.append(events.on_commit)
            stack.callback(engine.commit_listeners.remove, events.on_commit)
            if settings.dev:
                await stack.enter_async_context(running_mailbox(mailbox, settings.dev_mailbox_port))
            if settings.embedded_worker:
                await stack.enter_async_context(running_worker(engine, settings, shutdown.begun, tracing))
            if freeze_startup_objects:
                # A started server holds ~140k long-lived objects (schema, SQLAlchemy, Jinja, caches) that
                # every full collection walked: 120 ms pauses, the inbox's p99 (bench.inbox_scaling). Frozen,
                # the collector skips them (8 ms). A served process also keeps ~400 live objects per
                # subscription; rarer young collections (20k allocations, not 700) kept full ones out of
                # a 1,000-subscriber push run (bench.push_memory). Not in tests: they start many apps.
                gc.freeze()
                gc.set_threshold(20_000, 20, 20)
            yield

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            *health_routes(db, events, shutdown),
            *([metrics_route(metrics, settings)] if metrics else []),
            *document_routes(services, settings),
            *email_action_routes(services, settings),
            *(dev_routes(mailbox) if settings.dev else []),
            graphiql_assets_mount(),
            *web_routes(),
        ],
        lifespan=lifespan,
        middleware=[
            # outermost: a request's turns (server.admission) count from its first step, authentication included
            *([Middleware(FairRequests)] if settings.fair_defer_seconds > 0 else []),
            Middleware(ObservedRequests, metrics=metrics, tracer=request_tracer(tracing) if tracing else None),
            Middleware(
                BoundedBodies,
                max_bytes=settings.max_body_bytes,
                max_upload_bytes=settings.max_upload_bytes,
                timeout_seconds=settings.body_timeout_seconds,
            ),
        ],  # fmt: skip
    )
    app.state.engine = engine
    app.state.blobs = blobs
    app.state.services = services
    app.state.events = events
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.shutdown = shutdown
    return app


def create_app_from_env() -> Starlette:
    """The factory uvicorn calls (``--workers`` needs an import string)."""
    settings = Settings.from_env()
    configure_logging(settings)  # again here: uvicorn's --workers processes start from this factory
    return create_app(settings, freeze_startup_objects=True, handle_signals=True)
