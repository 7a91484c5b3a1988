"""What the engine tells an operator's instruments: a class whose hooks do nothing.

The engine imports no metrics library; the server subclasses :class:`EngineObserver` (Prometheus,
``server.metrics``) and sets it as :attr:`Engine.observer <engine.runner.Engine.observer>`. A hook
must be cheap and must not raise: it runs after the work it reports on has committed.
"""

from __future__ import annotations

from enum import StrEnum


class AttemptOutcome(StrEnum):
    """How a worker's attempt at a system task ended."""

    COMPLETED = "completed"
    RETRYING = "retrying"
    FAILED = "failed"
    WAITING = "waiting"
    """The executor asked to be run again later (a delay), which is not a failure."""
    HANDED_BACK = "handed_back"
    """The worker stopped before the attempt finished and released the task for another worker."""
    DROPPED = "dropped"
    """The result was not recorded (the lease was lost, or the task changed meanwhile)."""


class EngineObserver:
    """Every hook is a no-op here."""

    def transition_committed(self, kind: str, seconds: float, events: int) -> None:
        """A transition (``kind`` ``start`` or ``transition``) committed after ``seconds``, writing ``events``."""

    def tasks_claimed(self, task_type: str, count: int) -> None:
        """A worker leased ``count`` system tasks of ``task_type``."""

    def attempt_finished(self, task_type: str, outcome: AttemptOutcome, seconds: float) -> None:
        """A worker's attempt at a ``task_type`` task ended with ``outcome`` after ``seconds``."""
