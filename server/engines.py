"""The one place a :class:`~engine.Engine` and its :class:`~engine.Database` are made from the settings:
the app, ``stepwise worker`` and the other commands all get the same pool, timeouts and limits."""

from __future__ import annotations

from engine import Clock, Database, Engine, default_registry
from server.settings import Settings


def engine_from_settings(settings: Settings, clock: Clock | None = None) -> Engine:
    """The worker gets the statement timeout too: a stuck statement holds a lease and a connection
    there as much as in a request. (Searchable-index builds lift it on their own connection.)"""
    db = Database(settings.database_url, fast_paths=settings.fast_paths, pool_size=settings.db_pool_size,
                  statement_timeout=settings.statement_timeout_seconds)  # fmt: skip
    return Engine(
        db,
        default_registry(),
        clock=clock,
        settings=settings.template_settings,
        max_json_bytes=settings.max_json_bytes,
        idempotency_ttl=settings.idempotency_ttl,
        calendars=settings.calendars,
    )
