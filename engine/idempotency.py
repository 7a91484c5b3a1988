"""Idempotency keys: a mutation sent twice with one key changes the database once, and the repeat
gets what the first got (docs/api.md, "Exactly-once mutations").

The caller runs its work under :meth:`IdempotencyKeys.run`. The first write that work makes — a
transition, a start, a deploy — carries one row more: the user, the key, a fingerprint of the
request and what that write returned, inserted in the same transaction (on PostgreSQL in the
transition's last statement). Nothing is read first, so a request without a key pays nothing and
one with a key one INSERT.

A repeat runs as the first did until it fails — its task is completed already, or its INSERT meets
the first's row on the primary key (a concurrent repeat waits there for the first to commit, then
fails) — and then the stored row answers: what the first write returned, decoded, is what the
engine call returns, so the service builds the same response from it, and nothing of the repeat
was written. A stored fingerprint other than the repeat's is :class:`IdempotencyKeyReusedError`,
and nothing changes either. A request that fails stores nothing, so its key may be sent again.
Rows live for the configured time and the worker deletes them after (:meth:`purge_if_due`).

The engine takes the key where it writes (:meth:`take`, :meth:`answer`); other writers that should
be exactly-once (``requestApproval``) do the same in their own transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from engine.clock import Clock
from engine.errors import FieldError, IdempotencyKeyReusedError, StepwiseError, ValidationError
from engine.storage.database import Database
from engine.storage.idempotency import decode_result, delete_expired, key_row, stored_key

T = TypeVar("T")
MAX_KEY_LENGTH = 255
DEFAULT_TTL = timedelta(hours=24)
PURGE_EVERY = timedelta(minutes=1)
# What json.dumps(sort_keys=True, separators=(",", ":"), default=str) writes, without a new encoder per request.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class IdempotentRequest:
    """A request sent with an idempotency key: whose, which key, and what was asked."""

    user_id: str
    key: str
    operation: str
    fingerprint: str
    """A digest of the operation and its input: a repeat with any other input has another one."""

    @classmethod
    def of(cls, user_id: str, key: str, operation: str, input: Any, field: str = "idempotencyKey") -> IdempotentRequest:
        """``input`` as JSON (sorted keys; what is not JSON by ``str``); ``field`` names the key in errors."""
        if not key or len(key) > MAX_KEY_LENGTH:
            problem = FieldError(field, f"must be 1 to {MAX_KEY_LENGTH} characters", "INVALID_LENGTH")
            raise ValidationError(f"{field} must be 1 to {MAX_KEY_LENGTH} characters", [problem])
        canonical = _CANONICAL.encode([operation, input])
        return cls(user_id, key, operation, hashlib.sha256(canonical.encode()).hexdigest())


class Guard:
    """One request's key while its work runs; the first write takes it (:meth:`IdempotencyKeys.take`)."""

    def __init__(self, request: IdempotentRequest) -> None:
        self.request = request
        self.taken = False
        self.answered = False
        """The stored row was looked up already (after a failed write)."""


_current: ContextVar[Guard | None] = ContextVar("stepwise_idempotency_guard", default=None)


class IdempotencyKeys:
    """The engine's idempotency keys (see the module's docstring); one per :class:`~engine.Engine`."""

    def __init__(self, db: Database, clock: Clock, ttl: timedelta = DEFAULT_TTL) -> None:
        self.db = db
        self.clock = clock
        self.ttl = ttl
        self._last_purge = clock.now()  # a process's first minute purges nothing: keys live a day

    async def run(self, request: IdempotentRequest | None, work: Callable[[], Awaitable[T]]) -> T:
        """``work`` with ``request``'s key guarding its first write (without a key, just ``work``)."""
        if request is None:
            return await work()
        guard = Guard(request)
        reset = _current.set(guard)
        try:
            return await work()
        except StepwiseError as error:
            if not guard.answered:  # failed before it wrote: a key used with other input says so
                stored = await stored_key_of(self.db, request)
                if stored is not None and stored.fingerprint != request.fingerprint:
                    raise _reused(request) from error
            raise
        finally:
            _current.reset(reset)

    def take(self) -> Guard | None:
        """For a writer: the running request's guard, if none of its writes has taken it yet."""
        guard = _current.get()
        if guard is None or guard.taken:
            return None
        guard.taken = True
        return guard

    def row(self, guard: Guard, result: Any, now: datetime) -> dict[str, Any]:
        """The row to insert beside the write (in its transaction) that returns ``result``."""
        request = guard.request
        return key_row(request.user_id, request.key, request.operation, request.fingerprint, result, now,
                       now + self.ttl)  # fmt: skip

    async def answer(self, guard: Guard, error: BaseException) -> Any:
        """After the guarded write failed with ``error``: what the key's first write returned, if it
        was this request; a key used with other input is :class:`IdempotencyKeyReusedError`; without
        a stored row, ``error`` again."""
        guard.answered = True
        stored = await stored_key_of(self.db, guard.request)
        if stored is None:
            raise error
        if stored.fingerprint != guard.request.fingerprint:
            raise _reused(guard.request) from error
        return decode_result(stored.response)

    async def stored(self, guard: Guard) -> bool:
        """Whether ``guard``'s key is stored already (a write that lost a race may be its duplicate)."""
        return await stored_key_of(self.db, guard.request) is not None

    async def guarded(self, guard: Guard | None, write: Callable[[], Awaitable[T]]) -> T:
        """``write`` (which inserts ``guard``'s row), answered from the stored row when it fails."""
        if guard is None:
            return await write()
        try:
            return await write()
        except Exception as error:  # an engine error, or the key's primary key met in the INSERT
            answered: T = await self.answer(guard, error)
            return answered

    async def purge_if_due(self) -> int:
        """Delete expired keys, at most once every :data:`PURGE_EVERY` per process (the worker calls
        it each round); how many were deleted."""
        now = self.clock.now()
        if now - self._last_purge < PURGE_EVERY:
            return 0
        self._last_purge = now
        async with self.db.transaction() as session:
            return await delete_expired(session, now)


async def stored_key_of(db: Database, request: IdempotentRequest) -> Any:
    async with db.read() as session:
        return await stored_key(session, request.user_id, request.key)


def _reused(request: IdempotentRequest) -> IdempotencyKeyReusedError:
    return IdempotencyKeyReusedError(
        f"idempotency key {request.key!r} was used with other input; send a new key for a new request"
    )
