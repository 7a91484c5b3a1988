"""Server settings, read from ``STEPWISE_*`` environment variables (documented in the README)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from engine import (
    DEFAULT_MAX_JSON_BYTES,
    MAX_WEBHOOK_ATTEMPTS,
    Calendars,
    EmailActionTokens,
    Engine,
    FastPaths,
    HostPolicy,
    check_host_entries,
    parse_calendars,
)

log = logging.getLogger(__name__)

DEV_SECRET_KEY = "stepwise-dev-secret-change-me-in-production"


def _json_object(name: str) -> dict[str, Any]:
    raw = os.environ.get(name)
    if not raw:
        return {}
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object")
    return value


def _list(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = os.environ.get(name)
    return default if raw is None else tuple(item.strip() for item in raw.split(",") if item.strip())


def _hosts(name: str) -> tuple[str, ...]:
    entries = _list(name, ())
    bad = check_host_entries(entries)
    if bad:
        raise ValueError(
            f"{name}: {', '.join(map(repr, bad))} is not a host, address or network (with an optional :port)"
        )
    return entries


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    return default if raw is None else raw.strip().lower() in {"1", "true", "yes", "on"}


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    for choice in choices:
        if raw.strip().lower() == choice.lower():
            return choice
    raise ValueError(f"{name} must be one of {', '.join(choices)}, not {raw!r}")


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite+aiosqlite:///./stepwise.db"
    secret_key: str = DEV_SECRET_KEY
    jwt_algorithm: str = "HS256"
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    token_ttl_minutes: int = 12 * 60
    files_dir: Path = Path("./files")
    smtp_url: str | None = None
    auto_migrate: bool = False
    embedded_worker: bool = True
    dev: bool = False
    dev_mailbox_port: int = 8025
    worker_lease_seconds: float = 60.0
    worker_poll_seconds: float = 1.0
    http_allow: tuple[str, ...] = ()
    http_deny: tuple[str, ...] = ()
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES
    mask_errors: bool = True
    subscriptions_per_connection: int = 20
    subscriptions_per_user: int = 50
    subscription_queue_size: int = 1000
    ws_keepalive_seconds: float = 15.0
    events_poll_seconds: float = 5.0
    template_settings: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    metrics: bool = True
    metrics_token: str | None = None
    log_format: str = "text"
    log_level: str = "INFO"
    otlp_endpoint: str | None = None
    trace_sample_ratio: float = 1.0
    service_name: str = "stepwise"
    shutdown_seconds: float = 30.0
    mutations_per_minute: float = 600.0
    mutation_burst: int = 100
    subscription_starts_per_minute: float = 120.0
    subscription_start_burst: int = 60
    ws_connections_per_user: int = 20
    ws_connections: int = 10_000
    max_body_bytes: int = 1 << 20
    max_upload_bytes: int = 64 << 20
    body_timeout_seconds: float = 60.0
    header_timeout_seconds: float = 10.0
    keepalive_seconds: float = 5.0
    max_token_lifetime_minutes: int = 24 * 60
    jwks_timeout_seconds: float = 5.0
    jwks_cache_seconds: float = 300.0
    jwks_refetch_seconds: float = 30.0
    max_query_depth: int = 15
    max_aliases: int = 30
    max_tokens: int = 1_000
    max_document_bytes: int = 32_768
    max_query_cost: int = 25_000
    anonymous_introspection: bool = False
    request_timeout_seconds: float = 30.0
    statement_timeout_seconds: float = 30.0
    graphiql: bool = True
    fast_paths: FastPaths = field(default_factory=FastPaths.from_env)
    """The ``STEPWISE_FAST_*`` off-switches (:class:`engine.FastPaths`), read from the environment
    even for settings made in code, so ``make test-plain`` reaches every app the tests start."""
    idempotency_key_hours: float = 24.0
    db_pool_size: int = 20
    webhook_max_attempts: int = 15
    webhook_retry_seconds: float = 5.0
    webhook_timeout_seconds: float = 10.0
    webhook_secret_grace_hours: float = 24.0
    webhook_log_days: float = 30.0
    public_url: str = "http://127.0.0.1:8000"
    email_action_ttl_hours: float = 72.0

    @property
    def idempotency_ttl(self) -> timedelta:
        return timedelta(hours=self.idempotency_key_hours)

    calendars: Calendars = field(default_factory=Calendars)
    """Business-time calendars by name (``STEPWISE_CALENDARS``); ``default`` is Monday to Friday 09:00–17:00 UTC."""

    def email_tokens(self, engine: Engine) -> EmailActionTokens:
        """How approve-by-email links are signed: the server's secret key, valid STEPWISE_EMAIL_ACTION_TTL_HOURS."""
        return EmailActionTokens(engine, self.secret_key, timedelta(hours=self.email_action_ttl_hours))

    def host_policy(self) -> HostPolicy:
        """What HTTP and GraphQL tasks, and webhooks, may reach (STEPWISE_HTTP_ALLOW / _DENY)."""
        return HostPolicy(allow=self.http_allow, deny=self.http_deny)

    @classmethod
    def from_env(cls) -> Settings:
        defaults = cls()
        env = os.environ.get
        settings = cls(
            database_url=env("STEPWISE_DATABASE_URL", defaults.database_url),
            secret_key=env("STEPWISE_SECRET_KEY", defaults.secret_key),
            jwt_algorithm=env("STEPWISE_JWT_ALGORITHM", defaults.jwt_algorithm),
            jwks_url=env("STEPWISE_JWKS_URL") or None,
            jwt_issuer=env("STEPWISE_JWT_ISSUER") or None,
            jwt_audience=env("STEPWISE_JWT_AUDIENCE") or None,
            token_ttl_minutes=int(env("STEPWISE_TOKEN_TTL_MINUTES", str(defaults.token_ttl_minutes))),
            files_dir=Path(env("STEPWISE_FILES_DIR", str(defaults.files_dir))),
            smtp_url=env("STEPWISE_SMTP_URL") or None,
            auto_migrate=_flag("STEPWISE_AUTO_MIGRATE", defaults.auto_migrate),
            dev=_flag("STEPWISE_DEV", defaults.dev),
            dev_mailbox_port=int(env("STEPWISE_DEV_MAILBOX_PORT", str(defaults.dev_mailbox_port))),
            embedded_worker=_flag("STEPWISE_EMBEDDED_WORKER", defaults.embedded_worker),
            worker_lease_seconds=float(env("STEPWISE_WORKER_LEASE_SECONDS", str(defaults.worker_lease_seconds))),
            worker_poll_seconds=float(env("STEPWISE_WORKER_POLL_SECONDS", str(defaults.worker_poll_seconds))),
            http_allow=_hosts("STEPWISE_HTTP_ALLOW"),
            http_deny=_hosts("STEPWISE_HTTP_DENY"),
            max_json_bytes=int(env("STEPWISE_MAX_JSON_BYTES", str(defaults.max_json_bytes))),
            mask_errors=_flag("STEPWISE_MASK_ERRORS", defaults.mask_errors),
            subscriptions_per_connection=int(
                env("STEPWISE_SUBSCRIPTIONS_PER_CONNECTION", str(defaults.subscriptions_per_connection))
            ),
            subscriptions_per_user=int(env("STEPWISE_SUBSCRIPTIONS_PER_USER", str(defaults.subscriptions_per_user))),
            subscription_queue_size=int(env("STEPWISE_SUBSCRIPTION_QUEUE_SIZE", str(defaults.subscription_queue_size))),
            ws_keepalive_seconds=float(env("STEPWISE_WS_KEEPALIVE_SECONDS", str(defaults.ws_keepalive_seconds))),
            events_poll_seconds=float(env("STEPWISE_EVENTS_POLL_SECONDS", str(defaults.events_poll_seconds))),
            template_settings=_json_object("STEPWISE_TEMPLATE_SETTINGS"),
            secrets={k: str(v) for k, v in _json_object("STEPWISE_SECRETS").items()},
            metrics=_flag("STEPWISE_METRICS", defaults.metrics),
            metrics_token=env("STEPWISE_METRICS_TOKEN") or None,
            log_format=_choice("STEPWISE_LOG_FORMAT", defaults.log_format, ("text", "json")),
            log_level=_choice("STEPWISE_LOG_LEVEL", defaults.log_level, ("DEBUG", "INFO", "WARNING", "ERROR")),
            otlp_endpoint=env("STEPWISE_OTLP_ENDPOINT") or None,
            trace_sample_ratio=float(env("STEPWISE_TRACE_SAMPLE_RATIO", str(defaults.trace_sample_ratio))),
            service_name=env("STEPWISE_SERVICE_NAME", defaults.service_name),
            shutdown_seconds=float(env("STEPWISE_SHUTDOWN_SECONDS", str(defaults.shutdown_seconds))),
            mutations_per_minute=float(env("STEPWISE_MUTATIONS_PER_MINUTE", str(defaults.mutations_per_minute))),
            mutation_burst=int(env("STEPWISE_MUTATION_BURST", str(defaults.mutation_burst))),
            subscription_starts_per_minute=float(
                env("STEPWISE_SUBSCRIPTION_STARTS_PER_MINUTE", str(defaults.subscription_starts_per_minute))
            ),
            subscription_start_burst=int(
                env("STEPWISE_SUBSCRIPTION_START_BURST", str(defaults.subscription_start_burst))
            ),
            ws_connections_per_user=int(env("STEPWISE_WS_CONNECTIONS_PER_USER", str(defaults.ws_connections_per_user))),
            ws_connections=int(env("STEPWISE_WS_CONNECTIONS", str(defaults.ws_connections))),
            max_body_bytes=int(env("STEPWISE_MAX_BODY_BYTES", str(defaults.max_body_bytes))),
            max_upload_bytes=int(env("STEPWISE_MAX_UPLOAD_BYTES", str(defaults.max_upload_bytes))),
            body_timeout_seconds=float(env("STEPWISE_BODY_TIMEOUT_SECONDS", str(defaults.body_timeout_seconds))),
            header_timeout_seconds=float(env("STEPWISE_HEADER_TIMEOUT_SECONDS", str(defaults.header_timeout_seconds))),
            keepalive_seconds=float(env("STEPWISE_KEEPALIVE_SECONDS", str(defaults.keepalive_seconds))),
            max_token_lifetime_minutes=int(
                env("STEPWISE_MAX_TOKEN_LIFETIME_MINUTES", str(defaults.max_token_lifetime_minutes))
            ),
            jwks_timeout_seconds=float(env("STEPWISE_JWKS_TIMEOUT_SECONDS", str(defaults.jwks_timeout_seconds))),
            jwks_cache_seconds=float(env("STEPWISE_JWKS_CACHE_SECONDS", str(defaults.jwks_cache_seconds))),
            jwks_refetch_seconds=float(env("STEPWISE_JWKS_REFETCH_SECONDS", str(defaults.jwks_refetch_seconds))),
            max_query_depth=int(env("STEPWISE_MAX_QUERY_DEPTH", str(defaults.max_query_depth))),
            max_aliases=int(env("STEPWISE_MAX_ALIASES", str(defaults.max_aliases))),
            max_tokens=int(env("STEPWISE_MAX_TOKENS", str(defaults.max_tokens))),
            max_document_bytes=int(env("STEPWISE_MAX_DOCUMENT_BYTES", str(defaults.max_document_bytes))),
            max_query_cost=int(env("STEPWISE_MAX_QUERY_COST", str(defaults.max_query_cost))),
            anonymous_introspection=_flag("STEPWISE_ANONYMOUS_INTROSPECTION", defaults.anonymous_introspection),
            request_timeout_seconds=float(
                env("STEPWISE_REQUEST_TIMEOUT_SECONDS", str(defaults.request_timeout_seconds))
            ),
            statement_timeout_seconds=float(
                env("STEPWISE_STATEMENT_TIMEOUT_SECONDS", str(defaults.statement_timeout_seconds))
            ),
            graphiql=_flag("STEPWISE_GRAPHIQL", defaults.graphiql),
            fast_paths=FastPaths.from_env(),
            idempotency_key_hours=float(env("STEPWISE_IDEMPOTENCY_KEY_HOURS", str(defaults.idempotency_key_hours))),
            db_pool_size=int(env("STEPWISE_DB_POOL_SIZE", str(defaults.db_pool_size))),
            calendars=Calendars(parse_calendars(_json_object("STEPWISE_CALENDARS"))),
            webhook_max_attempts=int(env("STEPWISE_WEBHOOK_MAX_ATTEMPTS", str(defaults.webhook_max_attempts))),
            webhook_retry_seconds=float(env("STEPWISE_WEBHOOK_RETRY_SECONDS", str(defaults.webhook_retry_seconds))),
            webhook_timeout_seconds=float(
                env("STEPWISE_WEBHOOK_TIMEOUT_SECONDS", str(defaults.webhook_timeout_seconds))
            ),
            webhook_secret_grace_hours=float(
                env("STEPWISE_WEBHOOK_SECRET_GRACE_HOURS", str(defaults.webhook_secret_grace_hours))
            ),
            webhook_log_days=float(env("STEPWISE_WEBHOOK_LOG_DAYS", str(defaults.webhook_log_days))),
            public_url=env("STEPWISE_PUBLIC_URL", defaults.public_url),
            email_action_ttl_hours=float(env("STEPWISE_EMAIL_ACTION_TTL_HOURS", str(defaults.email_action_ttl_hours))),
        )
        if settings.token_ttl_minutes > settings.max_token_lifetime_minutes:
            raise ValueError("STEPWISE_TOKEN_TTL_MINUTES is longer than STEPWISE_MAX_TOKEN_LIFETIME_MINUTES")
        if settings.max_body_bytes < settings.max_json_bytes:
            raise ValueError("STEPWISE_MAX_BODY_BYTES must be at least STEPWISE_MAX_JSON_BYTES: a body carries a value")
        if settings.max_json_bytes < 1024:
            raise ValueError("STEPWISE_MAX_JSON_BYTES must be at least 1024")
        if settings.db_pool_size < 1:
            raise ValueError("STEPWISE_DB_POOL_SIZE must be at least 1")
        if settings.idempotency_key_hours <= 0:
            raise ValueError("STEPWISE_IDEMPOTENCY_KEY_HOURS must be above 0")
        if not 1 <= settings.webhook_max_attempts <= MAX_WEBHOOK_ATTEMPTS:
            raise ValueError(f"STEPWISE_WEBHOOK_MAX_ATTEMPTS must be 1 to {MAX_WEBHOOK_ATTEMPTS}")
        if settings.secret_key == DEV_SECRET_KEY:
            log.warning("STEPWISE_SECRET_KEY is not set: using the development key; never do this in production")
        return settings
