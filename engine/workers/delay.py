"""The ``delay`` system task: a durable timer.

Config: ``duration`` (ISO 8601, counted from when the task was created, or business time such as
``{"duration": "P1D", "business": true}`` in one of the context's calendars) or ``until`` (an ISO 8601 date-time;
without an offset it is taken as UTC). Until the moment comes the executor answers :class:`WaitUntil`, which
the worker stores as the task's wake-up time, so the timer survives a restart; once the clock has passed it,
the task completes with ``{waitedUntil}``. Time is read from the context's clock, so tests move it by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import isodate

from engine.definitions.durations import parse_span
from engine.definitions.model import Node
from engine.workers.config_checks import check_keys, pending, require_valid
from engine.workers.executor import ExecutionRequest, ExecutionResult, SystemTaskContext, WaitUntil

KEYS = ("duration", "until")


def parse_duration(text: str) -> timedelta | isodate.Duration:
    """An ISO 8601 duration; ``isodate.Duration`` when it has years or months, whose length depends on the date."""
    value = isodate.parse_duration(text)
    if not isinstance(value, timedelta | isodate.Duration):
        raise ValueError(f"{text!r} is not a duration")
    return value


def parse_until(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def config_problems(config: Mapping[str, Any], *, rendered: bool) -> list[str]:
    problems = check_keys(config, (), KEYS)
    present = [key for key in KEYS if key in config]
    if len(present) != 1:
        problems.append("config needs exactly one of 'duration' and 'until'")
    duration, until = config.get("duration"), config.get("until")
    if isinstance(duration, Mapping):
        try:
            parse_span(duration)
        except ValueError as exc:
            problems.append(f"config 'duration' {exc}")
    elif "duration" in config and not pending(duration, rendered):
        try:
            value = parse_duration(duration) if isinstance(duration, str) else None
        except (ValueError, isodate.ISO8601Error):
            value = None
        if value is None:
            problems.append(f"config 'duration' must be an ISO 8601 duration such as 'PT5M', not {duration!r}")
        elif _negative(value):
            problems.append(f"config 'duration' must not be negative, not {duration!r}")
    if "until" in config and not pending(until, rendered):
        try:
            valid = isinstance(until, str) and parse_until(until) is not None
        except ValueError:
            valid = False
        if not valid:
            problems.append(f"config 'until' must be an ISO 8601 date-time, not {until!r}")
    return problems


def _negative(value: timedelta | isodate.Duration) -> bool:
    reference = datetime(2000, 1, 1, tzinfo=UTC)
    return bool(reference + value < reference)


class DelayExecutor:
    """Runs ``delay`` nodes: waits (durably) until a moment, then completes."""

    type = "delay"
    task_type = "DELAY"

    def validate(self, node: Node) -> list[str]:
        return config_problems(node.config, rendered=False)

    async def execute(self, request: ExecutionRequest, context: SystemTaskContext) -> ExecutionResult | WaitUntil:
        config = request.config
        require_valid(config_problems(config, rendered=True), request.secrets)
        duration = config.get("duration")
        if isinstance(duration, Mapping):
            until: datetime = context.calendars.after(request.task_created_at, parse_span(duration))
        elif duration is not None:
            until = request.task_created_at + parse_duration(str(duration))
        else:
            until = parse_until(str(config["until"]))
        moment = until.isoformat()
        if context.clock.now() >= until:
            return ExecutionResult(output={"waitedUntil": moment}, request={"until": moment})
        return WaitUntil(until, request={"until": moment})
