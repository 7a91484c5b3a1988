"""Escalation ladders on user tasks: what happens, step by step, while a task stays open.

``"escalation": [{"after": "PT4H", "action": "remind"}, {"after": "P1D", "action": "reassign",
"to": {"role": "manager"}}, {"after": "P2D", "action": "complete", "outcome": {"decision": "rejected"}}]``.
Each ``after`` (a :data:`~engine.definitions.durations.Span`, business time allowed) counts from when
the task was created; the worker fires each step once (:mod:`engine.workers.escalations`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from engine.definitions.durations import Span, parse_span, span_to_json
from engine.errors import FieldError


class EscalationAction(StrEnum):
    REMIND = "remind"
    """Email the assignee (or, unassigned, the candidates) — or ``to`` (a role, a group or a user, e.g. their
    manager), the task staying where it is — and record a ``REMINDED`` event."""
    REASSIGN = "reassign"
    """Hand the task to ``to`` (a role, a group or a user): an ``ESCALATED`` event."""
    COMPLETE = "complete"
    """Complete the task with ``outcome`` (an approval's decision, a form's values): ``ESCALATED``, then
    ``COMPLETED``, and the workflow moves on."""


_TARGET_KEYS = ("role", "group", "user")
_STEP_KEYS = frozenset({"after", "action", "to", "outcome"})


@dataclass(frozen=True)
class EscalationTarget:
    """Exactly one of a role, a group or a user."""

    role: str | None = None
    group: str | None = None
    user: str | None = None

    def to_json(self) -> dict[str, str]:
        return {key: value for key in _TARGET_KEYS if (value := getattr(self, key)) is not None}


@dataclass(frozen=True)
class EscalationStep:
    after: Span
    action: EscalationAction
    to: EscalationTarget | None = None
    outcome: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"after": span_to_json(self.after), "action": self.action.value}
        if self.to is not None:
            doc["to"] = self.to.to_json()
        if self.outcome:
            doc["outcome"] = dict(self.outcome)
        return doc


def parse_escalation(value: Any, path: str, subject: str, errors: list[FieldError]) -> tuple[EscalationStep, ...]:
    """The node's ladder (``path``: its field, e.g. ``nodes.review.escalation``); every mistake is
    appended to ``errors`` naming the node and the step."""
    if value is None:
        return ()
    if not isinstance(value, list):
        errors.append(FieldError(path, f"{subject}: escalation must be a list of steps", "INVALID"))
        return ()
    steps = []
    for index, doc in enumerate(value):
        step = _parse_step(doc, f"{path}.{index}", f"{subject}, escalation step #{index}", errors)
        if step is not None:
            steps.append(step)
    return tuple(steps)


def _parse_step(doc: Any, path: str, subject: str, errors: list[FieldError]) -> EscalationStep | None:
    def fail(key: str, message: str, code: str = "INVALID") -> None:
        errors.append(FieldError(f"{path}.{key}" if key else path, f"{subject}: {key} {message}".strip(), code))

    if not isinstance(doc, Mapping):
        fail("", "must be an object")
        return None
    for key in sorted(set(doc) - _STEP_KEYS):
        fail(key, "is not a known key", "UNKNOWN_KEY")
    if "after" not in doc:
        fail("after", "is required", "REQUIRED")
        return None
    try:
        after = parse_span(doc["after"])
    except ValueError as exc:
        fail("after", str(exc))
        return None
    try:
        action = EscalationAction(str(doc.get("action")))
    except ValueError:
        fail("action", f"must be one of remind, reassign, complete, not {doc.get('action')!r}")
        return None
    to = None
    if action is EscalationAction.REASSIGN or (action is EscalationAction.REMIND and "to" in doc):
        to = _parse_target(doc.get("to"), fail)
        if to is None:
            return None
    elif "to" in doc:
        fail("to", "is only for a reassign or remind step")
    outcome = doc.get("outcome")
    if action is EscalationAction.COMPLETE:
        if not isinstance(outcome, Mapping):
            fail("outcome", "is required for a complete step: the result the task completes with", "REQUIRED")
            return None
    elif outcome is not None:
        fail("outcome", "is only for a complete step")
    return EscalationStep(after=after, action=action, to=to, outcome=dict(outcome or {}))


def _parse_target(value: Any, fail: Any) -> EscalationTarget | None:
    if not isinstance(value, Mapping) or len(value) != 1 or next(iter(value)) not in _TARGET_KEYS:
        fail("to", "must be one of {'role': …}, {'group': …}, {'user': …}", "REQUIRED" if value is None else "INVALID")
        return None
    [(key, name)] = value.items()
    if not isinstance(name, str) or not name:
        fail("to", f"{key} must be a non-empty string")
        return None
    return EscalationTarget(**{key: name})
