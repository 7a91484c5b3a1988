"""6. Data search scaling: an inbox page filtered by business data over HTTP, as tasks grow.

The same bulk-loaded tasks as ``bench.inbox_scaling`` (``bench/seed.py``: every instance's data holds an
``amount`` of 10 to 9,999, so ``amount > 1000`` keeps nine in ten), with ``amount`` searchable (its
partial expression index and extended statistics built before loading, as a deploy naming it builds
them). At each size ``stepwise serve`` answers, as the viewer (role ``approver``), sequential requests for

* ``tasks(filter: {role, data: [{path: "amount", op: GT, value: 1000}]}, first: 50)``, each row with its
  assignee and step (no ``totalCount``: the query as the issue names it),

and p50/p99 are printed per size. As in ``bench.inbox_scaling``, the targets are measured side by
side: a second database holds the smallest size behind a second server, and once the largest is
loaded the two answer in turns. Then ``EXPLAIN (ANALYZE, BUFFERS)`` of the page's SQL. Targets: p99
≤ 30 ms at the largest size; p99(largest) / p99(smallest) ≤ 1.5. The 1M size needs ``--huge``.
"""

from __future__ import annotations

import asyncio
import http.client
import tempfile
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import (
    Target,
    heading,
    line_buffered,
    percentile,
    print_environment,
    print_targets,
    scaling_arguments,
    sqlalchemy_url,
    temporary_database,
)
from bench.inbox_scaling import (
    SERVED_AS,
    bearer,
    captured_sql,
    label,
    load_to,
    print_latencies,
    serving,
    timed_requests,
)
from bench.seed import VIEWER, VIEWER_ROLE, Loaded
from engine.storage.data_search import DataCondition, DataOperator
from engine.storage.database import Database
from engine.storage.directory import DirectoryRepository
from engine.storage.inbox import TaskQuery, page_of_tasks, task_search
from engine.storage.postgres.search_indexes import ensure_search_indexes

NAME = "data_search"
P99_GOAL_MS = 30.0
RATIO_GOAL = 1.5
QUERY_NAME = "tasks(filter:{role, data:[amount>1000]}, first:50)"
QUERY = """
query Search($role: String!) {
  tasks(filter: {role: $role, data: [{path: "amount", op: GT, value: 1000}]}, first: 50) {
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id title status priority dueAt createdAt assignee { id name } step { id title } } }
  }
}"""
CONDITION = DataCondition("amount", DataOperator.GT, 1000)


async def searchable(dsn: str) -> None:
    """``amount``'s index and statistics, before any rows: the load's ANALYZE fills the statistics."""
    db = Database(sqlalchemy_url(dsn))
    try:
        await ensure_search_indexes(db, ["amount"])
    finally:
        await db.dispose()


def measure(servers: dict[int, Any], samples: int, warm_up: int = 30) -> dict[int, list[float]]:
    """``samples`` requests to each server (by size), taking turns one at a time, the first of each
    turn alternating; milliseconds by size."""
    headers, body = bearer(VIEWER), {"query": QUERY, "variables": {"role": VIEWER_ROLE}}
    sizes = sorted(servers)
    connections = {size: http.client.HTTPConnection("127.0.0.1", servers[size].port, timeout=30.0) for size in sizes}
    results: dict[int, list[float]] = {size: [] for size in sizes}
    try:
        for size in sizes:
            timed_requests(connections[size], [body] * warm_up, headers)
        for turn in range(samples):
            for size in sizes if turn % 2 == 0 else reversed(sizes):
                results[size] += timed_requests(connections[size], [body], headers)
    finally:
        for connection in connections.values():
            connection.close()
    return results


async def explain(dsn: str) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of exactly the page SQL the query sends (as the server reads it)."""
    db = Database(sqlalchemy_url(dsn))
    try:
        async with db.read() as session:
            viewer = await DirectoryRepository(session).get_user(VIEWER)
        assert viewer is not None
        search = task_search(viewer, TaskQuery(role=VIEWER_ROLE, data=(CONDITION,)), 50, None)

        async def page(session: Any) -> None:
            await page_of_tasks(session, search, summary=True)

        statements = await captured_sql(db, page)
    finally:
        await db.dispose()
    connection = await asyncpg.connect(dsn)
    try:
        for sql, parameters in statements:
            print("--- EXPLAIN (ANALYZE, BUFFERS) of the page SQL:")
            print("    " + " ".join(sql.split()))
            print(f"    parameters: {list(parameters)}")
            for row in await connection.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *parameters):
                print(f"    | {row[0]}")
    finally:
        await connection.close()


async def run(sizes: list[int], samples: int) -> list[Target]:
    heading("6. Data search scaling over HTTP (stepwise serve on 127.0.0.1, sequential requests)")
    await print_environment({"server": SERVED_AS})
    smallest, largest = min(sizes), max(sizes)
    small, big = label(smallest), label(largest)
    print(f"sizes: {', '.join(label(s) for s in sizes)} tasks (bulk-loaded with COPY); {samples} requests per size")
    print(f"query: {QUERY_NAME}; viewer {VIEWER!r}, role {VIEWER_ROLE!r}; 'amount' searchable")
    async with temporary_database(NAME) as dsn, temporary_database(f"{NAME}_reference") as reference_dsn:
        await searchable(dsn)
        await searchable(reference_dsn)
        with tempfile.TemporaryDirectory() as tmp:
            async with (
                serving(reference_dsn, Path(tmp), "reference") as (reference, reference_connection),
                serving(dsn, Path(tmp), "grown") as (server, connection),
            ):
                await load_to(reference_connection, smallest, 1, Loaded(), f"reference database ({small})")
                loaded = Loaded()
                print("as the tasks grow (one server, one size after the other):")
                for number, size in enumerate(sizes):
                    await load_to(connection, size, number + 1, loaded, "grown database")
                    print_latencies(f"size={label(size)}", QUERY_NAME, measure({size: server}, samples)[size])
                print(f"side by side ({small} on its own server and database, {big} on the grown one, in turns):")
                measured = measure({smallest: reference, largest: server}, samples)
                for size in (smallest, largest):
                    print_latencies(label(size), QUERY_NAME, measured[size])
            await explain(dsn)
    p99 = {size: percentile(latencies, 99) for size, latencies in measured.items()}
    ratio = p99[largest] / p99[smallest]
    print(f"{QUERY_NAME}: p99 {big} = {p99[largest]:.2f} ms; side by side p99({big}) / p99({small}) = {ratio:.2f}")
    targets = [
        Target(f"data_search_p99_{big}", p99[largest], P99_GOAL_MS, "ms", False),
        Target(f"data_search_p99_{big}_vs_{small}", ratio, RATIO_GOAL, "x", False),
    ]
    print_targets(targets)
    return targets


def main() -> None:
    line_buffered()
    sizes, samples = scaling_arguments("python -m bench.data_search", __doc__, "requests per size")
    asyncio.run(run(sizes, samples))


if __name__ == "__main__":
    main()
