"""Log lines: readable text by default, one JSON object per line with ``STEPWISE_LOG_FORMAT=json``.

Every line carries the request it was written for — its id, the signed-in user's id, the GraphQL
operation's name — and the trace and span ids of the span current when it was written, so a line
leads to its trace. The access line of each request adds its method, path, status and duration.

What never reaches a line: the values of ``STEPWISE_SECRETS`` and bearer tokens (replaced by ``***``
in the finished line, tracebacks included), GraphQL documents and variables (the access line has the
path without its query string; Strawberry's error lines keep the error's message and path but not
the excerpt of the document it quotes), and the content of uploaded documents (never logged).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from graphql import GraphQLError
from opentelemetry import trace

from server.settings import Settings

# A secret shorter than this would blank out ordinary words wherever they appear.
MIN_REDACTED_LENGTH = 4
REDACTED = "***"
_TOKENS = re.compile(r"(?i)\b(bearer\s+)[\w.~+/=-]+|\beyJ[\w-]*\.[\w-]+\.[\w-]*")
# Libraries whose DEBUG lines carry the data itself (SQL parameters, message bodies): never logged.
_DATA_DEBUG_LOGGERS = ("aiosqlite", "asyncpg", "sqlalchemy.engine", "httpcore", "hpack", "websockets", "multipart")
_REQUEST_FIELDS = ("request_id", "user_id", "operation")
_URL_QUERY = re.compile(r"(\bhttps?://[^\s?#\"]+)[?#][^\s\"]*")
_ACCESS_FIELDS = ("method", "path", "status", "duration_ms")


@dataclass
class RequestInfo:
    """What the log lines written during one request say about it; filled in as the request goes."""

    request_id: str
    user_id: str | None = None
    operation: str | None = None


_current_request: ContextVar[RequestInfo | None] = ContextVar("stepwise_request", default=None)


def current_request() -> RequestInfo | None:
    return _current_request.get()


def begin_request(info: RequestInfo) -> Token[RequestInfo | None]:
    """``info`` is the current request's until :func:`end_request` (a pair, not a context manager:
    the access middleware runs it for every request, and a generator's context manager costs ten calls)."""
    return _current_request.set(info)


def end_request(token: Token[RequestInfo | None]) -> None:
    _current_request.reset(token)


@contextmanager
def request_scope(info: RequestInfo) -> Iterator[RequestInfo]:
    token = begin_request(info)
    try:
        yield info
    finally:
        end_request(token)


class Redactor:
    """Replaces secret values and bearer tokens in finished text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values = sorted({s for s in secrets if len(s) >= MIN_REDACTED_LENGTH}, key=len, reverse=True)
        self._secrets = re.compile("|".join(re.escape(value) for value in values)) if values else None

    def __call__(self, text: str) -> str:
        text = _TOKENS.sub(lambda match: f"{match.group(1) or ''}{REDACTED}", text)
        return self._secrets.sub(REDACTED, text) if self._secrets is not None else text


class RequestContextFilter(logging.Filter):
    """Adds the request's fields and the current trace and span ids to every record, and keeps
    documents out: Strawberry's lines for errors in a client's request say where and what kind, not
    the message (which quotes the document's values); httpx's lines name URLs without the query;
    DEBUG lines of libraries that dump what they send and receive are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO and record.name.startswith(_DATA_DEBUG_LOGGERS):
            return False
        info = _current_request.get()
        for name in _REQUEST_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, getattr(info, name, None) if info is not None else None)
        span = trace.get_current_span().get_span_context()
        record.trace_id = format(span.trace_id, "032x") if span.is_valid else None
        record.span_id = format(span.span_id, "016x") if span.is_valid else None
        if isinstance(record.msg, GraphQLError):  # str() of one quotes the document around its location
            record.msg, record.args = _graphql_error_line(record.msg), None
        elif record.name == "httpx":  # its request line; the engine's own filter may have formatted it already
            record.msg, record.args = _URL_QUERY.sub(r"\1", record.getMessage()), None
        return True


def _graphql_error_line(error: GraphQLError) -> str:
    where = ".".join(str(part) for part in error.path) if error.path else "request"
    if error.original_error is not None:  # raised by our code: its message is ours
        return f"GraphQL error at {where}: {error.message}"
    locations = ", ".join(f"{location.line}:{location.column}" for location in error.locations or [])
    code = (error.extensions or {}).get("code")
    kind = code if isinstance(code, str) else type(error).__name__
    return f"GraphQL request error at {where} ({locations or 'no location'}): {kind}"


class TextFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s")
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        pairs = [(name, getattr(record, name, None)) for name in (*_REQUEST_FIELDS, "trace_id")]
        shown = " ".join(f"{name}={value}" for name, value in pairs if value is not None)
        record.context = f" [{shown}]" if shown else ""
        return self.redact(super().format(record))


class JsonFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in (*_REQUEST_FIELDS, "trace_id", "span_id", *_ACCESS_FIELDS):
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return self.redact(json.dumps(line, default=str))


class _StepwiseHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler :func:`configure_logging` installed, so a second call replaces it."""


def log_handler(settings: Settings, stream: IO[str] | None = None) -> logging.Handler:
    """The handler every record goes through: request fields, trace ids, the format, the redaction."""
    redact = Redactor(settings.secrets.values())
    handler = _StepwiseHandler(stream)
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(JsonFormatter(redact) if settings.log_format == "json" else TextFormatter(redact))
    return handler


def configure_logging(settings: Settings) -> None:
    """Send every logger's records (uvicorn's too) through one handler on the root logger."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        if isinstance(existing, _StepwiseHandler) or type(existing) is logging.StreamHandler:  # basicConfig's
            root.removeHandler(existing)
    root.addHandler(log_handler(settings))
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # uvicorn's access line names the query string, which for a GET is the GraphQL document;
    # server.access writes the access line instead.
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
