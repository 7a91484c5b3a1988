"""Durations in definitions: ISO 8601 (``"PT4H"``), or business time in a named calendar
(``{"duration": "P1D", "business": true, "calendar": "default"}``, counted by :mod:`engine.calendars`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import isodate

DEFAULT_CALENDAR = "default"
_KEYS = frozenset({"duration", "business", "calendar"})


@dataclass(frozen=True)
class BusinessDuration:
    """``length`` of business time in ``calendar``: whole days are working days, the rest working hours."""

    length: timedelta
    calendar: str = DEFAULT_CALENDAR

    def to_json(self) -> dict[str, Any]:
        return {"duration": format_duration(self.length), "business": True, "calendar": self.calendar}


Span = timedelta | BusinessDuration
"""How long, as a definition says it: a fixed length, or business time."""


def format_duration(value: timedelta) -> str:
    return str(isodate.duration_isoformat(value))


def span_to_json(span: Span) -> str | dict[str, Any]:
    return span.to_json() if isinstance(span, BusinessDuration) else format_duration(span)


def parse_fixed(text: str) -> timedelta:
    """An ISO 8601 duration in days, hours, minutes or seconds; ``ValueError`` with the reason otherwise."""
    try:
        parsed = isodate.parse_duration(text)
    except (isodate.ISO8601Error, ValueError) as exc:
        raise ValueError(f"is not an ISO 8601 duration: {text!r}") from exc
    if not isinstance(parsed, timedelta):  # years or months have no fixed length
        raise ValueError(f"must be in days, hours, minutes or seconds: {text!r}")
    if parsed < timedelta(0):
        raise ValueError(f"must not be negative: {text!r}")
    return parsed


def parse_span(value: Any) -> Span:
    """A definition's duration: a string, or a business-time object. ``ValueError`` says what is wrong."""
    if isinstance(value, str):
        return parse_fixed(value)
    if not isinstance(value, Mapping):
        raise ValueError("must be an ISO 8601 duration or {'duration': 'P1D', 'business': true}")
    unknown = sorted(set(value) - _KEYS)
    if unknown:
        raise ValueError(f"has unknown keys {', '.join(unknown)} (known: business, calendar, duration)")
    text, business, calendar = value.get("duration"), value.get("business", False), value.get("calendar")
    if not isinstance(text, str):
        raise ValueError("needs 'duration', an ISO 8601 duration such as 'P1D'")
    if not isinstance(business, bool):
        raise ValueError("'business' must be true or false")
    if calendar is not None and (not isinstance(calendar, str) or not calendar):
        raise ValueError("'calendar' must name a calendar")
    length = parse_fixed(text)
    if not business:
        if calendar is not None:
            raise ValueError("'calendar' needs 'business': true")
        return length
    return BusinessDuration(length, calendar or DEFAULT_CALENDAR)
