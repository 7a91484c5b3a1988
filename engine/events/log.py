"""The event log read back as deliveries (docs/design.md §4): what subscribers are handed for each committed event.

Events are written and numbered by :mod:`engine.events.numbering`; the hub (:mod:`engine.events.hub`)
fans deliveries out. :func:`load_deliveries` reads the events after a cursor (a position) once, each
with what subscribers need to judge and show it (the task as it is now, the instance's starter, the
users it mentions, the message of ``MESSAGE_POSTED``), in a handful of batched queries however many
events and subscribers there are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, cast

from engine.state import Task, TaskEvent, TaskEventKind, TaskMessage, User
from engine.storage.database import Database
from engine.storage.directory import DirectoryRepository
from engine.storage.discussion import TaskDetailsRepository
from engine.storage.instances import InstanceRepository
from engine.storage.task_events import TaskEventRepository
from engine.storage.tasks import TaskRepository


@dataclass(frozen=True, eq=False)
class Delivery:
    """A committed event with what subscribers need to judge and show it: the task as it is now (not
    as it was at the event), its instance's starter, the users it mentions and, for
    ``MESSAGE_POSTED``, the message.

    Compared by identity: one read of an event is fanned out as one object to every subscriber, so
    presentation layers can share per-event work among them (keyed weakly by the delivery).
    """

    event: TaskEvent
    task: Task
    started_by: str
    message: TaskMessage | None = None
    users: Mapping[str, User | None] = field(default_factory=dict)
    """The directory users :func:`mentioned_users` names, read with the event; None for an id that is
    not in the directory (e.g. a system actor). May be empty (read without users): load them then."""

    @property
    def position(self) -> int:
        """The event's place in the log, which cursors name (deliveries are read by position)."""
        return cast(int, self.event.position)


def mentioned_users(delivery: Delivery) -> set[str]:
    """Who an event names: its actor, the task's assignee and completer, the message's author."""
    task, message = delivery.task, delivery.message
    ids = {delivery.event.actor_id, task.assigned_user_id, task.completed_by}
    if message is not None:
        ids.add(message.author_id)
    return {user_id for user_id in ids if user_id is not None}


@dataclass(frozen=True)
class Batch:
    deliveries: list[Delivery]
    read_through: int
    """The highest position read (the starting cursor when there was none)."""
    full: bool
    """The read hit its limit: there may be more."""


async def load_deliveries(db: Database, after: int, limit: int, *, with_users: bool = True) -> Batch:
    """Events numbered after position ``after`` (at most ``limit``), each with its task as it is now and (unless
    ``with_users`` is false: nobody is listening) the users it mentions."""
    async with db.read() as session:
        events = await TaskEventRepository(session).after(after, limit)
        if not events:
            return Batch([], after, False)
        tasks = await TaskRepository(session).get_many({e.task_id for e in events})
        # Only who started each: not the data, which holds every input and output the instance stored.
        instances = await InstanceRepository(session).get_many({e.workflow_instance_id for e in events}, summary=True)
        message_ids = {message_id for e in events if (message_id := _message_id(e)) is not None}
        messages = await TaskDetailsRepository(session).get_messages(message_ids) if message_ids else {}
        deliveries = []
        for event in events:
            task, instance = tasks.get(event.task_id), instances.get(event.workflow_instance_id)
            if task is None or instance is None:  # deleted since (cascade): nothing left to show
                continue
            message_id = _message_id(event)
            message = messages.get(message_id) if message_id is not None else None
            deliveries.append(Delivery(event, task, instance.started_by, message))
        if with_users and deliveries:
            # Once per batch here rather than once per subscriber and event in the schema (a session
            # and three directory queries each): that made pushing to many subscribers CPU-bound.
            found = await DirectoryRepository(session).get_users(set().union(*map(mentioned_users, deliveries)))
            deliveries = [replace(d, users={u: found.get(u) for u in mentioned_users(d)}) for d in deliveries]
    return Batch(deliveries, cast(int, events[-1].position), len(events) == limit)


def _message_id(event: TaskEvent) -> str | None:
    value: Any = event.data.get("messageId") if event.kind is TaskEventKind.MESSAGE_POSTED else None
    return value if isinstance(value, str) else None
