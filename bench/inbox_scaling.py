"""3. Inbox query scaling: the inbox page and a step page over HTTP against the real server, as tasks grow.

Tasks are bulk-loaded (COPY, not the engine; see ``bench/seed.py``) to 10k and 100k — and 1M with
``--huge`` (loading 900k more rows into the indexed table takes about two minutes here, which would
push ``make bench`` past its ten-minute budget). At each size ``stepwise serve`` (uvicorn, the real
app, on 127.0.0.1) answers, as a user holding the role, sequential requests for

* ``tasks(filter: {role}, first: 50)`` — an inbox page with each row's assignee and step, and
* ``stepInstance(id) { metrics }`` — a step page's counters,

and p50/p99 of the latency measured by the client (the standard library's, on one kept-alive
connection: its own share is ~0.4 ms) are printed; then ``EXPLAIN (ANALYZE, BUFFERS)`` of the
inbox SQL. Targets: p99 ≤ 25 ms at the largest size; p99(largest) / p99(10k) ≤ 1.5.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import random
import tempfile
import time
from collections.abc import Sequence
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


def measure_size(
    server: ServerProcess, size: int, step_ids: list[str], samples: int, rng: random.Random
) -> dict[str, list[float]]:
    headers = bearer(VIEWER)
    inbox = [{"query": INBOX_QUERY, "variables": {"role": VIEWER_ROLE}}] * samples
    steps = [{"query": STEP_QUERY, "variables": {"id": rng.choice(step_ids)}} for _ in range(samples)]
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30.0)
    try:
        timed_requests(connection, inbox[:30] + steps[:30], headers)  # warm-up: pool, caches, plans
        results = {
            "tasks(filter:{role}, first:50)": timed_requests(connection, inbox, headers),
            "stepInstance{metrics}": timed_requests(connection, steps, headers),
        }
    finally:
        connection.close()
    for query, latencies in results.items():
        print(
            f"size={label(size):<4} {query:<32} n={len(latencies)} p50={percentile(latencies, 50):.2f} ms "
            f"p90={percentile(latencies, 90):.2f} ms p99={percentile(latencies, 99):.2f} ms "
            f"max={max(latencies):.2f} ms",
            flush=True,
        )
    return results


async def run(sizes: Sequence[int], samples: int) -> list[Target]:
    heading("3. Inbox query scaling over HTTP (stepwise serve on 127.0.0.1, sequential requests)")
    await print_environment({"server": "stepwise serve (1 uvicorn process, embedded worker on: the default)"})
    print(f"sizes: {', '.join(label(s) for s in sizes)} tasks (bulk-loaded with COPY); {samples} requests per query")
    print("       per size after 30 warm-up requests; the 1M size needs --huge (about 2 minutes more to load)")
    print(f"viewer: {VIEWER!r}, role {VIEWER_ROLE!r}, not a supervisor")
    rng = random.Random(11)
    p99: dict[str, dict[int, float]] = {}
    async with temporary_database(NAME) as dsn:
        await deploy_inbox_definition(dsn)
        connection = await asyncpg.connect(dsn)
        loaded = Loaded()
        with tempfile.TemporaryDirectory() as tmp:
            server = ServerProcess(
                [venv_bin("stepwise"), "serve", "--host", "127.0.0.1", "--port", str(port := free_port())],
                server_env(dsn, Path(tmp) / "files"),
                port,
                Path(tmp) / "server.log",
            )
            try:
                await load_directory(connection)
                await server.wait_ready()
                for number, size in enumerate(sizes):
                    started = time.perf_counter()
                    await load_tasks(connection, size - loaded.tasks, seed=number + 1, loaded=loaded)
                    print(
                        f"loaded to {label(size)} in {time.perf_counter() - started:.1f} s: "
                        f"{await task_spread(connection)}",
                        flush=True,
                    )
                    measured = measure_size(server, size, loaded.viewer_step_ids, samples, rng)
                    for query, latencies in measured.items():
                        p99.setdefault(query, {})[size] = percentile(latencies, 99)
                await explain_inbox(dsn, rng.choice(loaded.viewer_step_ids))
            finally:
                server.stop()
                await connection.close()
    largest, smallest = max(sizes), min(sizes)
    targets = []
    for query, short in (("tasks(filter:{role}, first:50)", "inbox_tasks"), ("stepInstance{metrics}", "step_metrics")):
        by_size = p99[query]
        ratio = by_size[largest] / by_size[smallest]
        big, small = label(largest), label(smallest)
        print(
            f"{query}: p99 {big} = {by_size[largest]:.2f} ms; p99({big}) / p99({small}) "
            f"= {by_size[largest]:.2f} / {by_size[smallest]:.2f} = {ratio:.2f}"
        )
        targets.append(Target(f"{short}_p99_{big}", by_size[largest], P99_GOAL_MS, "ms", False))
        targets.append(Target(f"{short}_p99_{big}_vs_{small}", ratio, RATIO_GOAL, "x", False))
    print_targets(targets)
    return targets


def main() -> None:
    line_buffered()
    parser = argparse.ArgumentParser(prog="python -m bench.inbox_scaling", description=__doc__)
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated task counts (ascending)")
    parser.add_argument("--huge", action="store_true", help="add the 1M size (about 2 minutes more to load)")
    parser.add_argument("--samples", type=int, default=400, help="requests per query per size")
    args = parser.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",")} | ({1_000_000} if args.huge else set()))
    asyncio.run(run(sizes, args.samples))


if __name__ == "__main__":
    main()
