"""The ``delay`` executor with the injected clock, and ``echo``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.clock import ManualClock
from engine.errors import ExecutionFailedError
from engine.workers.delay import DelayExecutor
from engine.workers.echo import EchoExecutor
from engine.workers.executor import ExecutionResult, SystemTaskContext, WaitUntil
from tests.workers.support import attempt

DELAY = DelayExecutor()


async def test_duration_waits_from_task_creation_then_completes(context: SystemTaskContext, clock: ManualClock) -> None:
    request = attempt("delay", {"duration": "PT1H30M"}, created_at=clock.now() - timedelta(minutes=10))
    due = clock.now() + timedelta(minutes=80)

    first = await DELAY.execute(request, context)
    clock.advance(timedelta(minutes=79, seconds=59))
    second = await DELAY.execute(request, context)
    clock.advance(timedelta(seconds=1))
    third = await DELAY.execute(request, context)

    assert first == WaitUntil(due, request={"until": due.isoformat()})
    assert isinstance(second, WaitUntil) and second.until == due
    assert third == ExecutionResult(output={"waitedUntil": due.isoformat()}, request={"until": due.isoformat()})


async def test_calendar_durations(context: SystemTaskContext, clock: ManualClock) -> None:
    created = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)

    result = await DELAY.execute(attempt("delay", {"duration": "P1M"}, created_at=created), context)

    assert isinstance(result, WaitUntil)
    assert result.until == datetime(2026, 2, 28, 12, 0, tzinfo=UTC)


async def test_until(context: SystemTaskContext, clock: ManualClock) -> None:
    future = (clock.now() + timedelta(days=1)).isoformat()

    waiting = await DELAY.execute(attempt("delay", {"until": future}), context)
    past = await DELAY.execute(attempt("delay", {"until": "2020-01-01T00:00:00"}), context)

    assert isinstance(waiting, WaitUntil) and waiting.until == clock.now() + timedelta(days=1)
    assert isinstance(past, ExecutionResult)
    assert past.output == {"waitedUntil": "2020-01-01T00:00:00+00:00"}  # no offset given: UTC


async def test_a_rendered_duration_that_is_not_one_fails_for_good(context: SystemTaskContext) -> None:
    with pytest.raises(ExecutionFailedError) as failure:
        await DELAY.execute(attempt("delay", {"duration": "ten minutes"}), context)

    assert failure.value.non_retryable


async def test_echo_stores_the_rendered_output_as_is(context: SystemTaskContext) -> None:
    output = {"total": 12.5, "tags": ["a", None], "nested": {"ok": True}}

    result = await EchoExecutor().execute(attempt("echo", {"output": output}), context)

    assert result == ExecutionResult(output=output)
