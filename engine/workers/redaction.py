"""Keeping secrets out of everything stored and logged.

Configs of HTTP and GraphQL tasks are rendered with secrets in them (``{{ secrets.apiToken }}``) because the
call needs them; everything the worker *stores* about the call — the attempt's request, response and error,
the task's output (a target may echo a header back), the task's and the instance's error, and so the task
events and instance data made from them — goes through :func:`redact` first, which replaces every occurrence
of every secret value with ``***``, and :func:`redact_headers`, which masks credential-bearing headers
whatever their value, since a token need not come from ``secrets`` to be one. :func:`redact_logs` does the
same for what the HTTP libraries and the worker log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"

# Header names whose values are credentials: Authorization, Cookie, X-Api-Key, X-Auth-Token,
# X-Amz-Security-Token, Set-Cookie, … A false positive only hides a value in the attempt log.
_SENSITIVE_HEADER = re.compile(r"auth|token|secret|passw|cookie|api[-_]?key|session|signature|credential", re.I)
# ``Bearer abc`` → ``Bearer ***``: the scheme says what kind of credential it was without revealing it.
_AUTH_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9_-]*) +\S")


def is_sensitive_header(name: str) -> bool:
    return name.lower() != "idempotency-key" and bool(_SENSITIVE_HEADER.search(name))


def redact_headers(headers: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """A copy of ``headers`` with the values of credential-bearing headers masked."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    redacted: dict[str, Any] = {}
    for name, value in items:
        if not is_sensitive_header(name):
            redacted[name] = value
            continue
        match = _AUTH_SCHEME.match(value) if isinstance(value, str) else None
        redacted[name] = f"{match.group('scheme')} {MASK}" if match else MASK
    return redacted


def redact(value: Any, secrets: Mapping[str, str]) -> Any:
    """``value`` (any JSON value) with every secret value replaced by ``***`` in every string, keys included.

    URL-encoded spellings of a secret are replaced too, since secrets often travel in query strings. Empty
    secret values are ignored: replacing the empty string would mangle everything.
    """
    pattern = _pattern(frozenset(secret for secret in secrets.values() if secret))
    if pattern is None:
        return value
    return _redact(value, pattern)


def redact_text(text: str, secrets: Mapping[str, str]) -> str:
    """:func:`redact` for one string, typed as such (error messages)."""
    result: str = redact(text, secrets)
    return result


def _redact(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(MASK, value)
    if isinstance(value, Mapping):
        return {_redact(key, pattern): _redact(item, pattern) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(item, pattern) for item in value]
    return value


@lru_cache(maxsize=64)
def _pattern(secrets: frozenset[str]) -> re.Pattern[str] | None:
    spellings = {form for secret in secrets for form in (secret, quote(secret, safe=""), quote_plus(secret))}
    if not spellings:
        return None
    # Longest first, so a secret that contains another is masked whole rather than in pieces.
    return re.compile("|".join(re.escape(s) for s in sorted(spellings, key=len, reverse=True)))


# Loggers that may write a secret: the request line (httpx, INFO: a secret in a query string), headers and
# bodies (httpcore, gql: DEBUG), and the worker's own messages about attempts.
_LOGGERS_TO_REDACT = (
    "httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy", "httpcore.socks",
    "gql.transport.httpx", "engine.workers.worker", "engine.definitions.templates",
)  # fmt: skip


class _RedactingFilter(logging.Filter):
    """Rewrites a record whose message holds a secret value, before any handler formats it."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[str, str] = {}  # by value: every worker's secrets, in one process

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            redacted = redact_text(message, self.secrets)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


_LOG_FILTER = _RedactingFilter()


def redact_logs(secrets: Mapping[str, str]) -> None:
    """Mask ``secrets`` in what the HTTP libraries and the worker log, from now on, in this process."""
    if not secrets:
        return
    _LOG_FILTER.secrets.update({value: value for value in secrets.values() if value})
    for name in _LOGGERS_TO_REDACT:
        logger = logging.getLogger(name)
        if _LOG_FILTER not in logger.filters:
            logger.addFilter(_LOG_FILTER)
