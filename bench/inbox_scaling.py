"""3. Inbox query scaling: the inbox page and a step page over HTTP against the real server, as tasks grow.

Tasks are bulk-loaded (COPY, not the engine; see ``bench/seed.py``) to 10k and 100k — and 1M with
``--huge`` (loading 900k more rows into the indexed table takes about two minutes here, which would
push ``make bench`` past its ten-minute budget). At each size ``stepwise serve`` (uvicorn, the real
app, on 127.0.0.1) answers, as a user holding the role, sequential requests for

* ``tasks(filter: {role}, first: 50)`` — an inbox page with each row's assignee and step, and
* ``stepInstance(id) { metrics }`` — a step page's counters,

and p50/p99 of the latency measured by the client (the standard library's, on one kept-alive
connection: its own share is ~0.4 ms) are printed as the tasks grow.

The targets are measured side by side: a second database holds the smallest size (the same rows,
same seed) behind a second server from the start, and once the largest size is loaded the two
servers answer alternately, one request each in turn (who goes first alternating too), so both
sizes are timed in the same moments of this shared host, whose speed moves by up to 2× for seconds
at a time. Then ``EXPLAIN (ANALYZE, BUFFERS)`` of the inbox SQL. Targets: p99 ≤ 25 ms at the
largest size; p99(largest) / p99(smallest) ≤ 1.5.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event

from bench.common import (
    ServerProcess,
    Target,
    free_port,
    heading,
    line_buffered,
    percentile,
    print_environment,
    print_targets,
    scaling_arguments,
    sqlalchemy_url,
    temporary_database,
    venv_bin,
)
from bench.seed import (
    VIEWER,
    VIEWER_ROLE,
    Loaded,
    deploy_inbox_definition,
    load_directory,
    load_tasks,
    task_spread,
)
from engine.storage.database import Database
from engine.storage.directory import DirectoryRepository
from engine.storage.inbox import TaskQuery, search_tasks
from engine.storage.tasks import TaskRepository
from server.auth import issue_token
from server.settings import Settings

NAME = "inbox_scaling"
SECRET = "stepwise-bench-secret-key-0123456789abcdef"
P99_GOAL_MS = 25.0
RATIO_GOAL = 1.5
INBOX_QUERY = """
query Inbox($role: String!) {
  tasks(filter: {role: $role}, first: 50) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id title status displayStatus priority dueAt createdAt assignedRole
                          assignee { id name } step { id title } } }
  }
}"""
STEP_QUERY = """
query Step($id: ID!) { stepInstance(id: $id) { id title metrics { total active completed blocked } } }"""


def label(size: int) -> str:
    return f"{size // 1_000_000}M" if size >= 1_000_000 else f"{size // 1000}k"


def server_env(dsn: str, files: Path) -> dict[str, str]:
    return {
        "STEPWISE_DATABASE_URL": sqlalchemy_url(dsn),
        "STEPWISE_SECRET_KEY": SECRET,
        "STEPWISE_FILES_DIR": str(files),
    }


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(Settings(secret_key=SECRET), user)}"}


def timed_requests(
    connection: http.client.HTTPConnection, bodies: Sequence[dict[str, Any]], headers: dict[str, str]
) -> list[float]:
    """Send each body in turn (one at a time: latency, not load); milliseconds per request.

    The standard library's client on one kept-alive connection, blocking (nothing else runs here):
    its own time per request is ~0.4 ms, httpx's ~2.5 ms on this 2-core host (rounds 1-10 measured
    with httpx, so their figures include that much client time)."""
    latencies = []
    request_headers = {**headers, "Content-Type": "application/json"}
    for body in bodies:
        payload = json.dumps(body).encode()
        started = time.perf_counter()
        connection.request("POST", "/graphql", payload, request_headers)
        response = connection.getresponse()
        data = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200 or json.loads(data).get("errors"):
            raise RuntimeError(f"request failed ({response.status}): {data[:500]!r}")
        latencies.append(elapsed)
    return latencies


async def captured_sql(db: Database, work: Any) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements (and their parameters) ``work(session)`` sends, in order."""
    statements: list[tuple[str, tuple[Any, ...]]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        statements.append((statement, tuple(parameters or ())))

    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with db.read() as session:
            await work(session)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
    return statements


async def explain_inbox(dsn: str, step_id: str) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of exactly the SQL the inbox page and the step metrics send."""
    db = Database(sqlalchemy_url(dsn))
    try:
        async with db.read() as session:
            viewer = await DirectoryRepository(session).get_user(VIEWER)
        assert viewer is not None

        async def inbox(session: Any) -> None:
            await search_tasks(session, viewer, TaskQuery(role=VIEWER_ROLE), 50, None)

        async def metrics(session: Any) -> None:
            await TaskRepository(session).step_metrics([step_id])

        statements = [("inbox", s) for s in await captured_sql(db, inbox)]
        statements += [("step metrics", s) for s in await captured_sql(db, metrics)]
    finally:
        await db.dispose()
    connection = await asyncpg.connect(dsn)
    try:
        for what, (sql, parameters) in statements:
            print(f"--- EXPLAIN (ANALYZE, BUFFERS) of the {what} SQL:")
            print("    " + " ".join(sql.split()))
            print(f"    parameters: {list(parameters)}")
            for row in await connection.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *parameters):
                print(f"    | {row[0]}")
    finally:
        await connection.close()


INBOX = "tasks(filter:{role}, first:50)"
STEP = "stepInstance{metrics}"


def request_bodies(step_ids: list[str], samples: int, rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    return {
        INBOX: [{"query": INBOX_QUERY, "variables": {"role": VIEWER_ROLE}}] * samples,
        STEP: [{"query": STEP_QUERY, "variables": {"id": rng.choice(step_ids)}} for _ in range(samples)],
    }


def print_latencies(what: str, query: str, latencies: list[float]) -> None:
    print(
        f"{what:<4} {query:<32} n={len(latencies)} p50={percentile(latencies, 50):.2f} ms "
        f"p90={percentile(latencies, 90):.2f} ms p99={percentile(latencies, 99):.2f} ms "
        f"max={max(latencies):.2f} ms",
        flush=True,
    )


def measure_size(server: ServerProcess, size: int, step_ids: list[str], samples: int, rng: random.Random) -> None:
    """The tasks' growth: ``samples`` requests per query at ``size``, printed."""
    headers = bearer(VIEWER)
    bodies = request_bodies(step_ids, samples, rng)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30.0)
    try:
        timed_requests(connection, bodies[INBOX][:30] + bodies[STEP][:30], headers)  # warm-up: pool, caches, plans
        for query, queries in bodies.items():
            print_latencies(f"size={label(size)}", query, timed_requests(connection, queries, headers))
    finally:
        connection.close()


def measure_side_by_side(
    servers: dict[int, tuple[ServerProcess, list[str]]], samples: int, rng: random.Random
) -> dict[str, dict[int, list[float]]]:
    """``samples`` requests per query to each server (by size), taking turns one request at a time;
    the first of each turn alternates. Milliseconds by query and size."""
    headers = bearer(VIEWER)
    sizes = sorted(servers)
    bodies = {size: request_bodies(step_ids, samples, rng) for size, (_, step_ids) in servers.items()}
    connections = {
        size: http.client.HTTPConnection("127.0.0.1", server.port, timeout=30.0)
        for size, (server, _) in servers.items()
    }
    results: dict[str, dict[int, list[float]]] = {INBOX: {}, STEP: {}}
    try:
        for size in sizes:  # warm-up: pool, caches, plans
            timed_requests(connections[size], bodies[size][INBOX][:30] + bodies[size][STEP][:30], headers)
        for query, by_size in results.items():
            for size in sizes:
                by_size[size] = []
            for turn in range(samples):
                for size in sizes if turn % 2 == 0 else reversed(sizes):
                    by_size[size] += timed_requests(connections[size], [bodies[size][query][turn]], headers)
    finally:
        for connection in connections.values():
            connection.close()
    for query, by_size in results.items():
        for size in sizes:
            print_latencies(label(size), query, by_size[size])
    return results


SERVED_AS = "stepwise serve (1 uvicorn process per database, embedded worker off) + stepwise worker beside it"


@asynccontextmanager
async def serving(dsn: str, directory: Path, tag: str) -> AsyncIterator[tuple[ServerProcess, asyncpg.Connection]]:
    """``stepwise serve`` on ``dsn`` (the inbox definition and the directory loaded), and a
    connection for loading tasks; both closed at the end.

    The worker runs in a process of its own beside the server, as docs/performance.md recommends for
    production: embedded, its polls (the due tasks, escalations and webhook deliveries, once a second
    each) ran on the server's event loop, about 16 ms of the server's CPU a second with nothing due
    (2 ms without it; load ~9 on a 2-vCPU host), and a request that arrived during one waited for it
    whole — over 400 requests per query, a few of them, which is where a p99 sits. Beside the server
    the worker still polls the same database on the same host: its CPU is still spent, but the
    kernel shares the cores with it instead of the event loop waiting for it."""
    await deploy_inbox_definition(dsn)
    connection = await asyncpg.connect(dsn)
    port = free_port()
    env = server_env(dsn, directory / f"{tag}-files")
    command = [venv_bin("stepwise"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = ServerProcess(command, {**env, "STEPWISE_EMBEDDED_WORKER": "false"}, port, directory / f"{tag}.log")
    worker = ServerProcess([venv_bin("stepwise"), "worker"], env, 0, directory / f"{tag}-worker.log")
    try:
        await load_directory(connection)
        await server.wait_ready()
        yield server, connection
    finally:
        worker.stop()
        server.stop()
        await connection.close()


async def load_to(connection: asyncpg.Connection, size: int, seed: int, loaded: Loaded, what: str) -> None:
    started = time.perf_counter()
    await load_tasks(connection, size - loaded.tasks, seed=seed, loaded=loaded)
    print(
        f"{what}: loaded to {label(size)} in {time.perf_counter() - started:.1f} s: {await task_spread(connection)}",
        flush=True,
    )


async def run(sizes: Sequence[int], samples: int) -> list[Target]:
    heading("3. Inbox query scaling over HTTP (stepwise serve on 127.0.0.1, sequential requests)")
    await print_environment({"server": SERVED_AS})
    smallest, largest = min(sizes), max(sizes)
    small, big = label(smallest), label(largest)
    print(f"sizes: {', '.join(label(s) for s in sizes)} tasks (bulk-loaded with COPY); {samples} requests per query")
    print("       per size after 30 warm-up requests; the 1M size needs --huge (about 2 minutes more to load)")
    print(f"       targets side by side: a second database and server hold {small} (same rows) and answer in")
    print(f"       turns with the {big} one, {samples} requests per query each, after 30 warm-up requests each")
    print(f"viewer: {VIEWER!r}, role {VIEWER_ROLE!r}, not a supervisor")
    rng = random.Random(11)
    async with (
        temporary_database(NAME) as dsn,
        temporary_database(f"{NAME}_reference") as reference_dsn,
    ):
        with tempfile.TemporaryDirectory() as tmp:
            async with (
                serving(reference_dsn, Path(tmp), "reference") as (reference, reference_connection),
                serving(dsn, Path(tmp), "grown") as (server, connection),
            ):
                reference_loaded = Loaded()
                await load_to(reference_connection, smallest, 1, reference_loaded, f"reference database ({small})")
                loaded = Loaded()
                print("as the tasks grow (one server, one size after the other):")
                for number, size in enumerate(sizes):
                    await load_to(connection, size, number + 1, loaded, "grown database")
                    measure_size(server, size, loaded.viewer_step_ids, samples, rng)
                print(f"side by side ({small} on its own server and database, {big} on the grown one, in turns):")
                measured = measure_side_by_side(
                    {
                        smallest: (reference, reference_loaded.viewer_step_ids),
                        largest: (server, loaded.viewer_step_ids),
                    },
                    samples,
                    rng,
                )
            await explain_inbox(dsn, rng.choice(loaded.viewer_step_ids))
    targets = []
    for query, short in ((INBOX, "inbox_tasks"), (STEP, "step_metrics")):
        p99 = {size: percentile(latencies, 99) for size, latencies in measured[query].items()}
        ratio = p99[largest] / p99[smallest]
        print(
            f"{query}: p99 {big} = {p99[largest]:.2f} ms; side by side p99({big}) / p99({small}) "
            f"= {p99[largest]:.2f} / {p99[smallest]:.2f} = {ratio:.2f}"
        )
        targets.append(Target(f"{short}_p99_{big}", p99[largest], P99_GOAL_MS, "ms", False))
        targets.append(Target(f"{short}_p99_{big}_vs_{small}", ratio, RATIO_GOAL, "x", False))
    print_targets(targets)
    return targets


def main() -> None:
    line_buffered()
    sizes, samples = scaling_arguments("python -m bench.inbox_scaling", __doc__, "requests per query per size")
    asyncio.run(run(sizes, samples))


if __name__ == "__main__":
    main()
