"""Fair turns on the event loop (server.admission): a client with one request in flight is not served
behind the steps of a client with many."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import jwt
import pytest
import uvicorn
from click.testing import CliRunner
from starlette.types import Receive, Scope, Send

from server.admission import FairEventLoop, FairRequests, request_client
from server.cli import main
from server.settings import SettingError, Settings

Steps = list[str]


def request_app(log: Steps, steps: dict[str, int]) -> Callable[..., Awaitable[None]]:
    """An ASGI app whose request does its client's number of steps, each logged, an ``await`` apart."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        who = dict(scope["headers"])[b"authorization"].decode()
        for _ in range(steps[who]):
            log.append(who)
            await asyncio.sleep(0)

    return app


async def request(app: Callable[..., Awaitable[None]], who: str) -> None:
    scope = {"type": "http", "headers": [(b"authorization", who.encode())], "client": ("127.0.0.1", 1)}
    await app(scope, None, None)


def run(loop: asyncio.AbstractEventLoop, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def bobs_interruptions(loop: asyncio.AbstractEventLoop) -> tuple[int, Steps]:
    """Alice's steps run between bob's first and last, bob arriving while four of hers are under way."""
    log: Steps = []
    app = FairRequests(request_app(log, {"alice": 30, "bob": 5}))

    async def main() -> None:
        alice = [asyncio.ensure_future(request(app, "alice")) for _ in range(4)]
        for _ in range(3):
            await asyncio.sleep(0)
        await request(app, "bob")
        await asyncio.gather(*alice)

    run(loop, main)
    bob = [i for i, who in enumerate(log) if who == "bob"]
    return log[bob[0] : bob[-1]].count("alice"), log


def test_a_single_clients_request_runs_without_a_busy_clients_steps_between_its_own() -> None:
    interruptions, log = bobs_interruptions(FairEventLoop(defer_seconds=1.0))
    assert interruptions == 0
    assert log.count("alice") == 4 * 30  # held, not dropped: every step of hers ran after bob's


def test_on_asyncios_own_loop_each_of_bobs_awaits_waits_for_every_request_of_alices() -> None:
    interruptions, _ = bobs_interruptions(asyncio.SelectorEventLoop())
    assert interruptions >= 4 * 4  # what the fair loop takes away: four of hers at each of his four awaits


def test_busy_clients_are_held_at_most_the_defer_time_then_run_as_long() -> None:
    """A single client's request that takes long (here: waiting 0.3 s) holds busy ones 0.1 s, then
    they run; nothing is held during the next 0.1 s."""
    loop = FairEventLoop(defer_seconds=0.1)
    alice_steps: list[float] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if dict(scope["headers"])[b"authorization"] == b"bob":
            await asyncio.sleep(0.3)
            return
        until = loop.time() + 0.5
        while loop.time() < until:
            alice_steps.append(loop.time())
            await asyncio.sleep(0.002)

    fair = FairRequests(app)

    async def main() -> None:
        alice = [asyncio.ensure_future(request(fair, "alice")) for _ in range(2)]
        await asyncio.sleep(0.01)
        began = loop.time()
        await request(fair, "bob")
        await asyncio.gather(*alice)
        during = [t - began for t in alice_steps if began <= t < began + 0.3]
        assert during, "alice never ran while bob's request lasted: held past the defer time"
        assert min(during) >= 0.09  # held for the first 0.1 s
        assert max(during) > 0.15  # then running

    run(loop, main)


def test_tasks_of_no_request_and_single_clients_are_never_held() -> None:
    loop = FairEventLoop(defer_seconds=1.0)
    log: Steps = []
    app = FairRequests(request_app(log, {"alice": 3, "bob": 3}))

    async def background() -> None:
        for _ in range(3):
            log.append("listener")
            await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(request(app, "alice"), request(app, "bob"), background())

    run(loop, main)
    assert log == ["alice", "bob", "listener"] * 3  # two single clients and a listener: first come, first run


def test_a_held_task_can_be_cancelled() -> None:
    loop = FairEventLoop(defer_seconds=1.0)
    log: Steps = []
    app = FairRequests(request_app(log, {"alice": 1_000, "bob": 50}))

    async def main() -> None:
        alice = [asyncio.ensure_future(request(app, "alice")) for _ in range(2)]
        await asyncio.sleep(0)
        bob = asyncio.ensure_future(request(app, "bob"))
        await asyncio.sleep(0)
        assert loop.fair_turns.held, "alice's steps are held while bob's request runs"
        for task in alice:
            task.cancel()
        await bob
        results = await asyncio.gather(*alice, return_exceptions=True)
        assert all(isinstance(result, asyncio.CancelledError) for result in results)
        assert loop.fair_turns.in_flight == {}

    run(loop, main)


def test_on_another_loop_the_middleware_only_passes_requests_on() -> None:
    log: Steps = []
    app = FairRequests(request_app(log, {"alice": 2}))
    run(asyncio.SelectorEventLoop(), lambda: request(app, "alice"))
    assert log == ["alice", "alice"]


@pytest.mark.parametrize(
    ("headers", "client", "expected"),
    [
        ([(b"authorization", b"Bearer x")], ("10.0.0.1", 5), "credentials:Bearer x"),
        # The subject of any JWT, its signature not checked (authentication does that): one user's tokens.
        ([(b"authorization", b"Bearer " + jwt.encode({"sub": "alice"}, "k" * 32).encode())], None, "user:alice"),
        ([(b"authorization", b"Bearer " + jwt.encode({"sub": 7}, "k" * 32).encode())], None, None),
        ([], ("10.0.0.1", 5), "address:10.0.0.1"),
        ([], None, "address:unknown"),
    ],
)
def test_a_client_is_its_credentials_else_its_address(
    headers: list[tuple[bytes, bytes]], client: tuple[str, int] | None, expected: str | None
) -> None:
    found = request_client({"type": "http", "headers": headers, "client": client})
    assert found == expected if expected is not None else found.startswith("credentials:Bearer ey")


@pytest.mark.parametrize(("value", "fair"), [(None, True), ("0", False)])
def test_serve_runs_on_the_fair_loop_unless_it_is_turned_off(
    monkeypatch: pytest.MonkeyPatch, value: str | None, fair: bool
) -> None:
    given: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: given.update(kwargs))
    env = {"STEPWISE_FAIR_DEFER_SECONDS": value} if value is not None else {}
    monkeypatch.delenv("STEPWISE_FAIR_DEFER_SECONDS", raising=False)
    result = CliRunner().invoke(main, ["serve", "--port", "1"], env=env)
    assert result.exit_code == 0, result.output
    if fair:
        loop = given["loop"]()
        try:
            assert isinstance(loop, FairEventLoop) and loop.fair_turns.defer_seconds == 0.05
        finally:
            loop.close()
    else:
        assert given["loop"] == "auto"


@pytest.mark.parametrize("value", ["-0.1", "1.5"])
def test_the_defer_time_is_0_to_1_second(value: str) -> None:
    with pytest.raises(SettingError, match="STEPWISE_FAIR_DEFER_SECONDS"):
        Settings.from_env({"STEPWISE_FAIR_DEFER_SECONDS": value})


def test_a_single_client_waiting_for_a_busy_ones_step_waits_at_most_the_defer_time() -> None:
    """Bob's request needs what alice's next step does (a connection she gives back, say): her held
    step runs when the turn ends, and bob's request goes on."""
    loop = FairEventLoop(defer_seconds=0.05)
    given_back = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if dict(scope["headers"])[b"authorization"] == b"bob":
            await given_back.wait()
            return
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # held: bob arrived meanwhile
        given_back.set()

    fair = FairRequests(app)

    async def main() -> None:
        alice = [asyncio.ensure_future(request(fair, "alice")) for _ in range(2)]
        await asyncio.sleep(0)
        began = loop.time()
        await asyncio.wait_for(request(fair, "bob"), timeout=2)
        assert 0.04 <= loop.time() - began < 1
        await asyncio.gather(*alice)

    run(loop, main)


def test_every_request_ends_whatever_the_interleaving() -> None:
    """Busy and single clients arriving at random, each request a random number of steps, some
    waiting on timers: each one ends, none is left counted, nothing stays held."""
    loop = FairEventLoop(defer_seconds=0.005)
    chance = random.Random(7)
    done: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        who = dict(scope["headers"])[b"authorization"].decode()
        for _ in range(chance.randrange(1, 40)):
            await asyncio.sleep(chance.choice((0, 0, 0, 0.001)))
        done.append(who)

    fair = FairRequests(app)

    async def client(who: str, requests: int, at_once: int) -> None:
        for _ in range(requests):
            await asyncio.gather(*(request(fair, who) for _ in range(at_once)))
            await asyncio.sleep(chance.choice((0, 0.001)))

    async def main() -> None:
        clients = [client("alice", 30, 6), client("carol", 30, 3), client("bob", 60, 1), client("dan", 60, 1)]
        await asyncio.wait_for(asyncio.gather(*clients), timeout=30)
        assert len(done) == 30 * 6 + 30 * 3 + 60 + 60
        assert loop.fair_turns.in_flight == {} and not loop.fair_turns.held

    run(loop, main)


def test_a_socket_first_read_during_a_busy_clients_request_is_still_read_after_a_single_client_came() -> None:
    """A pooled connection opened during one of alice's requests reads in her request's context; its
    reader, queued as bob arrives, is not a step to hold (holding it once stopped its reading for good)."""
    loop = FairEventLoop(defer_seconds=1.0)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    reads: list[bytes] = []
    registered = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if not registered.is_set():
            loop.add_reader(ours, lambda: reads.append(ours.recv(100)))
            registered.set()
        for _ in range(200):
            await asyncio.sleep(0)

    fair = FairRequests(app)

    async def main() -> None:
        alice = [asyncio.ensure_future(request(fair, "alice")) for _ in range(2)]
        await registered.wait()
        theirs.send(b"first")
        await asyncio.ensure_future(request(fair, "bob"))  # its first step runs with the reader queued behind it
        theirs.send(b"second")
        async with asyncio.timeout(2):
            while len(reads) < 2:
                await asyncio.sleep(0.01)
        assert b"".join(reads) == b"firstsecond"
        await asyncio.gather(*alice)
        loop.remove_reader(ours)

    try:
        run(loop, main)
    finally:
        ours.close()
        theirs.close()
