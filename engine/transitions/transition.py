"""One transition of one workflow instance: everything it changes commits at once, or nothing does.

A :class:`Transition` holds the instance (locked, or checked by revision when it is written: see
:mod:`engine.transitions.engine`), its definition and the connection; it completes
tasks, moves tokens along edges (conditions, forks, joins), creates the tasks tokens wait at, and
writes a task event for every change. The :class:`~engine.transitions.engine.Engine` opens and commits it.

Beside it: :mod:`~engine.transitions.task_creation` (the task a token waits at, a base class of
``Transition``), :mod:`~engine.transitions.variables` (what templates and conditions see),
:mod:`~engine.transitions.new_tasks` (a new task's values and due time),
:mod:`~engine.transitions.event_data` (what an event records of a change) and
:mod:`~engine.transitions.status` (the instance's status from its tokens).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from datetime import datetime
from typing import Any, TypeVar

from engine.calendars import Calendars
from engine.definitions.model import Node, WorkflowDefinition
from engine.definitions.registry import Registry
from engine.definitions.templates import evaluate_condition
from engine.errors import ConflictError, InvalidStateError, NotFoundError, SignalAlreadyHeldError
from engine.state import (
    HeldSignal,
    InstanceStatus,
    StepInstance,
    Task,
    TaskEventKind,
    TaskStatus,
    Token,
    User,
    WorkflowInstance,
    new_id,
)
from engine.storage.deferred import DeferredUpdate, TransitionConnection
from engine.storage.directory import DirectoryRepository
from engine.storage.escalations import scheduled_rows
from engine.storage.held_signals import applied, held_values, waiting_signal
from engine.storage.instances import LockedInstance
from engine.storage.models import held_signals as held_signal_rows
from engine.storage.models import task_escalations, tasks
from engine.storage.task_events import NewTaskEvent, TaskEventRepository
from engine.storage.tasks import TaskRepository, stored_changes, task_values
from engine.storage.writer import finish_transition
from engine.transitions.event_data import changes_between, created_data
from engine.transitions.remembered import RememberedMembers
from engine.transitions.status import status_of
from engine.transitions.task_creation import TaskCreation
from engine.transitions.variables import template_variables

log = logging.getLogger(__name__)
_TASK_FIELDS = frozenset(f.name for f in fields(Task))
_State = TypeVar("_State", Task, WorkflowInstance)
for _cls in (Task, WorkflowInstance):  # what _evolved relies on
    assert not hasattr(_cls, "__post_init__") and not hasattr(_cls, "__slots__"), _cls
    assert all(f.init for f in fields(_cls)), _cls


def _evolved(state: _State, **changes: Any) -> _State:
    """``dataclasses.replace(state, **changes)`` (``changes`` being fields) without ``__init__``: a task
    is 34 fields, each passed by keyword and set through ``object.__setattr__`` (it is frozen), and
    every transition replaces its task and its instance."""
    evolved = object.__new__(type(state))
    evolved.__dict__.update(state.__dict__, **changes)
    return evolved


class Transition(TaskCreation):
    """Mutable working state of one instance inside one database transaction."""

    def __init__(
        self,
        connection: TransitionConnection,
        instance: WorkflowInstance,
        definition: WorkflowDefinition,
        registry: Registry,
        now: datetime,
        actor_id: str | None,
        settings: Mapping[str, Any],
        *,
        steps: Mapping[str, StepInstance] | None = None,
        open_tasks: Sequence[Task] = (),
        remembered: bool = False,
        calendars: Calendars | None = None,
        members: RememberedMembers | None = None,
    ) -> None:
        """``steps`` are all of the instance's step instances by key (none for a new instance) and
        ``open_tasks`` its open tasks, both as read with the locked instance, or as this process
        ``remembered`` them (:mod:`engine.transitions.remembered`: the last statement then checks them);
        ``members``: roles' and groups' members as this process remembers them (the same module), or
        None to read them."""
        self.connection = connection
        self.definition = definition
        self.registry = registry
        self.now = now
        self.actor_id = actor_id
        self.settings = settings
        self.calendars = calendars or Calendars()
        self.instance = instance
        self.data: dict[str, Any] = dict(instance.data)
        self.tokens: list[Token] = list(instance.tokens)
        self.held_signals: list[str] = list(instance.held_signals)
        """Nodes with a signal held for them (:meth:`hold_signal`); only entering one of these reads."""
        self.tasks = TaskRepository(connection)
        self.events = TaskEventRepository(connection)
        self._directory = DirectoryRepository(connection)
        self._steps: dict[str, StepInstance] = dict(steps or {})
        # Open tasks as read with the instance, until this transition changes them (then read again).
        self._open_as_read: dict[str, Task] = {task.token_id: task for task in open_tasks}
        self._open_at_start = tuple(open_tasks)
        self._remembered = remembered
        self._changed: dict[str, Task] = {}  # by id, as this transition leaves them
        self._tokens_at_start = {token.id for token in instance.tokens}
        self._created: dict[str, Task] = {}  # by token
        self.events_written = 0
        self.pending_events: list[NewTaskEvent] = []
        self._starter: User | None = None
        self._members_known = members
        self.assumed_members = {}
        self.outcome: tuple[InstanceStatus, str | None] | None = None

    # -- tasks -----------------------------------------------------------------------------

    async def record(self, kind: TaskEventKind, task: Task, data: Mapping[str, Any] | None = None) -> None:
        """Record an event; :meth:`write` writes them all as the transaction's last step."""
        self.pending_events.append(NewTaskEvent(kind, task, self.actor_id, self.now, data))
        self.events_written += 1

    async def write(self) -> WorkflowInstance:
        """Write the instance as this transition leaves it (:meth:`finish`) and the recorded events,
        as the transaction's last statement (see :mod:`engine.events.numbering` for why last)."""
        finished = self.finish()
        remembered = sorted(f"{t.id}:{t.revision}" for t in self._open_at_start) if self._remembered else None
        assumed = [(kind, key, members) for (kind, key), members in self.assumed_members.items()]
        await finish_transition(self.connection, finished, self.instance.revision, self.pending_events, remembered,
                                assumed)  # fmt: skip
        self.pending_events.clear()
        return finished

    def state_after(self, finished: WorkflowInstance) -> LockedInstance:
        """What reading ``finished`` back would return, once this transition's writes are committed."""
        left = {task.id: task for task in (*self._open_at_start, *self._created.values())} | self._changed
        open_tasks = sorted((t for t in left.values() if t.status.is_open), key=lambda t: (t.created_at, t.id))
        return LockedInstance(finished, dict(self._steps), open_tasks)

    @property
    def created_task_ids(self) -> list[str]:
        return [task.id for task in self._created.values()]

    def as_left(self, task: Task) -> Task:
        """``task`` as this transition leaves it: its last :meth:`update_task`, else as it was."""
        return self._changed.get(task.id, task)

    async def update_task(
        self, task: Task, event: TaskEventKind, *, event_data: Mapping[str, Any] | None = None, **values: Any
    ) -> Task:
        """Change a task at its current revision and record the event with what changed
        (:func:`changes_between`, plus ``event_data``); a lost race is a conflict, raised when the
        change is written (the next statement or the transition's last)."""
        values.setdefault("updated_at", self.now)
        conflict = ConflictError(f"task {task.id} was changed by someone else; reload it and try again")
        change = stored_changes(values, task.revision)
        self.connection.defer_update(DeferredUpdate(tasks, task.id, task.revision, change, conflict))
        known = {key: value for key, value in values.items() if key in _TASK_FIELDS}  # leases are storage-only
        changed = _evolved(task, revision=task.revision + 1, **known)
        self._open_as_read.pop(task.token_id, None)
        self._changed[changed.id] = changed
        await self.record(event, changed, {**changes_between(task, changed), **(event_data or {})})
        return changed

    async def task_by_id(self, task_id: str) -> Task | None:
        """Task ``task_id`` of this instance as this transition has it: an open one as read with the
        instance (or remembered, which the last statement checks), without a round trip; else read."""
        changed = self._changed.get(task_id)
        if changed is not None:
            return changed
        known = next((task for task in self._open_as_read.values() if task.id == task_id), None)
        return known if known is not None else await self.tasks.get_by_id(task_id)

    async def open_task_at(self, node_id: str) -> Task:
        """The open task a signal to ``node_id`` completes, or the error that says why there is none."""
        if not self.definition.has_node(node_id):
            raise NotFoundError(f"workflow instance {self.instance.id} has no node {node_id!r}")
        waiting = [t for t in self.tokens if t.node_id == node_id and t.task_id is not None]
        for token in waiting:
            task = self._open_as_read.get(token.id) or await self.tasks.get_by_token(self.instance.id, token.id)
            if task is not None and task.status.is_open:
                return task
        if any(t.status is TaskStatus.COMPLETED for t in await self.tasks.find_by_instance(self.instance.id)
               if t.node_id == node_id):  # fmt: skip
            raise ConflictError(f"node {node_id!r} has already completed; the signal was ignored")
        raise InvalidStateError(f"node {node_id!r} is not waiting for a signal")

    async def complete(self, task: Task, output: Any, **extra: Any) -> Task:
        """Complete ``task``, store ``output`` under the node's ``storeAs`` and move its token on."""
        if not task.status.is_open:
            raise ConflictError(f"task {task.id} is already {task.status.value.lower()}")
        if self.instance.status.is_final:
            raise InvalidStateError(f"workflow instance {self.instance.id} is {self.instance.status.value}")
        completed = await self.update_task(
            task,
            TaskEventKind.COMPLETED,
            status=TaskStatus.COMPLETED,
            output=output,
            completed_at=self.now,
            completed_by=self.actor_id,
            **extra,
        )
        node = self.definition.node(task.node_id)
        if node.store_as:
            self.data[node.store_as] = output
        token = next((t for t in self.tokens if t.task_id == task.id), None)
        if token is not None:
            self.tokens.remove(token)
            await self.advance(self.leave(node))
        return completed

    async def fail(self, task: Task, error: str) -> Task:
        """A system task ran out of attempts: the task and the instance are ``FAILED``."""
        failed = await self.update_task(task, TaskEventKind.FAILED, status=TaskStatus.FAILED, error=error,
                                        lease_owner=None, lease_expires_at=None)  # fmt: skip
        self.outcome = (InstanceStatus.FAILED, f"node {task.node_id!r} failed: {error}")
        return failed

    def reopen(self) -> None:
        """Take a ``FAILED`` instance back to running (an admin retried its failed task)."""
        self.instance = replace(self.instance, status=InstanceStatus.RUNNING, error=None, completed_at=None)
        self.outcome = None

    async def expire(self, task: Task) -> Task:
        """A user task passed its due time where the node says ``onDue: "expire"``: it is blocked now."""
        return await self.update_task(task, TaskEventKind.EXPIRED, status=TaskStatus.EXPIRED, expires_at=None)

    async def cancel(self, reason: str | None) -> None:
        """Cancel every open task and end the instance as ``CANCELLED``."""
        for task in await self.tasks.find_by_instance(self.instance.id, open_only=True):
            await self.update_task(task, TaskEventKind.CANCELLED, status=TaskStatus.CANCELLED)
        self.tokens.clear()
        self.outcome = (InstanceStatus.CANCELLED, reason)

    # -- tokens ----------------------------------------------------------------------------

    def leave(self, node: Node) -> list[Token]:
        """Tokens for every outgoing edge whose condition holds (several fork; none ends the token)."""
        variables = self.variables()
        return [
            Token(id=new_id(), node_id=edge.target, arrived_from=node.id)
            for edge in self.definition.outgoing(node.id)
            if edge.when is None or evaluate_condition(edge.when, variables)
        ]

    async def advance(self, ready: list[Token]) -> None:
        """Move ``ready`` tokens into their nodes until each waits at a task or a join."""
        while ready:
            token = ready.pop(0)
            node = self.definition.node(token.node_id)
            if node.join == "all":
                merged = self._join(node, token)
                if merged is None:
                    continue
                token = merged
            entered = await self.enter(node, token)
            self.tokens.append(entered)
            created = self._created.get(entered.id)
            if created is not None and node.id in self.held_signals:
                await self._apply_held_signal(created)

    def hold_signal(self, node_id: str, payload: Any) -> None:
        """Keep a signal for ``node_id``, which no token has reached, until one does."""
        if node_id in self.held_signals:
            raise SignalAlreadyHeldError(f"a signal for node {node_id!r} is already held; it has not arrived yet")
        signal = HeldSignal(new_id(), self.instance.id, node_id, payload, self.actor_id, self.now)
        self.connection.defer_insert(held_signal_rows, held_values(signal))
        self.held_signals.append(node_id)

    async def _apply_held_signal(self, task: Task) -> None:
        """A token reached a node a signal was held for: it completes the new task, once, as its sender."""
        self.held_signals.remove(task.node_id)
        signal = await waiting_signal(self.connection, self.instance.id, task.node_id)
        if signal is None:
            return
        self.connection.defer_update(applied(signal, task.id, self.now))
        actor, self.actor_id = self.actor_id, signal.sent_by  # the completion is the sender's signal
        try:
            await self.complete(task, signal.payload)
        finally:
            self.actor_id = actor

    def _join(self, node: Node, token: Token) -> Token | None:
        parked = [t for t in self.tokens if t.node_id == node.id and t.task_id is None] + [token]
        needed = {edge.source for edge in self.definition.incoming(node.id)}
        if not needed <= {t.arrived_from for t in parked}:
            self.tokens.append(token)
            return None
        for edge_source in needed:  # consume one token per incoming edge, oldest first
            arrived = next(t for t in parked if t.arrived_from == edge_source)
            parked.remove(arrived)
            if arrived in self.tokens:
                self.tokens.remove(arrived)
        return Token(id=new_id(), node_id=node.id)

    async def enter(self, node: Node, token: Token) -> Token:
        """Create (idempotently: once per token) the task ``token`` waits at in ``node``.

        A token that already has a task gets that task back, and nothing is written or recorded.
        Tokens are fresh at every hop, so only one this transition began with can have one, and
        only for such a token is the database asked. A new task's step and task rows wait for the
        transaction's next statement or its last one
        (:class:`~engine.storage.database.TransitionConnection`): no round trip of their own.
        """
        existing = self._created.get(token.id)
        if existing is None and token.id in self._tokens_at_start:
            existing = self._open_as_read.get(token.id) or await self.tasks.get_by_token(self.instance.id, token.id)
        if existing is not None:
            return replace(token, task_id=existing.id)
        task = await (self._user_task if node.is_user_task else self._system_task)(node, token)
        self.connection.defer_insert(tasks, task_values(task))
        if node.escalation:
            ladder = [(step, self.calendars.after(self.now, step.after)) for step in node.escalation]
            for row in scheduled_rows(task, ladder):
                self.connection.defer_insert(task_escalations, row)
        self._created[token.id] = task
        await self.record(TaskEventKind.CREATED, task, created_data(task))
        return replace(token, task_id=task.id)

    # -- data and status -------------------------------------------------------------------

    def set_starter(self, user: User | None) -> None:
        self._starter = user

    async def load_starter(self) -> None:
        """Read the starter's directory entry for ``startedBy`` (see :func:`needs_starter` for when)."""
        self._starter = await self._directory.get_user(self.instance.started_by)

    def variables(self) -> dict[str, Any]:
        """What templates and conditions see: the data, ``startedBy`` and ``settings`` (never secrets)."""
        return template_variables(self.data, self.instance.started_by, self._starter, self.settings)

    def finish(self) -> WorkflowInstance:
        """The instance as this transition leaves it, with its status derived from the tokens."""
        if self.outcome is not None:
            status, error = self.outcome
        elif self.instance.status.is_final:
            status, error = self.instance.status, self.instance.error
        else:
            status, error = status_of(self.tokens, self.definition)
        completed_at = (self.instance.completed_at or self.now) if status.is_final else None
        return _evolved(
            self.instance,
            status=status,
            data=self.data,
            tokens=tuple(self.tokens),
            updated_at=self.now,
            completed_at=completed_at,
            revision=self.instance.revision + 1,
            error=error,
            held_signals=tuple(self.held_signals),
        )
