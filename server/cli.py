"""The ``stepwise`` command (docs/design.md §6): serve, worker, db upgrade, demo load, token, subscribe,
definitions deploy, schema export, service-account create."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import click
import uvicorn

from engine import (
    SERVICE_ROLE,
    DefinitionError,
    DeployedDefinition,
    DirectoryRepository,
    Engine,
    NotFoundError,
    Services,
    StepwiseError,
    head_revision,
    upgrade,
)
from schema.schema import build_schema
from server.admission import fair_loop_factory
from server.auth import issue_token
from server.demo import load_demo, load_demo_requests
from server.engines import engine_from_settings
from server.logs import configure_logging
from server.serving import http_protocol
from server.settings import Settings
from server.tracing import instrument_database, tracer_provider_for
from server.workers import running_worker

T = TypeVar("T")


def _with_engine(work: Callable[[Engine], Awaitable[T]]) -> T:
    settings = Settings.from_env()

    async def run() -> T:
        engine = engine_from_settings(settings)
        try:
            return await work(engine)
        finally:
            await engine.db.dispose()

    return asyncio.run(run())


@click.group()
def main() -> None:
    """Stepwise: a workflow task-execution server."""
    # Reading the settings may warn: a provisional handler formats that line as the rest will be.
    provisional = "json" if os.environ.get("STEPWISE_LOG_FORMAT", "").strip().lower() == "json" else "text"
    configure_logging(replace(Settings(), log_format=provisional))
    settings = Settings.from_env()
    configure_logging(settings)
    click.get_current_context().obj = settings


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="Server processes.")
@click.option("--migrate", is_flag=True, help="Apply pending migrations at start-up.")
@click.pass_obj
def serve(settings: Settings, host: str, port: int, workers: int, migrate: bool) -> None:
    """Serve the GraphQL API (and GraphiQL) on http://HOST:PORT/graphql."""
    if migrate:
        os.environ["STEPWISE_AUTO_MIGRATE"] = "true"
    click.echo(f"Stepwise: GraphiQL at http://{host}:{port}/graphql")
    # No per-message deflate: pushed task events are small JSON, and compressing each one cost CPU per
    # delivery and a compressor's memory per connection (bench.push_memory profile). No uvicorn access
    # log (server.access writes one without the query string) and no uvicorn log config (server.logs).
    # Headers have a deadline (server.serving), bodies another (server.bodies).
    # With --workers, uvicorn kills a worker that does not answer its health ping in time; its 5 s default
    # killed healthy but busy workers on a loaded host, so the wait is a setting with a longer default.
    uvicorn.run(
        "server.app:create_app_from_env", factory=True, host=host, port=port, workers=workers,
        ws_per_message_deflate=False, access_log=False, log_config=None,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_seconds),
        http=http_protocol(settings), timeout_keep_alive=math.ceil(settings.keepalive_seconds),
        timeout_worker_healthcheck=math.ceil(settings.worker_healthcheck_seconds),
        loop=cast(str, fair_loop_factory(settings.fair_defer_seconds)) if settings.fair_defer_seconds > 0 else "auto",
    )  # fmt: skip


@main.command()
def worker() -> None:
    """Run system tasks against the database (more processes share the work) until interrupted."""
    settings = Settings.from_env()

    async def run() -> None:
        engine = engine_from_settings(settings)
        db = engine.db
        tracing = tracer_provider_for(settings)
        if tracing is not None:
            instrument_database(db, tracing)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):  # both stop it gracefully (server.shutdown)
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        try:
            async with running_worker(engine, settings, stop, tracing) as running:
                click.echo(f"worker {running.worker_id} running; Ctrl-C or SIGTERM stops it")
                await stop.wait()
        finally:
            await db.dispose()
            if tracing is not None:
                await asyncio.to_thread(tracing.shutdown)
        click.echo("worker stopped")

    asyncio.run(run())


@main.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration up to the latest."""

    async def work(engine: Engine) -> None:
        await upgrade(engine.db)

    _with_engine(work)
    click.echo(f"database at migration {head_revision()}")


@main.group()
def demo() -> None:
    """Demo data."""


@demo.command("load")
def demo_load() -> None:
    """Create the demo users and definitions (idempotent)."""

    async def load(engine: Engine) -> list[str]:
        return [*await load_demo(engine), *await load_demo_requests(engine)]

    changes = _with_engine(load)
    click.echo("\n".join(f"created {line}" for line in changes) if changes else "demo already loaded: nothing to do")


@main.command()
@click.argument("user")
@click.option("--ttl-minutes", type=int, default=None, help="Lifetime (default STEPWISE_TOKEN_TTL_MINUTES).")
def token(user: str, ttl_minutes: int | None) -> None:
    """Print a bearer token for USER (a directory username such as alice; a service account's is marked
    as one)."""
    settings = Settings.from_env()
    found = _with_engine(lambda engine: engine.user(user))
    if found is None:
        raise click.ClickException(f"no user {user!r} in the directory (try `stepwise demo load`)")
    click.echo(issue_token(settings, user, _token_ttl(settings, ttl_minutes), service=found.is_service))


def _token_ttl(settings: Settings, ttl_minutes: int | None) -> timedelta | None:
    if ttl_minutes and ttl_minutes > settings.max_token_lifetime_minutes:
        raise click.ClickException(
            f"the server refuses tokens that live longer than {settings.max_token_lifetime_minutes} minutes "
            "(STEPWISE_MAX_TOKEN_LIFETIME_MINUTES)"
        )
    return timedelta(minutes=ttl_minutes) if ttl_minutes else None


@main.group("service-account")
def service_account() -> None:
    """API clients that are not people: AI agents, scripts, nightly jobs."""


@service_account.command("create")
@click.argument("name")
@click.option("--roles", default="", help="Comma-separated roles it holds besides `service` (e.g. for startRoles).")
@click.option("--display-name", default=None, help="How the inbox shows it (default: NAME).")
@click.option("--ttl-minutes", type=int, default=None, help="Token lifetime (default STEPWISE_TOKEN_TTL_MINUTES).")
def service_account_create(name: str, roles: str, display_name: str | None, ttl_minutes: int | None) -> None:
    """Create (or update) service account NAME and print a bearer token for it.

    A service account asks (requestApproval, startWorkflow, …) and is shown as the requester; it never
    decides an action approval, whatever its roles. `stepwise token NAME` prints a fresh token later."""
    settings = Settings.from_env()
    ttl = _token_ttl(settings, ttl_minutes)
    held = sorted({role.strip() for role in roles.split(",") if role.strip()} | {SERVICE_ROLE})

    async def create(engine: Engine) -> None:
        existing = await engine.user(name)
        if existing is not None and not existing.is_service:
            raise click.ClickException(f"{name!r} is a person in the directory; choose another name")
        async with engine.db.transaction() as session:
            await DirectoryRepository(session).save_user(
                name, display_name or name, None, held, existing.groups if existing else (), engine.clock.now()
            )

    _with_engine(create)
    click.echo(issue_token(settings, name, ttl, service=True))


SUBSCRIBE_EVENTS = """subscription($after: String) { taskEvents(after: $after) {
  cursor kind occurredAt actor { id } task { id title status assignee { id } } } }"""
SUBSCRIBE_NOTIFICATIONS = """subscription { notifications {
  cursor kind occurredAt actor { id } task { id title status assignee { id } } } }"""


@main.command()
@click.argument("user")
@click.option("--url", default="ws://127.0.0.1:8000/graphql", show_default=True, help="The server's GraphQL socket.")
@click.option("--after", default=None, help="A cursor: first replay what committed after it.")
@click.option("--notifications", is_flag=True, help="Only changes others make to USER's tasks.")
def subscribe(user: str, url: str, after: str | None, notifications: bool) -> None:
    """Print the task events USER may see as they commit, one JSON line each, until interrupted.

    Signs a token for USER with STEPWISE_SECRET_KEY, so it must match the server's.
    """
    from gql import Client, GraphQLRequest
    from gql.transport.websockets import WebsocketsTransport

    transport = WebsocketsTransport(
        url=url, init_payload={"authorization": f"Bearer {issue_token(Settings.from_env(), user)}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )  # fmt: skip
    request = GraphQLRequest(SUBSCRIBE_EVENTS, variable_values={"after": after})
    if notifications:
        request = GraphQLRequest(SUBSCRIBE_NOTIFICATIONS)

    async def run() -> None:
        async with Client(transport=transport) as session:
            click.echo(f"subscribed at {url} as {user}; Ctrl-C stops", err=True)
            async for result in session.subscribe(request):
                click.echo(json.dumps(next(iter(result.values()))))

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # connection refused, authentication, a bad cursor: say it plainly
        raise click.ClickException(str(exc)) from exc


@main.group()
def definitions() -> None:
    """Workflow definitions."""


@definitions.command("deploy")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--as", "actor", default="dana", show_default=True, help="The directory user (an admin) who deploys it.")
def definitions_deploy(file: Path, actor: str) -> None:
    """Validate and deploy a JSON definition FILE as its key's next version.

    Through the workflow service, as the API deploys: the same checks, and the same rule (only an
    admin may deploy)."""
    try:
        document: Any = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{file} is not JSON: {exc}") from exc
    try:
        deployed, created = _with_engine(lambda engine: _deploy(Services.build(engine), actor, document))
    except DefinitionError as exc:
        click.echo(f"error: {exc.message}", err=True)
        for problem in exc.field_errors:
            click.echo(f"  {problem.field}: {problem.message}", err=True)
        sys.exit(1)
    except StepwiseError as exc:
        raise click.ClickException(exc.message) from exc
    verb = "deployed" if created else "unchanged, already"
    click.echo(f"{verb} {deployed.key} version {deployed.version}")


async def _deploy(services: Services, actor: str, document: Any) -> tuple[DeployedDefinition, bool]:
    user = await services.engine.user(actor)
    if user is None:
        raise NotFoundError(f"no user {actor!r} in the directory: name an admin with --as")
    return await services.workflows.deploy(user, document)


@main.group("schema")
def schema_group() -> None:
    """The GraphQL schema."""


def served_sdl() -> str:
    """The SDL of the schema the server serves: what client code generators read."""
    return build_schema().as_str() + "\n"


@schema_group.command("export")
def schema_export() -> None:
    """Print the served schema's SDL (commit it as schema.graphql: `stepwise schema export > schema.graphql`)."""
    click.echo(served_sdl(), nl=False)
