"""Business time: named working calendars, and durations counted in them.

A calendar has working days, opening hours, a time zone and public holidays (the ``holidays`` library,
by country and subdivision). A business duration's days are whole working days: ``P1D`` is the next
working day at the same wall-clock time, not 24 working hours; its hours and minutes are working time
within the opening hours. A moment outside working hours counts from the next opening. Wall-clock
arithmetic in the calendar's zone (``zoneinfo``) keeps "the same hour" across a DST change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from engine.definitions.durations import DEFAULT_CALENDAR, BusinessDuration, Span

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CALENDAR_KEYS = frozenset({"timeZone", "workingDays", "hours", "holidays"})
_MAX_DAYS_SEARCHED = 3660  # a calendar with no working day at all would otherwise loop for ever


@lru_cache(maxsize=256)
def holidays_of(country: str, subdivision: str | None, year: int) -> Mapping[date, str]:
    """The public holidays of one year, read-only: built once per process for every calendar that names
    the place, not on each count, and kept outside the calendars, which are frozen values."""
    found = holidays.country_holidays(country, subdiv=subdivision, years=year)
    return MappingProxyType({day: str(name) for day, name in found.items()})


@dataclass(frozen=True)
class BusinessCalendar:
    """Working days (0 = Monday), opening hours ``opens``–``closes`` in ``time_zone``, and the public
    holidays of ``country`` (ISO 3166 code) and ``subdivision`` (e.g. ``BY`` for Bavaria)."""

    name: str = DEFAULT_CALENDAR
    time_zone: str = "UTC"
    working_days: frozenset[int] = frozenset(range(5))
    opens: time = time(9, 0)
    closes: time = time(17, 0)
    country: str | None = None
    subdivision: str | None = None

    def __post_init__(self) -> None:
        if not self.working_days:
            raise ValueError(f"calendar {self.name!r}: at least one working day is needed")
        if self.opens >= self.closes:
            raise ValueError(f"calendar {self.name!r}: opening hours must open before they close")
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"calendar {self.name!r}: unknown time zone {self.time_zone!r}") from exc
        if self.country is not None:
            try:
                holidays.country_holidays(self.country, subdiv=self.subdivision, years=2026)
            except NotImplementedError as exc:
                raise ValueError(f"calendar {self.name!r}: {exc}") from exc

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)  # zoneinfo keeps one instance per key

    def holiday(self, day: date) -> str | None:
        """The holiday's name on ``day``, or None."""
        if self.country is None:
            return None
        return holidays_of(self.country, self.subdivision, day.year).get(day)

    def is_working_day(self, day: date) -> bool:
        return day.weekday() in self.working_days and self.holiday(day) is None

    def _at(self, day: date, moment: time) -> datetime:
        return datetime.combine(day, moment, tzinfo=self.zone)

    def _next_working_day(self, day: date) -> date:
        for _ in range(_MAX_DAYS_SEARCHED):
            day += timedelta(days=1)
            if self.is_working_day(day):
                return day
        raise ValueError(f"calendar {self.name!r} has no working day in ten years")

    def next_opening(self, moment: datetime) -> datetime:
        """``moment`` if it is within working hours, else the next opening (in the calendar's zone)."""
        local = moment.astimezone(self.zone)
        day = local.date()
        if self.is_working_day(day):
            if local.time() < self.opens:
                return self._at(day, self.opens)
            if local.time() < self.closes:
                return local
        return self._at(self._next_working_day(day), self.opens)

    def add(self, moment: datetime, length: timedelta) -> datetime:
        """``moment`` plus ``length`` of business time: whole days as working days at the same
        wall-clock time, the rest as working time within the opening hours. UTC out."""
        local = self.next_opening(moment)
        days, rest = divmod(length, timedelta(days=1))
        day = local.date()
        for _ in range(days):
            day = self._next_working_day(day)
        local = datetime.combine(day, local.time(), tzinfo=self.zone)
        while rest > timedelta(0):
            closing = self._at(local.date(), self.closes)
            available = closing - local
            if rest < available:
                local += rest
                break
            rest -= available
            local = self._at(self._next_working_day(local.date()), self.opens)
        return local.astimezone(UTC)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "timeZone": self.time_zone,
            "workingDays": [WEEKDAYS[d] for d in sorted(self.working_days)],
            "hours": [self.opens.strftime("%H:%M"), self.closes.strftime("%H:%M")],
        }
        if self.country is not None:
            doc["holidays"] = {
                "country": self.country,
                **({"subdivision": self.subdivision} if self.subdivision else {}),
            }
        return doc


def parse_calendar(name: str, doc: Any) -> BusinessCalendar:
    """One calendar of ``STEPWISE_CALENDARS``; ``ValueError`` naming the calendar for any mistake."""
    if not isinstance(doc, Mapping):
        raise ValueError(f"calendar {name!r} must be an object")
    unknown = sorted(set(doc) - _CALENDAR_KEYS)
    if unknown:
        raise ValueError(f"calendar {name!r}: unknown keys {', '.join(unknown)}")
    defaults = BusinessCalendar(name)
    days = doc.get("workingDays", [WEEKDAYS[d] for d in sorted(defaults.working_days)])
    if not isinstance(days, list) or not all(isinstance(d, str) and d.lower()[:3] in WEEKDAYS for d in days):
        raise ValueError(f"calendar {name!r}: workingDays must list days such as 'mon', 'tue'")
    hours = doc.get("hours", ["09:00", "17:00"])
    try:
        opens, closes = (time.fromisoformat(h) for h in hours)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"calendar {name!r}: hours must be two times such as ['09:00', '17:00']") from exc
    found = doc.get("holidays") or {}
    if not isinstance(found, Mapping) or set(found) - {"country", "subdivision"}:
        raise ValueError(f"calendar {name!r}: holidays must be {{'country': 'DE', 'subdivision': 'BY'}}")
    return BusinessCalendar(
        name=name,
        time_zone=str(doc.get("timeZone", "UTC")),
        working_days=frozenset(WEEKDAYS.index(d.lower()[:3]) for d in days),
        opens=opens,
        closes=closes,
        country=found.get("country"),
        subdivision=found.get("subdivision"),
    )


def parse_calendars(doc: Mapping[str, Any]) -> dict[str, BusinessCalendar]:
    """Every calendar of the setting, plus ``default`` (Monday to Friday, 09:00–17:00 UTC) unless it names one."""
    calendars = {name: parse_calendar(name, value) for name, value in doc.items()}
    calendars.setdefault(DEFAULT_CALENDAR, BusinessCalendar())
    return calendars


class Calendars:
    """The server's calendars by name: what business durations are counted in."""

    def __init__(self, calendars: Mapping[str, BusinessCalendar] | None = None) -> None:
        self._by_name = dict(calendars or {})
        self._by_name.setdefault(DEFAULT_CALENDAR, BusinessCalendar())

    def names(self) -> frozenset[str]:
        return frozenset(self._by_name)

    def get(self, name: str) -> BusinessCalendar | None:
        return self._by_name.get(name)

    def after(self, moment: datetime, span: Span) -> datetime:
        """When ``span`` after ``moment`` ends. A calendar that was removed from the settings since the
        definition was deployed counts in the default one rather than never."""
        if not isinstance(span, BusinessDuration):
            return moment + span
        calendar = self._by_name.get(span.calendar) or self._by_name[DEFAULT_CALENDAR]
        return calendar.add(moment, span.length)
