"""Fairness under load: one user's load must not raise another's cheap query's p99 beyond 2×.

``stepwise serve`` (one process, PostgreSQL) with the demo loaded. First bob's ``{ me { id } }`` is
timed alone, one request at a time; then again while ``--clients`` loops hammer the server as alice
(the inbox page of 50 tasks, and every fifth request a ``startWorkflow``), each sending its next
request as soon as the last is answered, as fast as the server's limits allow: a ``429`` is obeyed,
its ``Retry-After`` waited out (a client that ignores it gets nothing more: its extra requests wait
for her slots, then are refused). The target is bob's loaded p99 within 2× of his unloaded p99.

Alice's loops run in a process of their own and bob is timed with the standard library's blocking
client in this one, so that bob's figure is the server's: a loop shared with sixteen httpx clients
delayed his requests by the clients' own work. Alice's load is switched on and off in turns of
``PHASE`` seconds, bob timed in both, so that his "alone" and "loaded" figures come from the same
minutes of a shared host whose own load drifts (alone measured once, first, was off by 3× either
way). ``--seconds`` is the time under load; as long again is spent alone. ``--quick`` proves it
runs (tiny counts).

    python -m bench.fairness [--seconds 20] [--clients 16] [--env NAME=VALUE ...] [--separate] [--quick]

``--env`` sets a server variable (``STEPWISE_OPERATIONS_PER_USER=0``: the server without its slots;
``STEPWISE_FAIR_DEFER_SECONDS=0``: without its fair turns, server.admission). ``--separate`` puts
alice on a second server process: bob's server serves nobody else, so his loaded p99 is the host's
contention alone, the floor for any scheduling inside one process.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import multiprocessing
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

import httpx

from bench.common import (
    ServerProcess,
    Target,
    free_port,
    heading,
    percentile,
    print_environment,
    print_summary,
    sqlalchemy_url,
    temporary_database,
    venv_bin,
)
from bench.inbox_scaling import bearer, server_env, timed_requests
from engine import Database, Engine, default_registry
from server.demo import load_demo

NAME = "fairness"


class EventLike(Protocol):
    def is_set(self) -> bool: ...


class SettableEvent(Protocol):
    def set(self) -> None: ...


ME = {"query": "{ me { id } }"}
INBOX = {"query": "{ tasks(first: 50) { totalCount edges { node { id title status assignee { id } } } } }"}
START = {"query": 'mutation { startWorkflow(input: {definitionKey: "expense_approval", input: {}}) { __typename } }'}


@asynccontextmanager
async def demo_server(tag: str, extra_env: dict[str, str] | None = None) -> AsyncIterator[ServerProcess]:
    """``stepwise serve`` on a fresh PostgreSQL database with the demo loaded; stopped by its pid."""
    async with demo_servers(tag, extra_env) as servers:
        yield servers[0]


@asynccontextmanager
async def demo_servers(
    tag: str, extra_env: dict[str, str] | None = None, processes: int = 1
) -> AsyncIterator[list[ServerProcess]]:
    """``processes`` × ``stepwise serve`` on one fresh PostgreSQL database with the demo loaded;
    stopped by their pids."""
    with tempfile.TemporaryDirectory() as scratch:
        async with temporary_database(tag) as dsn:
            db = Database(sqlalchemy_url(dsn))
            try:
                await load_demo(Engine(db, default_registry()))
            finally:
                await db.dispose()
            env = {**server_env(dsn, Path(scratch) / "files"), "STEPWISE_EMBEDDED_WORKER": "false",
                   **(extra_env or {})}  # fmt: skip
            servers: list[ServerProcess] = []
            try:
                for number in range(processes):
                    port = free_port()
                    servers.append(ServerProcess([venv_bin("stepwise"), "serve", "--port", str(port)], env, port,
                                                 Path(scratch) / f"serve-{number}.log"))  # fmt: skip
                for server in servers:
                    await server.wait_ready()
                yield servers
            finally:
                for server in servers:
                    server.stop()


async def timed(http: httpx.AsyncClient, body: dict[str, str], user: str, count: int) -> list[float]:
    """``count`` requests one after another; milliseconds each."""
    headers = bearer(user)
    times = []
    for _ in range(count):
        began = time.perf_counter()
        response = await http.post("/graphql", json=body, headers=headers)
        times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, response.text
    return times


def probe(port: int, user: str, count: int) -> list[float]:
    """``count`` of ``user``'s ``{ me { id } }`` one after another on one kept-alive connection (blocking:
    nothing else runs in this process meanwhile); milliseconds each."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        return timed_requests(connection, [ME] * count, bearer(user))
    finally:
        connection.close()


async def hammer(url: str, user: str, until: float, loading: EventLike, seen: Counter[str]) -> None:
    """One client's loop of inbox pages and starts while ``loading`` is set, until ``until``
    (monotonic), obeying ``429``."""
    sent = 0
    headers = bearer(user)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while time.monotonic() < until:
            if not loading.is_set():
                await asyncio.sleep(0.02)
                continue
            response = await http.post("/graphql", json=START if sent % 5 == 4 else INBOX, headers=headers)
            sent += 1
            seen[str(response.status_code)] += 1
            if response.status_code == 429:
                await asyncio.sleep(min(float(response.headers.get("retry-after", "1")), until - time.monotonic()))


async def _load(
    url: str, user: str, clients: int, seconds: float, loading: EventLike, started: SettableEvent
) -> dict[str, int]:
    started.set()
    seen: Counter[str] = Counter()
    until = time.monotonic() + seconds
    await asyncio.gather(*(hammer(url, user, until, loading, seen) for _ in range(clients)))
    return dict(seen)


def _in_process(load: Callable[..., Coroutine[object, object, dict[str, int]]], args: tuple[object, ...],
                answers: multiprocessing.Queue[dict[str, int]]) -> None:  # fmt: skip
    answers.put(asyncio.run(load(*args)))


class LoadProcess:
    """``load(*args)`` (a coroutine function answering counts) run in a process of its own."""

    def __init__(self, load: Callable[..., Coroutine[object, object, dict[str, int]]], *args: object) -> None:
        context = multiprocessing.get_context("spawn")
        self.answers: multiprocessing.Queue[dict[str, int]] = context.Queue()
        self.process = context.Process(target=_in_process, args=(load, args, self.answers), daemon=True)
        self.process.start()

    def result(self, timeout: float) -> dict[str, int]:
        answer = self.answers.get(timeout=timeout)
        self.process.join(timeout)
        return answer


SEPARATE = (
    "alice loads a second server process on the same database, bob's has nothing but him: what is left "
    "is the host's share (the cores, PostgreSQL, alice's own client), the floor no scheduling in one "
    "process can go under"
)
PHASE = 2.0
"""Seconds of each turn alone and each turn under load."""


async def run(
    seconds: float, clients: int, probes: int, env: dict[str, str] | None = None, separate: bool = False
) -> list[Target]:
    where = "another server process on the same database" if separate else "the server"
    heading(f"{NAME}: bob's {{ me {{ id }} }} p99 alone and while {clients} clients load {where} as alice")
    await print_environment()
    phase = min(PHASE, seconds / 2)
    turns = max(2, round(seconds / phase))
    async with demo_servers("fairness", env, processes=2 if separate else 1) as servers:
        server, loaded_server = servers[0], servers[-1]
        probe(server.port, "bob", 20)  # warm up
        loading, started = multiprocessing.get_context("spawn").Event(), multiprocessing.get_context("spawn").Event()
        load = LoadProcess(_load, loaded_server.base_url, "alice", clients, 5.0 + 2 * turns * phase, loading, started)
        if not started.wait(timeout=120):  # the child process starts (its imports: seconds on a loaded host)
            raise RuntimeError("alice's load process did not start")
        alone: list[float] = []
        loaded: list[float] = []
        for _ in range(turns):
            for times, on in ((alone, False), (loaded, True)):
                loading.set() if on else loading.clear()
                time.sleep(0.5)  # in-flight requests end, or the load builds up
                until = time.monotonic() + phase - 0.5
                while time.monotonic() < until and len(times) < probes * 5:
                    times += probe(server.port, "bob", 10)
        loading.clear()
        seen = load.result(timeout=2 * seconds + 60)
    alone_p99, loaded_p99 = percentile(alone, 99), percentile(loaded, 99)
    answers = ", ".join(f"{count} × {status}" for status, count in sorted(seen.items()))
    print(f"bob alone p99 {alone_p99:.1f} ms over {len(alone)} probes; under alice's load ({clients} clients, "
          f"{sum(seen.values())} requests: {answers}) p99 {loaded_p99:.1f} ms over {len(loaded)} probes; "
          f"{turns} turns of {phase:g} s each", flush=True)  # fmt: skip
    return [
        Target("fairness_me_p99_loaded_vs_alone", loaded_p99 / alone_p99 if alone_p99 else None, 2.0, "x", False),
        Target("fairness_me_p99_loaded", loaded_p99, 100.0, "ms", False),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fairness", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="a server variable")
    parser.add_argument("--quick", action="store_true", help="a tiny run that proves the benchmark works")
    parser.add_argument("--separate", action="store_true", help=SEPARATE)
    args = parser.parse_args()
    seconds, clients, probes = (3.0, 4, 40) if args.quick else (args.seconds, args.clients, 400)
    env = dict(item.split("=", 1) for item in args.env)
    print_summary(asyncio.run(run(seconds, clients, probes, env, args.separate)))


if __name__ == "__main__":
    main()
