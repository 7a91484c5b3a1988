"""The engine's public API: deploy definitions, start instances, signal nodes, cancel.

Every call is one transition, atomic (:mod:`engine.transitions.transition`). On PostgreSQL it first runs in
autocommit: reads (or starts from what this process's own last transition of the instance left,
:mod:`engine.transitions.remembered`), then one last statement that writes everything if the instance is still
at the revision read. A lost race is retried from a fresh read in a transaction that locks the instance
row first (``FOR UPDATE``), as is a transition that must write before its end. SQLite always runs it
in a transaction (``BEGIN IMMEDIATE``). The instance is written with an optimistic revision check.
Validating, deploying and the cache of deployed definitions are the base class's,
:mod:`engine.transitions.definitions`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

from engine.calendars import Calendars
from engine.clock import Clock, SystemClock
from engine.definitions.forms import MAX_TEXT_LENGTH
from engine.definitions.registry import Registry
from engine.definitions.validation import (
    DEFAULT_MAX_JSON_BYTES,
    check_json_size,
)
from engine.errors import (
    ConcurrentUpdateError,
    InvalidStateError,
    NewerDefinitionDeployed,
    NotFoundError,
    RememberedMembersChanged,
    RememberedStateChanged,
    StepwiseError,
    ValidationError,
)
from engine.errors import FieldError as InputError
from engine.events.sequencer import EventSequencer
from engine.idempotency import DEFAULT_TTL, Guard, IdempotencyKeys
from engine.observer import EngineObserver
from engine.state import InstanceStatus, Token, User, WorkflowInstance, new_id
from engine.storage.database import Database
from engine.storage.deferred import TransactionNeeded, TransitionConnection
from engine.storage.directory import DirectoryRepository
from engine.storage.instances import InstanceRepository, instance_values
from engine.storage.models import idempotency_keys, instances
from engine.transitions.definitions import EngineDefinitions
from engine.transitions.remembered import RememberedInstances, RememberedMembers, TaskHomes
from engine.transitions.transition import Transition

log = logging.getLogger(__name__)
T = TypeVar("T")
CommitListener = Callable[[], Awaitable[None]]
_RACE_RETRIES = 8
MAX_CORRELATION_KEY = 255


class Engine(EngineDefinitions):
    """Runs workflows against one database. Safe to share between concurrent requests."""

    def __init__(
        self,
        db: Database,
        registry: Registry,
        *,
        clock: Clock | None = None,
        settings: Mapping[str, Any] | None = None,
        remembered: RememberedInstances | None = None,
        max_json_bytes: int = DEFAULT_MAX_JSON_BYTES,
        idempotency_ttl: timedelta = DEFAULT_TTL,
        calendars: Calendars | None = None,
    ) -> None:
        """``max_json_bytes`` bounds every JSON value a caller hands in (``input``, ``values``, ``payload``)
        and every system task's output (:func:`engine.definitions.validation.check_json_size`);
        ``idempotency_ttl`` is how long an idempotency key is kept (:mod:`engine.idempotency`);
        ``calendars`` are what business durations count in (the server's ``STEPWISE_CALENDARS``)."""
        super().__init__()
        self.db = db
        self.max_json_bytes = max_json_bytes
        self.registry = registry
        self.clock: Clock = clock or SystemClock()
        self.settings: Mapping[str, Any] = settings or {}
        self.calendars = calendars or Calendars()
        self.commit_listeners: list[CommitListener] = []
        self.observer = EngineObserver()
        """Told of every committed transition and worker attempt (the server's metrics replace it)."""
        self.remembered = remembered if remembered is not None else RememberedInstances()
        self.task_homes = TaskHomes()
        self.members = RememberedMembers()
        self.sequencer = EventSequencer(db, self._tell_commit_listeners)
        self.idempotency = IdempotencyKeys(db, self.clock, idempotency_ttl)

    @property
    def _remembers(self) -> bool:
        """Whether transitions start from remembered state (:mod:`engine.transitions.remembered`): on PostgreSQL,
        where a transition's first attempt runs in autocommit and its last statement checks it, unless
        ``STEPWISE_FAST_REMEMBERED_INSTANCES`` turned it off."""
        return self.db.dialect == "postgresql" and self.db.fast_paths.remembered_instances

    @property
    def _members_known(self) -> RememberedMembers | None:
        """Roles' and groups' members as this process remembers them, for a transition to count from
        (:class:`~engine.transitions.remembered.RememberedMembers`): on PostgreSQL, whose last statement
        checks them, unless ``STEPWISE_FAST_REMEMBERED_MEMBERS`` turned it off."""
        remembers = self.db.dialect == "postgresql" and self.db.fast_paths.remembered_members
        return self.members if remembers else None

    # -- instances -------------------------------------------------------------------------

    async def start(
        self,
        definition_key: str,
        input: Mapping[str, Any] | None,
        started_by: str,
        correlation_key: str | None = None,
    ) -> WorkflowInstance:
        """Start the latest version of ``definition_key`` and run until every token waits or ends.

        With a ``correlation_key`` (a business key, unique per definition) that an instance of the
        definition already has, that instance is returned and nothing is started; of two such starts
        at once one starts it, the other loses on the unique index and returns it."""
        if input is not None and not isinstance(input, Mapping):
            raise ValidationError("input must be a JSON object", [InputError("input", "must be a JSON object")])
        check_json_size(input, "input", self.max_json_bytes)
        if correlation_key is not None:
            if not correlation_key or len(correlation_key) > MAX_CORRELATION_KEY:
                problem = InputError(
                    "correlationKey", f"must be 1 to {MAX_CORRELATION_KEY} characters", "INVALID_LENGTH"
                )
                raise ValidationError("correlationKey is invalid", [problem])
            existing = await self.correlated(definition_key, correlation_key)
            if existing is not None:
                return existing
        guard = self.idempotency.take()
        try:
            return await self.idempotency.guarded(
                guard, lambda: self._start_running(definition_key, input, started_by, correlation_key, guard)
            )
        except Exception:
            existing = await self.correlated(definition_key, correlation_key) if correlation_key else None
            if existing is None:
                raise
            return existing  # a concurrent start with the key won

    async def correlated(self, definition_key: str, correlation_key: str) -> WorkflowInstance | None:
        """The instance of ``definition_key`` with ``correlation_key``, if there is one."""
        async with self.db.read() as session:
            return await InstanceRepository(session).find_by_correlation(definition_key, correlation_key)

    async def _start_running(
        self,
        definition_key: str,
        input: Mapping[str, Any] | None,
        started_by: str,
        correlation_key: str | None,
        guard: Guard | None,
    ) -> WorkflowInstance:
        autocommit = True  # on PostgreSQL without BEGIN and COMMIT (SQLite ignores it)
        began = time.perf_counter()
        for _ in range(_RACE_RETRIES):
            try:
                transition, finished = await self._start(
                    definition_key, input, started_by, correlation_key, guard, autocommit=autocommit
                )
            except TransactionNeeded:  # it must write before its end: in a transaction, then
                autocommit = False
            except NewerDefinitionDeployed:  # since this process last saw the key: read its version
                self._latest_versions.pop(definition_key, None)
            except RememberedMembersChanged as changed:  # since this process read them: again, reading them
                self.members.forget(changed.assumed)
            else:
                await self._committed(transition, finished, autocommit=autocommit)
                self.observer.transition_committed("start", time.perf_counter() - began, transition.events_written)
                return finished
        raise ConcurrentUpdateError(f"could not start {definition_key!r}: its definition keeps being redeployed")

    async def _start(
        self,
        definition_key: str,
        input: Mapping[str, Any] | None,
        started_by: str,
        correlation_key: str | None,
        guard: Guard | None,
        *,
        autocommit: bool,
    ) -> tuple[Transition, WorkflowInstance]:
        async with self.db.transition_connection(autocommit=autocommit) as connection:
            transition = await self._started(connection, definition_key, input, started_by, correlation_key)
            self._keep_key(guard, transition, transition.finish())
            return transition, await transition.write()

    def _keep_key(self, guard: Guard | None, transition: Transition, result: Any) -> None:
        """The guarding idempotency key's row, written by the transition's last statement with the rest."""
        if guard is not None:
            transition.connection.defer_insert(idempotency_keys, self.idempotency.row(guard, result, transition.now))

    async def _started(
        self,
        connection: TransitionConnection,
        definition_key: str,
        input: Mapping[str, Any] | None,
        started_by: str,
        correlation_key: str | None = None,
    ) -> Transition:
        definition = await self._latest(connection, definition_key)
        now = self.clock.now()
        instance = WorkflowInstance(
            id=new_id(),
            definition_key=definition.key,
            definition_version=definition.version,
            status=InstanceStatus.RUNNING,
            data=dict(input or {}),
            tokens=(),
            started_by=started_by,
            started_at=now,
            updated_at=now,
            revision=0,
            correlation_key=correlation_key,
        )
        connection.defer_insert(instances, instance_values(instance))  # the last statement writes it
        transition = Transition(
            connection, instance, definition, self.registry, now, started_by, self.settings, calendars=self.calendars,
            members=self._members_known,
        )  # fmt: skip
        if self._needs_starter(definition):
            await transition.load_starter()
        await transition.advance([Token(id=new_id(), node_id=definition.start)])
        return transition

    async def transition(
        self,
        workflow_instance_id: str,
        actor_id: str | None,
        action: Callable[[Transition], Awaitable[T]],
    ) -> tuple[T, WorkflowInstance]:
        """Run ``action`` on the locked instance and commit everything it did in one transaction.

        This is how services complete, claim or cancel: the rules they check and the changes the
        engine makes land together or not at all.

        On PostgreSQL the first attempt runs in autocommit, reading the instance without a lock (or
        starting from the state this process's own last transition of it left, :mod:`engine.transitions.remembered`);
        its last statement writes only if the instance is still at the revision read. A lost race, or
        an action that must write before the end, runs again in a transaction that locks the instance
        first, so contention queues on the row lock instead of retrying in a loop.
        """
        guard = self.idempotency.take()
        if guard is None:
            return await self._transition(workflow_instance_id, actor_id, action, None)
        return await self.idempotency.guarded(
            guard, lambda: self._transition(workflow_instance_id, actor_id, action, guard)
        )

    async def _transition(
        self,
        workflow_instance_id: str,
        actor_id: str | None,
        action: Callable[[Transition], Awaitable[T]],
        guard: Guard | None,
    ) -> tuple[T, WorkflowInstance]:
        autocommit = True
        began = time.perf_counter()
        remembered = self.remembered.take(workflow_instance_id) if self._remembers else None
        for _ in range(_RACE_RETRIES):
            try:
                async with self.db.transition_connection(autocommit=autocommit) as connection:
                    locked = remembered or await InstanceRepository(connection).lock_for_transition(
                        workflow_instance_id
                    )
                    if locked is None:
                        raise NotFoundError(f"no workflow instance {workflow_instance_id}")
                    instance = locked.instance
                    # On the held connection: waiting for a second beside it deadlocks a full pool
                    definition = await self.definition(
                        instance.definition_key, instance.definition_version, executor=connection
                    )
                    now = self.clock.now()
                    transition = Transition(
                        connection, instance, definition, self.registry, now, actor_id, self.settings,
                        steps=locked.steps, open_tasks=locked.open_tasks, remembered=remembered is not None,
                        calendars=self.calendars, members=self._members_known,
                    )  # fmt: skip
                    if self._needs_starter(definition):
                        await transition.load_starter()
                    result = await action(transition)
                    self._keep_key(guard, transition, (result, transition.finish()))
                    finished = await transition.write()  # last: the event lock is held only until commit
                await self._committed(transition, finished, autocommit=autocommit)
                self.observer.transition_committed("transition", time.perf_counter() - began, transition.events_written)
                return result, finished
            except (StepwiseError, TransactionNeeded, RememberedStateChanged, RememberedMembersChanged) as error:
                if isinstance(error, RememberedMembersChanged):  # again, reading them
                    self.members.forget(error.assumed)
                elif isinstance(error, TransactionNeeded):
                    autocommit = False
                elif remembered is None and isinstance(error, ConcurrentUpdateError):
                    if guard is not None and await self.idempotency.stored(guard):
                        raise  # a duplicate that lost to its first: answered from the key, not queued on the lock
                    log.debug("instance %s changed concurrently; retrying the transition", workflow_instance_id)
                    autocommit = False
                elif remembered is None:
                    raise
                remembered = None  # what it started from may be why it failed: again from a fresh read
        raise ConcurrentUpdateError(f"workflow instance {workflow_instance_id} is too busy; try again")

    async def send_signal(
        self, workflow_instance_id: str, node: str, payload: Any, actor_id: str | None
    ) -> WorkflowInstance:
        """Complete the task waiting at ``node`` with ``payload`` (stored under ``storeAs``) and move on.

        A signal to an unknown node is ``NotFoundError``; to a node that already completed,
        ``ConflictError``; to a finished instance, ``InvalidStateError``; none changes anything. A signal
        to a node no token has reached yet is held and applied when one arrives (``Transition.hold_signal``);
        a second one for that node meanwhile is ``SignalAlreadyHeldError``.
        """
        check_json_size(payload, "payload", self.max_json_bytes)

        async def signal(transition: Transition) -> None:
            # The node's own state decides first: a second signal to a completed node is a conflict
            # even when that node's completion also finished the instance.
            try:
                task = await transition.open_task_at(node)
            except InvalidStateError:  # no token there yet: held until one arrives, unless it is over
                if transition.instance.status.is_final:
                    raise
                transition.hold_signal(node, payload)
                return
            await transition.complete(task, payload)

        _, instance = await self.transition(workflow_instance_id, actor_id, signal)
        return instance

    async def cancel(
        self, workflow_instance_id: str, actor_id: str | None, reason: str | None = None
    ) -> WorkflowInstance:
        """Cancel every open task and the instance; a finished instance is ``InvalidStateError``."""
        if reason is not None and len(reason) > MAX_TEXT_LENGTH:
            problem = InputError("reason", f"at most {MAX_TEXT_LENGTH} characters", "TOO_LONG")
            raise ValidationError("reason is too long", [problem])

        async def cancel(transition: Transition) -> None:
            status = transition.instance.status
            if status.is_final:
                raise InvalidStateError(f"workflow instance {workflow_instance_id} is already {status.value}")
            await transition.cancel(reason)

        _, instance = await self.transition(workflow_instance_id, actor_id, cancel)
        return instance

    async def user(self, user_id: str) -> User | None:
        async with self.db.read() as session:
            return await DirectoryRepository(session).get_user(user_id)

    async def _committed(self, transition: Transition, finished: WorkflowInstance, *, autocommit: bool) -> None:
        """After ``transition`` committed: remember what it left (only an autocommit transition's every
        write went through it, :mod:`engine.transitions.remembered`), then, if it wrote events, tell the commit
        listeners: on PostgreSQL once a numbering round has numbered them (:mod:`engine.events.sequencer`),
        on SQLite (numbered in the transaction) now."""
        if autocommit and self._remembers:
            self.remembered.keep(transition.state_after(finished))
        self.task_homes.note(transition.created_task_ids, finished.id)
        if not transition.events_written:
            return
        if self.db.is_sqlite:
            await self._tell_commit_listeners()
        else:
            self.sequencer.committed()

    async def _tell_commit_listeners(self) -> None:
        for listener in self.commit_listeners:
            try:
                await listener()
            except Exception:  # a listener must never undo or fail a committed transition
                log.exception("commit listener failed")
