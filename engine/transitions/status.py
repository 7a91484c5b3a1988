"""An instance's status as its tokens leave it."""

from __future__ import annotations

from collections.abc import Sequence

from engine.definitions.model import WorkflowDefinition
from engine.state import InstanceStatus, Token


def status_of(tokens: Sequence[Token], definition: WorkflowDefinition) -> tuple[InstanceStatus, str | None]:
    """A running instance's status (and error) as its ``tokens`` leave it: completed when none is left,
    failed when only parked join tokens are, running while a system task is pending, else waiting."""
    if not tokens:
        return InstanceStatus.COMPLETED, None
    waiting = [t for t in tokens if t.task_id is not None]
    if not waiting:
        stuck = ", ".join(sorted({t.node_id for t in tokens}))
        return InstanceStatus.FAILED, f"join at {stuck} can never complete: no branch is still running"
    if any(not definition.node(t.node_id).is_user_task for t in waiting):
        return InstanceStatus.RUNNING, None
    return InstanceStatus.WAITING_FOR_SIGNAL, None
