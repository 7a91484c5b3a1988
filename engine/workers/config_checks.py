"""Config checks shared by the built-in executors.

Each executor checks its ``config`` twice with the same functions: at deploy time, when values may still be
``{{ templates }}`` (those pass, since only rendering tells what they become), and before each attempt, on the
rendered config (``rendered=True``), where nothing is excused. A rendered config that fails is a
non-retryable :class:`~engine.errors.ExecutionFailedError`: running it again would fail the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from engine.definitions.templates import is_template
from engine.errors import ExecutionFailedError
from engine.workers.redaction import redact_text

SCALAR = (str, int, float, bool)


def pending(value: Any, rendered: bool) -> bool:
    """True while ``value`` is an unrendered template, whose type is not known yet."""
    return not rendered and isinstance(value, str) and is_template(value)


def check_keys(config: Mapping[str, Any], required: Iterable[str], allowed: Iterable[str]) -> list[str]:
    allowed_keys = set(allowed)
    problems = [f"config needs {key!r}" for key in sorted(set(required) - set(config))]
    problems += [f"config key {key!r} is not known" for key in sorted(set(config) - allowed_keys)]
    return problems


def check_string(config: Mapping[str, Any], key: str, *, rendered: bool, non_empty: bool = False) -> list[str]:
    value = config.get(key)
    if key not in config or pending(value, rendered):
        return []
    if not isinstance(value, str):
        return [f"config {key!r} must be a string"]
    if non_empty and not value.strip():
        return [f"config {key!r} must not be empty"]
    return []


def check_int(
    config: Mapping[str, Any], key: str, *, rendered: bool, minimum: int = 1, maximum: int | None = None
) -> list[str]:
    value = config.get(key)
    if key not in config or pending(value, rendered):
        return []
    # bool is an int subclass, and ``true`` is never a sensible number of milliseconds.
    if not isinstance(value, int) or isinstance(value, bool):
        return [f"config {key!r} must be an integer"]
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        return [f"config {key!r} must be at least {minimum}{upper}, not {value}"]
    return []


def check_string_list(config: Mapping[str, Any], key: str, *, rendered: bool, non_empty: bool = False) -> list[str]:
    value = config.get(key)
    if key not in config or pending(value, rendered):
        return []
    if rendered and isinstance(value, str):
        # ``"to": "{{ startedBy.email }}"`` renders to one string: one recipient.
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return [f"config {key!r} must be a list of strings"]
    if non_empty and not value:
        return [f"config {key!r} must not be empty"]
    if rendered and any(not item.strip() for item in value):
        return [f"config {key!r} has an empty entry (a template that rendered to nothing?)"]
    return []


def check_mapping(
    config: Mapping[str, Any], key: str, *, rendered: bool, scalar_values: bool = False, lists: bool = False
) -> list[str]:
    """``key`` must be an object; with ``scalar_values`` each value a string, number or boolean (or, with
    ``lists``, a list of those), the shape of HTTP headers and query parameters."""
    value = config.get(key)
    if key not in config or pending(value, rendered):
        return []
    if not isinstance(value, Mapping):
        return [f"config {key!r} must be an object"]
    if not scalar_values:
        return []
    problems = []
    for name, item in value.items():
        items = item if lists and isinstance(item, list) else [item]
        if not all(pending(i, rendered) or isinstance(i, SCALAR) for i in items):
            kind = "a string, number or boolean" + (" (or a list of those)" if lists else "")
            problems.append(f"config {key!r}: {name!r} must be {kind}")
    return problems


def require_valid(problems: list[str], secrets: Mapping[str, str]) -> None:
    """Refuse a rendered config that does not hold up (the deploy-time checks, again, on real values):
    retrying cannot fix it, so the attempt fails for good."""
    if problems:
        message = redact_text("invalid config: " + "; ".join(problems), secrets)
        raise ExecutionFailedError(message, non_retryable=True)


def as_text(value: Any) -> str:
    """A header or query value as text; JSON spelling for booleans, as a URL would carry them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def check_url(config: Mapping[str, Any], key: str, *, rendered: bool) -> list[str]:
    """``key`` must be an absolute ``http(s)://`` URL. A partly templated URL (``{{ base }}/path``) waits."""
    value = config.get(key)
    if key not in config or pending(value, rendered):
        return []
    if not isinstance(value, str):
        return [f"config {key!r} must be a string"]
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        return [f"config {key!r} is not a valid URL: {exc}"]
    if url.scheme not in ("http", "https") or not url.host:
        return [f"config {key!r} must be an absolute http:// or https:// URL"]
    return []
