"""The tasks a transition creates: a new task's row values, and when it is due."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from engine.calendars import Calendars
from engine.definitions.forms import MAX_TEXT_LENGTH
from engine.definitions.model import Node
from engine.definitions.templates import render_text
from engine.state import Task, TaskStatus, Token, new_id

log = logging.getLogger(__name__)
MAX_TITLE_LENGTH = 1_000


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def new_task(instance_id: str, node: Node, token: Token, step_instance_id: str, now: datetime, **values: Any) -> Task:
    """A new task for ``token`` at ``node``, pending, its title and description cut to their limits."""
    # Rendered from the instance's data, a title or description could be as large as the size limit,
    # and every inbox page reads them: cut, visibly.
    values["title"] = _cut(values["title"], MAX_TITLE_LENGTH)
    if values["description"] is not None:
        values["description"] = _cut(values["description"], MAX_TEXT_LENGTH)
    return Task(
        id=new_id(),
        workflow_instance_id=instance_id,
        step_instance_id=step_instance_id,
        token_id=token.id,
        node_id=node.id,
        name=node.display_name,
        status=TaskStatus.PENDING,
        output=None,
        draft=None,
        revision=0,
        created_at=now,
        updated_at=now,
        **values,
    )


def due_time(
    node: Node, now: datetime, calendars: Calendars, variables: Callable[[], Mapping[str, Any]]
) -> datetime | None:
    """When a new task at ``node`` is due: ``dueIn`` in business time, or ``dueAt`` rendered (an ISO
    8601 date-time; else none, with a warning); ``variables`` is called only for ``dueAt``."""
    if node.due_in is not None:
        return calendars.after(now, node.due_in)
    if node.due_at:
        text = render_text(node.due_at, variables())
        if not text:  # a template over data that sets no due date (requestApproval without dueIn)
            return None
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            log.warning("node %s: dueAt %r is not an ISO 8601 date-time; no due date set", node.id, text)
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=now.tzinfo)
    return None
