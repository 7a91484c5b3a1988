"""Subscriptions (DESIGN §4): task events, notifications and discussion messages, pushed live.

Each resolver streams from the process's :class:`~engine.events.EventHub`, which checks visibility
per event against the task as it is now. A :class:`TaskEvent`'s ``cursor`` is opaque; passing the
last one received as ``taskEvents(after:)`` replays what committed after it and then continues live.

Errors end the subscription with a top-level error whose ``extensions.code`` says why:
``SUBSCRIBER_OVERFLOW`` (the client fell behind; ``extensions.resumeAfter`` is the cursor to resume
from), ``TOO_MANY_SUBSCRIPTIONS``, ``NOT_FOUND``, ``BAD_USER_INPUT`` (a malformed cursor).
"""

from __future__ import annotations

import base64
import binascii
import weakref
from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import datetime

import strawberry
from graphql import GraphQLError

from engine.errors import NotFoundError, StepwiseError, SubscriberOverflowError
from engine.events import Delivery, EventFilter
from engine.runner import Engine
from engine.services import visible_task
from schema.context import Info
from schema.loaders import DataLoaders
from schema.permissions import IsAuthenticated
from schema.types.enums import TaskEventKind
from schema.types.tasks import Task, TaskMessage, load_user
from schema.types.user import User

_CURSOR_PREFIX = "taskEvent:"


def encode_event_cursor(event_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{event_id}".encode()).decode().rstrip("=")


def decode_event_cursor(cursor: str) -> int:
    """The event id behind a cursor; anything else is the client's error (``BAD_USER_INPUT``)."""
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if decoded.startswith(_CURSOR_PREFIX):
            event_id = int(decoded.removeprefix(_CURSOR_PREFIX))
            if event_id >= 0:
                return event_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise GraphQLError("`after` is not a task event cursor", extensions={"code": "BAD_USER_INPUT"})


@strawberry.input(description="Narrows `taskEvents`; every field given must match.")
class TaskEventFilter:
    workflow_instance_id: strawberry.ID | None = None
    step_instance_id: strawberry.ID | None = None
    task_id: strawberry.ID | None = None
    assigned_to_me: bool | None = None
    role: str | None = None


@strawberry.type(description="One committed change to a task. `task` is the task as it is now.")
class TaskEvent:
    cursor: str = strawberry.field(description="Pass as `taskEvents(after:)` to resume after this event.")
    kind: TaskEventKind
    task: Task
    occurred_at: datetime
    source: strawberry.Private[Delivery]

    @strawberry.field(description="Who made the change; null for the engine itself.")
    async def actor(self, info: Info) -> User | None:
        return await load_user(info, self.source.event.actor_id)

    @classmethod
    def from_domain(cls, delivery: Delivery) -> TaskEvent:
        event = delivery.event
        return cls(
            cursor=encode_event_cursor(event.id), kind=event.kind, task=Task.from_domain(delivery.task),
            occurred_at=event.occurred_at, source=delivery,
        )  # fmt: skip


_event_loaders: weakref.WeakKeyDictionary[Delivery, DataLoaders] = weakref.WeakKeyDictionary()


def event_loaders(engine: Engine, delivery: Delivery) -> DataLoaders:
    """The DataLoaders every subscriber shares for one delivered event, primed with the users it names.

    A delivery is one read of an event, fanned out as one object: sharing its loaders means a nested
    field is looked up once per event, not once per subscriber, and still shows the state as of that
    event (never an earlier event's cache). A replay reads its own deliveries, so gets its own. The
    entry goes when the last subscriber is done with the delivery.
    """
    loaders = _event_loaders.get(delivery)
    if loaders is None:
        loaders = _event_loaders[delivery] = DataLoaders.create(engine)
        loaders.users.prime_many(delivery.users)
    return loaders


def _error(exc: StepwiseError) -> GraphQLError:
    extensions: dict[str, object] = {"code": exc.code}
    if isinstance(exc, SubscriberOverflowError):
        extensions["resumeAfter"] = encode_event_cursor(exc.resume_after)
    return GraphQLError(exc.message, extensions=extensions)


async def _deliveries(info: Info, filter: EventFilter, after: int | None = None) -> AsyncGenerator[Delivery, None]:
    """The hub's stream for the viewer, within the connection's limit, with engine errors as GraphQL ones."""
    context = info.context
    user = context.user
    if context.events is None:
        raise GraphQLError("subscriptions are not available on this endpoint", extensions={"code": "UNAVAILABLE"})
    limit = context.subscription_limit
    if limit is not None and context.live_subscriptions >= limit:
        message = f"at most {limit} subscriptions per connection; end one before starting another"
        raise GraphQLError(message, extensions={"code": "TOO_MANY_SUBSCRIPTIONS"})
    context.live_subscriptions += 1
    try:
        async with aclosing(context.events.stream(user, filter, after)) as deliveries:
            async for delivery in deliveries:
                # A connection's context lives as long as the connection: the event's own loaders,
                # so nested fields show the state now, not what an earlier event cached.
                context.loaders = event_loaders(context.engine, delivery)
                yield delivery
    except StepwiseError as exc:
        raise _error(exc) from exc
    finally:
        context.live_subscriptions -= 1


@strawberry.type
class Subscription:
    @strawberry.subscription(
        permission_classes=[IsAuthenticated],
        description="Every change to a task the viewer may see that matches the filter, in commit order. "
        "`after` (a cursor) first replays what committed after it: nothing is missed or repeated.",
    )
    async def task_events(
        self, info: Info, filter: TaskEventFilter | None = None, after: str | None = None
    ) -> AsyncGenerator[TaskEvent, None]:
        f = filter or TaskEventFilter()
        wanted = EventFilter(
            workflow_instance_id=f.workflow_instance_id, step_instance_id=f.step_instance_id, task_id=f.task_id,
            assigned_to_me=bool(f.assigned_to_me), role=f.role,
        )  # fmt: skip
        start = decode_event_cursor(after) if after is not None else None
        async with aclosing(_deliveries(info, wanted, start)) as deliveries:
            async for delivery in deliveries:
                yield TaskEvent.from_domain(delivery)

    @strawberry.subscription(
        permission_classes=[IsAuthenticated],
        description="Changes others make to tasks assigned to the viewer, their roles or their groups.",
    )
    async def notifications(self, info: Info) -> AsyncGenerator[TaskEvent, None]:
        async with aclosing(_deliveries(info, EventFilter.notifications())) as deliveries:
            async for delivery in deliveries:
                yield TaskEvent.from_domain(delivery)

    @strawberry.subscription(permission_classes=[IsAuthenticated], description="New messages on a task, live.")
    async def task_messages(self, info: Info, task_id: strawberry.ID) -> AsyncGenerator[TaskMessage, None]:
        try:
            await visible_task(info.context.engine, info.context.user, task_id)
        except NotFoundError as exc:
            raise _error(exc) from exc
        async with aclosing(_deliveries(info, EventFilter.messages(task_id))) as deliveries:
            async for delivery in deliveries:
                if delivery.message is not None:
                    yield TaskMessage.from_domain(delivery.message)
