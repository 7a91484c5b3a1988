"""Fairness under load (issue #24): one user's load must not raise another's cheap query's p99 beyond 2×.

``stepwise serve`` (one process, PostgreSQL) with the demo loaded. First bob's ``{ me { id } }`` is
timed alone, one request at a time; then again while ``--clients`` loops hammer the server as alice
(the inbox page of 50 tasks, and ``startWorkflow``, which her mutation rate limit bounds). The
target is bob's loaded p99 within 2× of his unloaded p99. ``--quick`` proves it runs (tiny counts).

    python -m bench.fairness [--seconds 20] [--clients 16] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

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
from bench.inbox_scaling import bearer, server_env
from engine import Database, Engine, default_registry
from server.demo import load_demo

NAME = "fairness"
ME = {"query": "{ me { id } }"}
INBOX = {"query": "{ tasks(first: 50) { totalCount edges { node { id title status assignee { id } } } } }"}
START = {"query": 'mutation { startWorkflow(input: {definitionKey: "expense_approval", input: {}}) { __typename } }'}


@asynccontextmanager
async def demo_server(tag: str, extra_env: dict[str, str] | None = None) -> AsyncIterator[ServerProcess]:
    """``stepwise serve`` on a fresh PostgreSQL database with the demo loaded; stopped by its pid."""
    with tempfile.TemporaryDirectory() as scratch:
        async with temporary_database(tag) as dsn:
            db = Database(sqlalchemy_url(dsn))
            try:
                await load_demo(Engine(db, default_registry()))
            finally:
                await db.dispose()
            port = free_port()
            env = {**server_env(dsn, Path(scratch) / "files"), "STEPWISE_EMBEDDED_WORKER": "false",
                   **(extra_env or {})}  # fmt: skip
            server = ServerProcess([venv_bin("stepwise"), "serve", "--port", str(port)], env, port,
                                   Path(scratch) / "serve.log")  # fmt: skip
            try:
                await server.wait_ready()
                yield server
            finally:
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


async def hammer(url: str, user: str, stop: asyncio.Event) -> int:
    """One client's loop of inbox pages and starts until ``stop``; how many requests it sent."""
    sent = 0
    headers = bearer(user)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while not stop.is_set():
            await http.post("/graphql", json=START if sent % 5 == 4 else INBOX, headers=headers)
            sent += 1
    return sent


async def run(seconds: float, clients: int, probes: int) -> list[Target]:
    heading(f"{NAME}: bob's {{ me {{ id }} }} p99 alone and while {clients} clients load the server as alice")
    await print_environment()
    async with demo_server("fairness") as server, httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        await timed(http, ME, "bob", 20)  # warm up
        alone = percentile(await timed(http, ME, "bob", probes), 99)
        stop = asyncio.Event()
        loads = [asyncio.create_task(hammer(server.base_url, "alice", stop)) for _ in range(clients)]
        await asyncio.sleep(min(2.0, seconds / 4))
        deadline = time.monotonic() + seconds
        loaded_times: list[float] = []
        while time.monotonic() < deadline and len(loaded_times) < probes * 5:
            loaded_times += await timed(http, ME, "bob", 10)
        stop.set()
        sent = sum(await asyncio.gather(*loads))
    loaded = percentile(loaded_times, 99)
    print(f"bob alone p99 {alone:.1f} ms; under alice's load ({sent} requests) p99 {loaded:.1f} ms", flush=True)
    return [
        Target("fairness_me_p99_loaded_vs_alone", loaded / alone if alone else None, 2.0, "x", False),
        Target("fairness_me_p99_loaded", loaded, 100.0, "ms", False),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fairness", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="a tiny run that proves the benchmark works")
    args = parser.parse_args()
    seconds, clients, probes = (3.0, 4, 40) if args.quick else (args.seconds, args.clients, 400)
    print_summary(asyncio.run(run(seconds, clients, probes)))


if __name__ == "__main__":
    main()
