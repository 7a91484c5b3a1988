"""Subscriptions (docs/design.md §4): task events, notifications and discussion messages, pushed live.

Each resolver streams from the process's :class:`~engine.events.hub.EventHub`, which checks visibility
per event against the task as it is now. A :class:`TaskEvent`'s ``cursor`` is opaque; passing the
last one received as ``taskEvents(after:)`` replays what committed after it and then continues live.

Errors end the subscription with a top-level error whose ``extensions.code`` says why:
``SUBSCRIBER_OVERFLOW`` (the client fell behind; ``extensions.resumeAfter`` is the cursor to resume
from), ``TOO_MANY_SUBSCRIPTIONS``, ``NOT_FOUND``, ``BAD_USER_INPUT`` (a malformed cursor).
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import strawberry
from graphql import ExecutionResult, GraphQLError, GraphQLObjectType

from engine import (
    Delivery,
    Engine,
    EventFilter,
    FieldError,
    NotFoundError,
    StepwiseError,
    SubscriberOverflowError,
    ValidationError,
    encode_event_cursor,
)
from engine import decode_event_cursor as event_position
from schema.context import Info
from schema.execution import PlainFieldsExecutionContext
from schema.inbox import bad_user_input
from schema.library_internals import CollectedFields, FieldDetailsList, forget_subfield_memo
from schema.loaders import DataLoaders
from schema.permissions import IsAuthenticated
from schema.sharing import same_for_every_viewer, selection_is_same_for_every_viewer
from schema.types.details import TaskMessage
from schema.types.enums import TaskEventKind
from schema.types.tasks import Task
from schema.types.user import User, load_user


def decode_event_cursor(cursor: str) -> int:
    """The event log position behind a cursor; anything else is the client's error (``BAD_USER_INPUT``)."""
    position = event_position(cursor)
    if position is not None:
        return position
    problem = FieldError("after", "not a cursor of this subscription", "INVALID_CURSOR")
    raise bad_user_input(ValidationError("after is not a task event cursor", [problem]))


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
    @same_for_every_viewer
    async def actor(self, info: Info) -> User | None:
        return await load_user(info, self.source.event.actor_id)

    @classmethod
    def from_domain(cls, delivery: Delivery) -> TaskEvent:
        event = delivery.event
        return cls(
            cursor=encode_event_cursor(delivery.position), kind=event.kind, task=Task.from_domain(delivery.task),
            occurred_at=event.occurred_at, source=delivery,
        )  # fmt: skip


@dataclass
class _EventShare:
    """What the subscribers of one delivered event share: its DataLoaders and executed results."""

    loaders: DataLoaders
    results: dict[tuple[int, str], tuple[object, asyncio.Future[ExecutionResult]]] = field(default_factory=dict)


_shares: weakref.WeakKeyDictionary[Delivery, _EventShare] = weakref.WeakKeyDictionary()


def _share(engine: Engine, delivery: Delivery) -> _EventShare:
    share = _shares.get(delivery)
    if share is None:
        share = _shares[delivery] = _EventShare(DataLoaders.create(engine))
        share.loaders.users.prime_many(delivery.users)
    return share


def event_loaders(engine: Engine, delivery: Delivery) -> DataLoaders:
    """The DataLoaders every subscriber shares for one delivered event, primed with the users it names.

    A delivery is one read of an event, fanned out as one object: sharing its loaders means a nested
    field is looked up once per event, not once per subscriber, and still shows the state as of that
    event (never an earlier event's cache). A replay reads its own deliveries, so gets its own. The
    entry goes when the last subscriber is done with the delivery.
    """
    return _share(engine, delivery).loaders


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
    @same_for_every_viewer
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
    @same_for_every_viewer
    async def notifications(self, info: Info) -> AsyncGenerator[TaskEvent, None]:
        async with aclosing(_deliveries(info, EventFilter.notifications())) as deliveries:
            async for delivery in deliveries:
                yield TaskEvent.from_domain(delivery)

    @strawberry.subscription(permission_classes=[IsAuthenticated], description="New messages on a task, live.")
    async def task_messages(self, info: Info, task_id: strawberry.ID) -> AsyncGenerator[TaskMessage, None]:
        try:
            await info.context.visibility.task(info.context.user, task_id)
        except NotFoundError as exc:
            raise _error(exc) from exc
        async with aclosing(_deliveries(info, EventFilter.messages(task_id))) as deliveries:
            async for delivery in deliveries:
                if delivery.message is not None:
                    yield TaskMessage.from_domain(delivery.message)


# -- executing one event for many subscribers ------------------------------------------------------


async def _copy_of(shared: asyncio.Future[ExecutionResult]) -> ExecutionResult:
    # Shielded: a subscriber that goes away mid-event must not cancel the others' result.
    result = await asyncio.shield(shared)
    return ExecutionResult(result.data, list(result.errors) if result.errors else None, result.extensions)


class SubscriptionExecutionContext(PlainFieldsExecutionContext):
    """Strawberry's executor, made cheap for one event delivered to many subscribers.

    - Subscribers whose selection and variables are the same, and whose selection cannot differ
      between viewers (plain fields and resolvers marked where they are defined, :mod:`schema.sharing`),
      share one execution per event: the first
      executes, the others copy its result. Which events a subscriber gets is still decided per
      subscriber (visibility and filter, in the hub); only how an event it may see is shown is shared.
    - Subfields are memoized by the document's field nodes, which are the same every event.
      graphql-core 3.3.2 memoizes them by the id of per-event lists, in a dict all of a
      subscription's per-event executors share: it never hit across events and grew by every event
      for the subscription's life (bench.push_memory: +12,000 objects per second per process, and
      full collections of half a second and more).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._subfields_by_nodes: dict[tuple[GraphQLObjectType, object], CollectedFields] = {}
        self._share_key: tuple[int, str] | None = None
        self._share_key_known = False

    def build_per_event_executor(self, payload: Any) -> SubscriptionExecutionContext:
        if not self._share_key_known:  # once per subscription; the per-event copies inherit it
            self._share_key_known = True
            if selection_is_same_for_every_viewer(self.schema, self.operation, self.fragment_definitions):
                variables = json.dumps(self.variable_values.coerced, sort_keys=True, default=repr)
                self._share_key = (id(self.operation), variables)
        executor = super().build_per_event_executor(payload)
        assert isinstance(executor, SubscriptionExecutionContext)
        forget_subfield_memo(executor)  # per event, so it goes with the event
        executor._plans = {}  # likewise: it keeps each event's root selection alive
        return executor

    def collect_subfields(
        self, return_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> CollectedFields:
        # The nodes are the (cached) document's, alive as long as this executor: their ids are stable.
        # Nearly always one field node: that case builds no tuple (a page asks for every object it completes).
        key: tuple[GraphQLObjectType, object]
        if len(field_details_list) == 1:
            details = field_details_list[0]
            if details.defer_usage is not None or details.fragment_variable_values is not None:
                return super().collect_subfields(return_type, field_details_list)
            key = (return_type, id(details.node))
        else:
            if any(d.defer_usage is not None or d.fragment_variable_values is not None for d in field_details_list):
                return super().collect_subfields(return_type, field_details_list)
            key = (return_type, tuple(id(d.node) for d in field_details_list))
        found = self._subfields_by_nodes.get(key)
        if found is None:
            found = self._subfields_by_nodes[key] = super().collect_subfields(return_type, field_details_list)
        return found

    def execute_operation(self, serially: bool | None = None) -> Any:
        payload, key = self.root_value, self._share_key
        if key is None or not isinstance(payload, TaskEvent):
            return super().execute_operation(serially)
        share = _share(self.context_value.engine, payload.source)
        entry = share.results.get(key)
        if entry is None:
            result = super().execute_operation(serially)
            if self.is_awaitable(result):
                shared: asyncio.Future[ExecutionResult] = asyncio.ensure_future(result)
            else:
                shared = asyncio.get_running_loop().create_future()
                shared.set_result(cast(ExecutionResult, result))  # a subscription's is never incremental
            # The operation is kept with its result so that its id (in the key) is not reused meanwhile.
            entry = share.results[key] = (self.operation, shared)
        return _copy_of(entry[1])
