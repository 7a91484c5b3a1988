"""Fairness between clients of one process: operation slots, rate limits and WebSocket connection limits.

**Operation slots** bound the HTTP GraphQL operations one user (one address, anonymous) has in
flight at once: every one shares the process's single event loop and database pool, so a client
that opens many connections would otherwise get as many shares of both. One over the limit waits up
to ``operation_wait_seconds`` for a slot of its own user (first come, first served), then is ``429``
with ``Retry-After``. Others are never queued behind it: each user has slots of their own.

**Rate limits** are token buckets per user (per client address for anonymous requests): one for
mutations, one for subscription starts. A bucket holds ``burst`` tokens and refills at ``per_minute``
a minute; an operation takes one. An empty bucket refuses the operation before any resolver runs,
with a GraphQL error whose ``extensions`` say ``code: RATE_LIMITED`` and ``retryAfter`` (seconds):
over HTTP the response is ``429`` with ``Retry-After``, over a WebSocket the subscription's error.
Queries have a bucket too, off by default: the slots already bound what a user's queries take from
others, and each query's cost is bounded by the operation limits.

**Connection limits** bound the WebSockets one user holds in this process and all of the
process's; one over is refused at ``connection_init`` (``4403`` on ``graphql-transport-ws``).

Limits are per process: behind N processes a user gets up to N times as much.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from graphql import GraphQLError
from starlette.websockets import WebSocket
from strawberry.types.execution import ExecutionResult

from server.settings import Settings

RATE_LIMITED = "RATE_LIMITED"
_MAX_BUCKETS = 10_000
"""Past this many remembered clients, buckets that have refilled (worth nothing) are forgotten."""


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """``burst`` tokens per key, refilled at ``per_minute`` a minute; ``take`` spends one."""

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(max(1, burst))
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float | None:
        """Spend a token of ``key``'s bucket: None if there was one, else the seconds until there is."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _MAX_BUCKETS:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return (1 - bucket.tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.updated) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]


class RateLimits:
    """The process's buckets and operation slots; :meth:`admit` enforces them on operations (the slots
    there only for operations over a WebSocket: server.graphql_app takes an HTTP request's)."""

    def __init__(self, settings: Settings) -> None:
        def buckets(per_minute: float, burst: int) -> TokenBuckets | None:
            return TokenBuckets(per_minute, burst) if per_minute > 0 else None

        self.by_type = {
            "mutation": buckets(settings.mutations_per_minute, settings.mutation_burst),
            "subscription": buckets(settings.subscription_starts_per_minute, settings.subscription_start_burst),
            "query": buckets(settings.queries_per_minute, settings.query_burst),
        }
        self.slots = OperationSlots(settings.operations_per_user, settings.operation_wait_seconds)

    @property
    def enabled(self) -> bool:
        return any(self.by_type.values()) or self.slots.per_user > 0

    def admit(self, context: object, kind: str) -> str | None:
        """An operation of ``kind`` about to execute (schema.pipeline calls it): refused with a
        ``RATE_LIMITED`` GraphQLError over its bucket or, over a WebSocket, without a free slot; else the
        slot's key it took, for :meth:`release` once it has run (None: it took none)."""
        buckets = self.by_type.get(kind)
        if buckets is not None:
            wait = buckets.take(client_key(context))
            if wait is not None:
                seconds = max(1, math.ceil(wait))
                raise GraphQLError(
                    f"too many {kind}s: try again in {seconds} s",
                    extensions={"code": RATE_LIMITED, "retryAfter": seconds},
                )
        if kind == "subscription" or not isinstance(getattr(context, "request", None), WebSocket):
            return None  # an HTTP request took its slot before its body (server.graphql_app); a subscription lives on
        # A query or mutation sent over a WebSocket takes a slot as over HTTP, or a client would get
        # round the limit that way; it does not wait for one (the connection is not held up).
        key, slots = client_key(context), self.slots
        if not slots.try_enter(key):
            raise GraphQLError(
                f"at most {slots.per_user} operations of one user at once: try again in 1 s",
                extensions={"code": RATE_LIMITED, "retryAfter": 1},
            )
        return key

    def release(self, key: str) -> None:
        """Give back the slot :meth:`admit` took."""
        self.slots.leave(key)


def client_key(context: object) -> str:
    viewer = getattr(context, "viewer", None)
    if viewer is not None:
        return f"user:{viewer.id}"
    client = getattr(getattr(context, "request", None), "client", None)
    return f"address:{client.host}" if client is not None else "address:unknown"


def retry_after(result: ExecutionResult) -> int | None:
    """The ``retryAfter`` of a rate-limited result, else None."""
    for error in result.errors or []:
        extensions = error.extensions or {}
        if extensions.get("code") == RATE_LIMITED:
            return int(extensions.get("retryAfter", 1))
    return None


class _Slots:
    def __init__(self) -> None:
        self.held = 0
        self.line: deque[asyncio.Future[None]] = deque()  # first come, first served


class OperationSlots:
    """At most ``per_user`` operations of one key at once (module docstring); ``0``: no limit."""

    def __init__(self, per_user: int, wait_seconds: float) -> None:
        self.per_user = per_user
        self.wait_seconds = max(0.0, wait_seconds)
        self._by_key: dict[str, _Slots] = {}

    def available(self, key: str) -> bool:
        """Whether :meth:`enter` would take a slot of ``key``'s at once, without waiting."""
        slots = self._by_key.get(key)
        return self.per_user <= 0 or slots is None or (slots.held < self.per_user and not slots.line)

    def try_enter(self, key: str) -> bool:
        """Take one of ``key``'s slots if one is free now; False otherwise (nothing waits)."""
        if self.per_user <= 0:
            return True
        if not self.available(key):
            return False
        self._by_key.setdefault(key, _Slots()).held += 1
        return True

    async def enter(self, key: str) -> bool:
        """Take one of ``key``'s slots, waiting up to ``wait_seconds``; False if none came free."""
        if self.try_enter(key):
            return True
        if self.wait_seconds <= 0:
            return False
        slots = self._by_key[key]
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        slots.line.append(turn)
        try:
            async with asyncio.timeout(self.wait_seconds):
                await turn
        except BaseException as exc:  # timed out, or the request was cancelled while it waited
            if turn.done() and not turn.cancelled():
                self.leave(key)  # handed a slot just as it gave up: the next in line has it
            elif turn in slots.line:
                slots.line.remove(turn)
            if isinstance(exc, TimeoutError):
                return False
            raise
        return True

    def leave(self, key: str) -> None:
        """Give back a slot :meth:`enter` or :meth:`try_enter` took: to the next in line, if any."""
        if self.per_user <= 0:
            return
        slots = self._by_key[key]
        while slots.line:
            turn = slots.line.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot passes on: as many are held as before
                return
        slots.held -= 1
        if slots.held == 0:  # nobody holds or waits: a user's slots cost nothing between their requests
            del self._by_key[key]

    def held(self, key: str) -> int:
        slots = self._by_key.get(key)
        return 0 if slots is None else slots.held

    def waiting(self, key: str) -> int:
        slots = self._by_key.get(key)
        return 0 if slots is None else sum(not turn.done() for turn in slots.line)


class ConnectionLimits:
    """Live WebSocket connections: at most ``per_user`` for one user and ``total`` in the process."""

    def __init__(self, per_user: int, total: int) -> None:
        self.per_user = per_user
        self.total = total
        self._by_user: Counter[str] = Counter()

    def admit(self, user_id: str) -> str | None:
        """Count a new connection of ``user_id``; None when admitted, else why not."""
        if self.total > 0 and self._by_user.total() >= self.total:
            return f"this server holds its maximum of {self.total} connections; try again later"
        if self.per_user > 0 and self._by_user[user_id] >= self.per_user:
            return f"at most {self.per_user} connections per user; close one before opening another"
        self._by_user[user_id] += 1
        return None

    def release(self, user_id: str) -> None:
        self._by_user[user_id] -= 1
        if self._by_user[user_id] <= 0:
            del self._by_user[user_id]

    def of(self, user_id: str) -> int:
        return self._by_user[user_id]
