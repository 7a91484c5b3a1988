"""``create_app(settings)``: the Starlette application with its lifespan, routes and endpoint."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

from engine import (
    BlobStore,
    Clock,
    Database,
    Engine,
    EventHub,
    Services,
    current_revision,
    default_registry,
    head_revision,
    upgrade,
)
from schema.schema import build_schema
from server.devtools import Mailbox, dev_routes, running_mailbox
from server.files import document_routes
from server.graphiql import graphiql_assets_mount
from server.graphql_app import StepwiseGraphQL
from server.settings import Settings
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
    settings: Settings | None = None, *, clock: Clock | None = None, freeze_startup_objects: bool = False
) -> Starlette:
    settings = settings or Settings.from_env()
    mailbox = Mailbox()
    if settings.dev and settings.smtp_url is None:
        settings = replace(settings, smtp_url=f"smtp://127.0.0.1:{settings.dev_mailbox_port}")
    db = Database(settings.database_url)
    engine = Engine(db, default_registry(), clock=clock, settings=settings.template_settings)
    blobs = BlobStore(settings.files_dir)
    services = Services.build(engine, blobs)  # once per app: every request goes through these
    events = EventHub(
        db, queue_size=settings.subscription_queue_size, max_per_user=settings.subscriptions_per_user,
        poll_seconds=settings.events_poll_seconds,
    )  # fmt: skip
    graphql = StepwiseGraphQL(build_schema(mask_errors=settings.mask_errors), services, settings, events)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(db.dispose)
            await prepare_database(db, settings)
            await stack.enter_async_context(events.running())
            engine.commit_listeners.append(events.on_commit)
            stack.callback(engine.commit_listeners.remove, events.on_commit)
            if settings.dev:
                await stack.enter_async_context(running_mailbox(mailbox, settings.dev_mailbox_port))
            if settings.embedded_worker:
                await stack.enter_async_context(running_worker(engine, settings))
            if freeze_startup_objects:
                # A started server holds ~140k long-lived objects (schema, SQLAlchemy, Jinja, caches) that
                # every full collection walked: 120 ms pauses, the inbox's p99 (bench.inbox_scaling). Frozen,
                # the collector skips them (8 ms). A served process also keeps ~400 live objects per
                # subscription; rarer young collections (20k allocations, not 700) kept full ones out of
                # a 1,000-subscriber push run (bench.push_memory). Not in tests: they start many apps.
                gc.freeze()
                gc.set_threshold(20_000, 20, 20)
            yield

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        try:
            current = await current_revision(db)
        except Exception as exc:  # any driver error means "not ready", with the reason shown
            return JSONResponse({"status": "unavailable", "database": str(exc)}, status_code=503)
        head = head_revision()
        ready = current == head
        body = {"status": "ok" if ready else "unavailable", "migration": current, "head": head}
        return JSONResponse(body, status_code=200 if ready else 503)

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            *document_routes(services, settings),
            *(dev_routes(mailbox) if settings.dev else []),
            graphiql_assets_mount(),
        ],
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.blobs = blobs
    app.state.services = services
    app.state.events = events
    app.state.settings = settings
    return app


def create_app_from_env() -> Starlette:
    """The factory uvicorn calls (``--workers`` needs an import string)."""
    return create_app(Settings.from_env(), freeze_startup_objects=True)
