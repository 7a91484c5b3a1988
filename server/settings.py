"""Server settings, read from ``STEPWISE_*`` environment variables (documented in the README)."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
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


class SettingError(ValueError):
    """A ``STEPWISE_*`` variable that cannot be read or does not fit the others; the message names it."""


_TRUE, _FALSE = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off"})


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in _TRUE | _FALSE:
        raise ValueError
    return value in _TRUE


def _number(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError
    return value


def _names(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _hosts(raw: str) -> tuple[str, ...]:
    entries = _names(raw)
    if bad := check_host_entries(entries):
        raise ValueError(f"{', '.join(map(repr, bad))} is not a host, address or network")
    return entries


def _json_object(raw: str) -> dict[str, Any]:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError
    return value


def _secrets(raw: str) -> dict[str, str]:
    return {name: str(value) for name, value in _json_object(raw).items()}


def _choice(*choices: str) -> Callable[[str], str]:
    by_lower = {choice.lower(): choice for choice in choices}

    def read(raw: str) -> str:
        return by_lower[raw.strip().lower()]  # a KeyError is the variable's SettingError

    return read


Reader = tuple[Callable[[str], Any], str]
"""How a variable's text becomes its value, and the form a person should write (for the error)."""

_BY_TYPE: dict[str, Reader] = {
    "str": (str, "text"),
    "str | None": (str, "text"),
    "int": (int, "a whole number, e.g. 10"),
    "float": (_number, "a number, e.g. 2.5"),
    "bool": (_flag, "true or false (or 1/0, yes/no, on/off)"),
    "Path": (Path, "a path"),
    "Mapping[str, Any]": (_json_object, "a JSON object"),
}
_BY_FIELD: dict[str, Reader] = {
    "http_allow": (_hosts, "a comma-separated list of hosts, addresses or networks, each with an optional :port"),
    "http_deny": (_hosts, "a comma-separated list of hosts, addresses or networks, each with an optional :port"),
    "secrets": (_secrets, "a JSON object of names and strings"),
    "calendars": (lambda raw: Calendars(parse_calendars(_json_object(raw))), "a JSON object of calendars"),
    "log_format": (_choice("text", "json"), "text or json"),
    "log_level": (_choice("DEBUG", "INFO", "WARNING", "ERROR"), "DEBUG, INFO, WARNING or ERROR"),
}
_NOT_FROM_ENV = frozenset({"fast_paths"})  # FastPaths.from_env reads its STEPWISE_FAST_* itself
_NOT_SHOWN = frozenset({"secret_key", "secrets", "metrics_token", "database_url"})  # never echoed in an error


def env_name(field_name: str) -> str:
    """The variable a setting is read from: ``max_body_bytes`` is ``STEPWISE_MAX_BODY_BYTES``."""
    return f"STEPWISE_{field_name.upper()}"


def _read(field_name: str, type_name: str, environ: Mapping[str, str]) -> tuple[bool, Any]:
    """(True, value) when the variable is set to something, (False, None) when it is unset or blank."""
    name = env_name(field_name)
    raw = environ.get(name, "")
    if not raw.strip():
        return False, None
    parse, expected = _BY_FIELD.get(field_name) or _BY_TYPE[type_name]
    try:
        return True, parse(raw)
    except (ValueError, KeyError, TypeError) as exc:
        shown = "" if field_name in _NOT_SHOWN else f", not {raw!r}"
        ours = field_name in _BY_FIELD and field_name not in _NOT_SHOWN  # Python's own messages say less
        detail = f" ({exc})" if ours and isinstance(exc, ValueError) and str(exc) else ""
        raise SettingError(f"{name} must be {expected}{shown}{detail}") from None


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
    queries_per_minute: float = 0.0
    query_burst: int = 300
    operations_per_user: int = 4
    operation_wait_seconds: float = 1.0
    fair_defer_seconds: float = 0.05
    ws_connections_per_user: int = 20
    ws_connections: int = 10_000
    max_body_bytes: int = 1 << 20
    max_upload_bytes: int = 64 << 20
    body_timeout_seconds: float = 60.0
    header_timeout_seconds: float = 10.0
    keepalive_seconds: float = 5.0
    worker_healthcheck_seconds: float = 30.0
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
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Each setting from its ``STEPWISE_*`` variable (:func:`env_name`); unset or blank: the default.
        A value that cannot be read, or settings that do not fit together, raise :class:`SettingError`."""
        environ = os.environ if environ is None else environ
        values = {}
        for setting in fields(cls):
            if setting.name not in _NOT_FROM_ENV:
                given, value = _read(setting.name, str(setting.type), environ)
                if given:
                    values[setting.name] = value
        settings = cls(**values, fast_paths=FastPaths.from_env())
        settings.check()
        if settings.secret_key == DEV_SECRET_KEY:
            log.warning("STEPWISE_SECRET_KEY is not set: using the development key; never do this in production")
        return settings

    def check(self) -> None:
        """:class:`SettingError` for settings that each read well but do not fit together."""
        problems = [
            (self.token_ttl_minutes > self.max_token_lifetime_minutes,
             "STEPWISE_TOKEN_TTL_MINUTES is longer than STEPWISE_MAX_TOKEN_LIFETIME_MINUTES"),
            (self.max_body_bytes < self.max_json_bytes,
             "STEPWISE_MAX_BODY_BYTES must be at least STEPWISE_MAX_JSON_BYTES: a body carries a value"),
            (self.max_json_bytes < 1024, "STEPWISE_MAX_JSON_BYTES must be at least 1024"),
            (self.db_pool_size < 1, "STEPWISE_DB_POOL_SIZE must be at least 1"),
            (2 * self.operations_per_user > self.db_pool_size,  # an operation may hold two (the count beside)
             "STEPWISE_OPERATIONS_PER_USER must be at most half of STEPWISE_DB_POOL_SIZE: no user holds the pool"),
            (not 0 <= self.fair_defer_seconds <= 1, "STEPWISE_FAIR_DEFER_SECONDS must be 0 (off) to 1"),
            (self.idempotency_key_hours <= 0, "STEPWISE_IDEMPOTENCY_KEY_HOURS must be above 0"),
            (not 1 <= self.webhook_max_attempts <= MAX_WEBHOOK_ATTEMPTS,
             f"STEPWISE_WEBHOOK_MAX_ATTEMPTS must be 1 to {MAX_WEBHOOK_ATTEMPTS}"),
        ]  # fmt: skip
        for broken, message in problems:
            if broken:
                raise SettingError(message)
