"""Business time with a frozen clock: weekends, Friday evening, holidays by subdivision, a DST change,
and the three places that accept it (``dueIn``, ``escalation.after``, a delay's ``duration``)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine.calendars import BusinessCalendar, Calendars, parse_calendars
from engine.catalog import default_registry
from engine.clock import ManualClock
from engine.definitions.builder import WorkflowBuilder, business, remind
from engine.definitions.durations import BusinessDuration, parse_span
from engine.errors import DefinitionError
from engine.storage.database import Database
from engine.transitions.engine import Engine
from engine.workers.delay import DelayExecutor
from engine.workers.executor import ExecutionResult, SystemTaskContext, WaitUntil
from tests.workers.support import attempt

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = BusinessCalendar()  # Monday to Friday, 09:00–17:00 UTC
BAVARIA = BusinessCalendar("bavaria", time_zone="Europe/Berlin", country="DE", subdivision="BY")
GERMANY = BusinessCalendar("germany", time_zone="Europe/Berlin", country="DE")
DAY, HOUR = timedelta(days=1), timedelta(hours=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


@pytest.mark.parametrize(
    ("start", "length", "expected", "why"),
    [
        (utc(2026, 1, 7, 10), DAY, utc(2026, 1, 8, 10), "Wednesday: the next day at the same hour"),
        (utc(2026, 1, 9, 10), DAY, utc(2026, 1, 12, 10), "Friday morning: Monday, same hour, not 24 hours"),
        (utc(2026, 1, 9, 19), DAY, utc(2026, 1, 13, 9), "Friday evening counts from Monday's opening"),
        (utc(2026, 1, 10, 12), DAY, utc(2026, 1, 13, 9), "Saturday counts from Monday's opening"),
        (utc(2026, 1, 7, 7), DAY, utc(2026, 1, 8, 9), "before opening counts from the opening"),
        (utc(2026, 1, 9, 16), 4 * HOUR, utc(2026, 1, 12, 12), "working hours carry over the weekend"),
        (utc(2026, 1, 9, 10), DAY + 2 * HOUR, utc(2026, 1, 12, 12), "days first, then hours"),
        (utc(2026, 1, 9, 10), 5 * DAY, utc(2026, 1, 16, 10), "a working week is five days"),
        (utc(2026, 1, 9, 10), timedelta(0), utc(2026, 1, 9, 10), "nothing in working hours is nothing"),
    ],
)
def test_business_days_and_hours(start: datetime, length: timedelta, expected: datetime, why: str) -> None:
    assert OFFICE.add(start, length) == expected, why


def test_a_holiday_of_the_subdivision_is_skipped_and_only_there() -> None:
    monday = berlin(2026, 1, 5, 10)  # Tuesday 6 January is Epiphany in Bavaria, a working day in Berlin

    assert BAVARIA.holiday(berlin(2026, 1, 6).date()) == "Epiphany"
    assert BAVARIA.add(monday, DAY) == berlin(2026, 1, 7, 10).astimezone(UTC)
    assert GERMANY.add(monday, DAY) == berlin(2026, 1, 6, 10).astimezone(UTC)


def test_a_national_holiday_before_a_weekend() -> None:
    thursday = berlin(2026, 4, 2, 15)  # Good Friday 3 April, then the weekend, then Easter Monday

    assert GERMANY.add(thursday, DAY) == berlin(2026, 4, 7, 15).astimezone(UTC)


def test_counting_leaves_a_calendar_as_it_was() -> None:
    """A calendar is a frozen value the workers share: counting in it (holidays looked up, the zone
    resolved) changes nothing on it, and two equal calendars stay equal and hash alike."""
    calendar = BusinessCalendar("bavaria", time_zone="Europe/Berlin", country="DE", subdivision="BY")
    before = {name: repr(value) for name, value in vars(calendar).items()}
    # Christmas and Boxing Day are holidays, the weekend is not worked: the 24th, 28th and 29th.
    assert calendar.add(datetime(2026, 12, 23, 10, tzinfo=UTC), 3 * DAY) == datetime(2026, 12, 29, 10, tzinfo=UTC)
    assert calendar.holiday(datetime(2027, 1, 6).date()) is not None  # another year: Epiphany, in Bavaria
    assert {name: repr(value) for name, value in vars(calendar).items()} == before
    assert calendar == BAVARIA and hash(calendar) == hash(BAVARIA)


def test_the_same_wall_clock_hour_across_the_dst_change() -> None:
    friday = berlin(2026, 3, 27, 10)  # clocks go forward on Sunday 29 March
    monday = GERMANY.add(friday, DAY)

    assert monday == utc(2026, 3, 30, 8)  # 10:00 CEST; three fixed days would be 11:00
    assert monday.astimezone(BERLIN).time() == time(10, 0)
    assert friday.astimezone(UTC) + 3 * DAY == utc(2026, 3, 30, 9)  # what 72 hours would be
    autumn = GERMANY.add(berlin(2026, 10, 23, 16), 2 * HOUR)  # back on Sunday 25 October
    assert autumn == berlin(2026, 10, 26, 10).astimezone(UTC) == utc(2026, 10, 26, 9)


def test_calendars_from_settings() -> None:
    calendars = parse_calendars(
        {"support": {"timeZone": "America/New_York", "workingDays": ["mon", "tue", "wed", "thu", "fri", "sat"],
                     "hours": ["08:00", "20:00"], "holidays": {"country": "US", "subdivision": "NY"}}}
    )  # fmt: skip

    support = calendars["support"]
    assert set(calendars) == {"support", "default"}
    assert support.working_days == frozenset(range(6)) and support.opens == time(8) and support.closes == time(20)
    assert support.holiday(datetime(2026, 7, 4).date()) is not None
    assert support.to_json()["holidays"] == {"country": "US", "subdivision": "NY"}


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({"x": {"timeZone": "Mars/Olympus"}}, "unknown time zone"),
        ({"x": {"workingDays": ["funday"]}}, "workingDays"),
        ({"x": {"workingDays": []}}, "at least one working day"),
        ({"x": {"hours": ["17:00", "09:00"]}}, "open before they close"),
        ({"x": {"holidays": {"country": "XX"}}}, "calendar 'x'"),
        ({"x": {"weekend": ["sat"]}}, "unknown keys weekend"),
    ],
)
def test_a_bad_calendar_setting_names_the_calendar(doc: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_calendars(doc)


def test_the_json_spelling() -> None:
    assert parse_span({"duration": "P1D", "business": True}) == BusinessDuration(DAY, "default")
    assert parse_span({"duration": "PT4H", "business": True, "calendar": "bavaria"}) == BusinessDuration(
        4 * HOUR, "bavaria"
    )
    assert parse_span({"duration": "PT4H"}) == 4 * HOUR
    for bad in ({"duration": "P1M", "business": True}, {"business": True}, {"duration": "P1D", "calendar": "x"},
                {"duration": "P1D", "business": "yes"}, {"duration": "-P1D"}, 7):  # fmt: skip
        with pytest.raises(ValueError):
            parse_span(bad)


def _review(due_in: Any = None, escalation: Any = None) -> WorkflowBuilder:
    b = WorkflowBuilder("review")
    b.user_task("review", schema_type="userTask.approval", assign_to_role="approver", due_in=due_in,
                escalation=escalation)  # fmt: skip
    return b


def test_deploy_names_the_node_for_an_unknown_calendar_or_a_bad_duration(clock: ManualClock) -> None:
    engine = Engine(Database("sqlite+aiosqlite://"), default_registry(), clock=clock,
                    calendars=Calendars({"bavaria": BAVARIA}))  # fmt: skip

    engine.validate(_review(business("P1D", "bavaria")).build())
    with pytest.raises(DefinitionError) as unknown:
        engine.validate(_review(escalation=[remind(business("P1D", "mars"))]).build())
    with pytest.raises(DefinitionError) as bad:
        engine.validate(_review({"duration": "P1D", "busines": True}).to_json())

    [error] = unknown.value.field_errors
    assert (error.field, error.code) == ("nodes.review.escalation.0.after", "UNKNOWN_CALENDAR")
    assert "node 'review'" in error.message and "'mars'" in error.message
    [error] = bad.value.field_errors
    assert error.field == "nodes.review.dueIn" and "node 'review'" in error.message and "busines" in error.message


async def test_due_in_counts_business_time_from_friday_evening(db: Database) -> None:
    clock = ManualClock(utc(2026, 1, 9, 19))  # Friday, after hours
    engine = Engine(db, default_registry(), clock=clock)
    await engine.deploy(_review(business("P1D")).build())

    instance = await engine.start("review", {}, "alice")
    [task] = [t for t in await _tasks(engine, instance.id)]

    assert task.due_at == utc(2026, 1, 13, 9)  # Tuesday's opening: Monday was the one business day


async def _tasks(engine: Engine, instance_id: str) -> list[Any]:
    from engine.storage.tasks import TaskRepository

    async with engine.db.read() as session:
        return await TaskRepository(session).find_by_instance(instance_id)


async def test_a_delay_waits_business_time_in_the_contexts_calendar() -> None:
    clock = ManualClock(berlin(2026, 1, 5, 16).astimezone(UTC))  # Monday 16:00 in Munich
    context = SystemTaskContext(clock=clock, calendars=Calendars({"bavaria": BAVARIA}))
    config = {"duration": {"duration": "PT2H", "business": True, "calendar": "bavaria"}}
    request = attempt("delay", config, created_at=clock.now())

    waiting = await DelayExecutor().execute(request, context)
    clock.advance(timedelta(days=2))
    done = await DelayExecutor().execute(request, context)

    assert isinstance(waiting, WaitUntil)
    assert waiting.until == berlin(2026, 1, 7, 10).astimezone(UTC)  # 1 h Monday, Epiphany, 1 h Wednesday
    assert isinstance(done, ExecutionResult)
    assert DelayExecutor().validate(_delay({"duration": {"duration": "P1D", "business": "yes"}})) != []


def _delay(config: dict[str, Any]) -> Any:
    b = WorkflowBuilder("wait")
    b.system_task("wait", "delay", config)
    return b.build().node("wait")
