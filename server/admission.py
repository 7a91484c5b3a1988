"""Fair turns on the event loop: a client with one request in flight is not served behind a client with many.

One process's event loop runs every client's requests, first ready, first run. A client with many
requests in flight has as many tasks in the ready queue, and a cheap request of another client waits
behind all of them at each of its own ``await``\\ s: its handful of awaits cost it a few of the heavy
client's completions each (bench/fairness.py measured bob's ``{ me { id } }`` p99 at 6.8× alone
while alice ran inbox pages on 16 connections, with her operation slots at 4).

:class:`FairEventLoop` (asyncio's own selector loop) holds back the steps of a *busy* client's tasks
(one with two or more HTTP requests in flight) while a *single* client's request (one with exactly
one in flight) is being served: a single client's request then waits at most for the step that was
running when it arrived, not for the queue. Held steps run in their order as soon as no single
client's request is in flight, or after ``defer_seconds`` at the latest; after such a forced turn
nothing is held for as long again, so a stream of single clients takes at most half of the time from
busy ones. Tasks that belong to no request (the engine's listener, workers, timers) are never held.

A client is its bearer token's subject (else its ``Authorization`` header, or its address when
anonymous), read by :class:`FairRequests` before anything else of the request runs, authentication
included, so the turns need no database. Requests are counted over HTTP only; a WebSocket's operations are bounded by
server.rate_limits.

The loop overrides ``call_soon``, through which asyncio schedules every task step and wakeup (the C
tasks and futures call it too), and builds its held ``asyncio.Handle``\\ s itself: those are asyncio's
documented classes, but their constructor is not, so this bends the library: ``STEPWISE_FAIR_DEFER_SECONDS=0``
turns it off, and the server runs on uvicorn's default loop (uvloop when installed). Measured
(bench/fairness.py, docs/performance.md "Fairness under load", load 14–17): alice's CPU inside bob's
loaded request p90 17.5 → 0.5 ms, p99 52.5 → 6.1 ms; bob's loaded/alone p99 side by side
2.39× → 1.39×, 2.43× → 1.04×.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jwt
from starlette.types import ASGIApp, Receive, Scope, Send


@dataclass(frozen=True)
class _Request:
    client: str


_REQUEST: contextvars.ContextVar[_Request | None] = contextvars.ContextVar("stepwise_fair_request", default=None)


class FairTurns:
    """Which clients have requests in flight on ``loop``, and the steps held back meanwhile (module docstring)."""

    def __init__(self, loop: FairEventLoop, defer_seconds: float) -> None:
        self.loop = loop
        self.defer_seconds = defer_seconds
        self.in_flight: Counter[str] = Counter()
        self.singles = 0
        """Clients with exactly one request in flight."""
        self.held: deque[asyncio.Handle] = deque()
        self._turn_ends: asyncio.TimerHandle | None = None
        self._hold_none_until = 0.0

    def enter(self, client: str) -> None:
        count = self.in_flight[client] = self.in_flight[client] + 1
        self.singles += 1 if count == 1 else -1 if count == 2 else 0
        if count == 1 and self.singles == 1 and len(self.in_flight) > 1:
            self._hold_queued()  # the first single client: what busy ones have queued already waits too

    def leave(self, client: str) -> None:
        count = self.in_flight[client] - 1
        if count:
            self.in_flight[client] = count
        else:
            del self.in_flight[client]
        self.singles += 1 if count == 1 else -1 if count == 0 else 0
        if self.singles == 0 or count == 1:  # nobody single left, or a busy client's last request is single now
            self.release()

    def holds(self, request: _Request) -> bool:
        """Whether a step of ``request``'s is to wait: its client is busy and a single client is served."""
        if self.singles == 0 or self.in_flight.get(request.client, 0) < 2:
            return False
        if self._turn_ends is None:
            now = self.loop.time()
            if now < self._hold_none_until:
                return False
            # In a context of its own: in a busy client's (the current one) the end of the turn
            # would be held itself when it falls due as a single client arrives, and nothing ended the turn.
            self._turn_ends = self.loop.call_at(
                now + self.defer_seconds, self._turn_over, context=contextvars.Context()
            )
        return True

    def _hold_queued(self) -> None:
        # The loop is running its ready queue (a request's first step called this), popping as many
        # handles as it held when it began: the queue keeps its length. A busy client's task step is
        # cancelled there (the loop skips it) and a copy held. Only task steps: they are scheduled
        # once each, where a socket's reader is one handle queued again at each read, and cancelled
        # it would stop the socket's reading for good (a pooled connection opened during a request
        # carries that request's context in its reader).
        for handle in self.loop._ready:
            callback = getattr(handle, "_callback", None)
            if not isinstance(getattr(callback, "__self__", None), asyncio.Task):
                continue
            context: contextvars.Context | None = getattr(handle, "_context", None)
            request = context.get(_REQUEST) if context is not None else None
            if request is not None and not handle.cancelled() and self.holds(request):
                self.held.append(asyncio.Handle(callback, handle._args, self.loop, context))  # type: ignore[arg-type]
                handle.cancel()

    def _turn_over(self) -> None:
        """Single clients had ``defer_seconds``: busy ones get as long before anything is held again."""
        self._turn_ends = None
        self._hold_none_until = self.loop.time() + self.defer_seconds
        self.release()

    def release(self) -> None:
        if self._turn_ends is not None:
            self._turn_ends.cancel()
            self._turn_ends = None
        held, self.held = self.held, deque()
        for handle in held:
            if not handle.cancelled():
                self.loop.call_soon_unheld(handle._run, context=contextvars.Context())  # _run enters the handle's own


class FairEventLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop whose ``call_soon`` holds busy clients' steps back (module docstring)."""

    _ready: deque[asyncio.Handle]  # asyncio's ready queue (BaseEventLoop's, not documented)

    def __init__(self, defer_seconds: float) -> None:
        super().__init__()
        self.fair_turns = FairTurns(self, defer_seconds)

    def call_soon(  # type: ignore[override]
        self, callback: Callable[..., object], *args: Any, context: contextvars.Context | None = None
    ) -> asyncio.Handle:
        turns = self.fair_turns
        if turns.singles and context is not None:
            request = context.get(_REQUEST)
            if request is not None and turns.holds(request):
                if self.is_closed():
                    raise RuntimeError("Event loop is closed")
                handle = asyncio.Handle(callback, args, self, context)
                turns.held.append(handle)
                return handle
        return super().call_soon(callback, *args, context=context)

    def call_soon_unheld(
        self, callback: Callable[..., object], *args: Any, context: contextvars.Context | None = None
    ) -> asyncio.Handle:
        return super().call_soon(callback, *args, context=context)


def fair_loop_factory(defer_seconds: float) -> Callable[[], asyncio.AbstractEventLoop]:
    """What ``uvicorn.run(loop=…)`` takes: a factory of :class:`FairEventLoop`\\ s (a ``partial`` of the
    class, so that it pickles into ``--workers`` processes)."""
    return partial(FairEventLoop, defer_seconds)


class FairRequests:
    """ASGI middleware: marks each HTTP request with its client, counted in the loop's :class:`FairTurns`
    while it runs (nothing on another loop)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        turns: FairTurns | None = getattr(asyncio.get_running_loop(), "fair_turns", None)
        if turns is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = request_client(scope)
        token = _REQUEST.set(_Request(client))
        turns.enter(client)
        try:
            await self.app(scope, receive, send)
        finally:
            turns.leave(client)
            _REQUEST.reset(token)


def request_client(scope: Scope) -> str:
    """A request's client for the turns: its bearer token's subject, else its credentials, else its address.

    The subject is read without checking the signature (authentication does that later): a forged
    token can only make its sender count as the subject's request in the turns, which holds the
    subject's steps back no longer than anyone's. Each of one user's tokens is the same client."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return _token_subject(value) or f"credentials:{value.decode('latin-1')}"
    address = scope.get("client")
    return f"address:{address[0]}" if address else "address:unknown"


def _token_subject(header: bytes) -> str | None:
    scheme, _, token = header.partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    try:
        subject = jwt.decode(token, options={"verify_signature": False}).get("sub")
    except jwt.InvalidTokenError:  # not a JWT at all; a bad signature is authentication's to refuse
        return None
    return f"user:{subject}" if isinstance(subject, str) else None
