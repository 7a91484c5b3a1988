"""4. GraphQL overhead: one 50-task inbox page from /graphql and from a bare Starlette route, same server.

The bench builds its own app (``create_bench_app``: the real ``create_app`` plus routes that exist only
here, never in ``server/app.py``):

* ``POST /graphql`` — the shipped endpoint;
* ``GET /bare/tasks?role=…`` — the same authentication, the same repository calls (the page, and the
  count beside it, as ``task_connection`` does) and byte-identical JSON, with no GraphQL in between;
* ``POST /graphql-uncached`` — a lever, measured: the shipped schema without Strawberry's ``ParserCache``
  and ``ValidationCache`` (what shipped before them), so the run shows what the caches are worth.

The bytes of the two target responses are compared before any load. Load: ``wrk`` (Debian's
package) with 32 connections for a fixed time, else an httpx client with 32 concurrent connections.
Target: /graphql requests/s ≥ 0.2× the bare route's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.common import (
    ServerProcess,
    Target,
    free_port,
    heading,
    line_buffered,
    percentile,
    print_environment,
    print_targets,
    temporary_database,
)
from bench.inbox_scaling import bearer, server_env
from bench.seed import (
    VIEWER,
    VIEWER_ROLE,
    seed_inbox,
    task_spread,
)
from engine.errors import AuthenticationError
from engine.state import Task
from engine.storage.inbox import TaskOrderField, TaskQuery, count_beside, encode_cursor, page_of_tasks, task_search
from engine.transitions.engine import Engine
from schema.inbox import running
from schema.reads import SharedReads
from schema.schema import build_schema
from server.app import create_app
from server.auth import authenticate
from server.graphql_app import StepwiseGraphQL
from server.settings import Settings

NAME = "graphql_overhead"
GOAL = 0.2
CONNECTIONS = 32
TASKS = 10_000
PAGE_QUERY = (
    "query Inbox($role: String!) { tasks(filter: {role: $role}, first: 50) { totalCount "
    "pageInfo { hasNextPage endCursor } "
    "edges { cursor node { id title status priority createdAt dueAt assignedRole } } } }"
)


# -- the bench-only app ------------------------------------------------------------------------------


def _node(task: Task) -> dict[str, Any]:
    """A task as the GraphQL page selects it: same keys, same order, same scalar serialization."""
    return {
        "id": task.id,
        "title": task.title,
        "status": task.status.name,
        "priority": task.priority.name,
        "createdAt": task.created_at.isoformat(),
        "dueAt": task.due_at.isoformat() if task.due_at else None,
        "assignedRole": task.assigned_role,
    }


def create_bench_app() -> Starlette:
    """The real app plus the bare route and the uncached-GraphQL lever (uvicorn ``--factory``)."""
    settings = Settings.from_env()
    app = create_app(settings)
    engine: Engine = app.state.engine

    async def bare_tasks(request: Request) -> Response:
        reads = SharedReads(engine.db)  # one read session for the request, as /graphql has
        try:
            async with reads.session() as session:
                try:
                    viewer = await authenticate(engine, settings, request.headers.get("authorization"), session)
                except AuthenticationError as exc:
                    return Response(json.dumps({"error": exc.message}), status_code=401,
                                    media_type="application/json")  # fmt: skip
            if viewer is None:
                return Response('{"error":"authentication required"}', status_code=401,
                                media_type="application/json")  # fmt: skip
            search = task_search(viewer, TaskQuery(role=request.query_params.get("role")), 50, None)
            async with running(count_beside(engine.db, search, reads.session)) as counting:  # as TaskConnection.search
                async with reads.session() as session:
                    # As TaskConnection.search reads it for PAGE_QUERY, which selects no task values.
                    tasks, has_next = await page_of_tasks(session, search, summary=True)
                assert counting is not None
                total = await counting
        finally:
            await reads.close()
        edges = [{"cursor": encode_cursor(t, TaskOrderField.CREATED_AT), "node": _node(t)} for t in tasks]
        page_info = {"hasNextPage": has_next, "endCursor": edges[-1]["cursor"] if edges else None}
        body = {"data": {"tasks": {"totalCount": total, "pageInfo": page_info, "edges": edges}}}
        return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")

    uncached_schema = build_schema(mask_errors=settings.mask_errors, cache_documents=False)
    uncached = StepwiseGraphQL(uncached_schema, app.state.services, settings)
    app.router.routes[0:0] = [
        Route("/bare/tasks", bare_tasks, methods=["GET"]),
        Route("/graphql-uncached", uncached, methods=["POST"]),
    ]
    return app


# -- load --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    route: str
    client: str
    seconds: float
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk_ms(text: str, percent: str) -> float:
    found = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    return float(found.group(1)) * _UNITS[found.group(2)] if found else float("nan")


def run_wrk(url: str, headers: dict[str, str], body: str | None, seconds: int, route: str) -> Load:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'wrk.method = "{"POST" if body else "GET"}"\n')
        if body:
            script.write(f"wrk.body = [==[{body}]==]\n")
            script.write('wrk.headers["Content-Type"] = "application/json"\n')
        for key, value in headers.items():
            script.write(f'wrk.headers["{key}"] = "{value}"\n')
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "--latency", "-s", script.name]
    result = subprocess.run(command + [url], capture_output=True, text=True, timeout=seconds + 60)
    Path(script.name).unlink()
    out = result.stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(s|m)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if result.returncode != 0 or not done or not rps:
        raise RuntimeError(f"wrk failed ({result.returncode}): {out}\n{result.stderr}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    errors += sum(int(g) for g in socket_errors.groups()) if socket_errors else 0
    elapsed = float(done.group(2)) * (60 if done.group(3) == "m" else 1)
    return Load(
        route, "wrk", elapsed, int(done.group(1)), errors, float(rps.group(1)), _wrk_ms(out, "50"), _wrk_ms(out, "99")
    )


async def run_httpx(url: str, headers: dict[str, str], body: str | None, seconds: int, route: str) -> Load:
    """The fallback load client: 32 concurrent keep-alive connections for ``seconds``."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    send_headers = {**headers, "Content-Type": "application/json"}
    async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                if body is None:
                    response = await client.get(url, headers=send_headers)
                else:
                    response = await client.post(url, content=body, headers=send_headers)
                latencies.append((time.perf_counter() - started) * 1000)
                errors += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - started
    count = len(latencies)
    return Load(
        route, "httpx", elapsed, count, errors, count / elapsed, percentile(latencies, 50), percentile(latencies, 99)
    )


async def load(url: str, headers: dict[str, str], body: str | None, seconds: int, route: str) -> Load:
    if shutil.which("wrk"):
        result = await asyncio.to_thread(run_wrk, url, headers, body, seconds, route)
    else:
        result = await run_httpx(url, headers, body, seconds, route)
    print(
        f"{route:<16} client={result.client} connections={CONNECTIONS} seconds={result.seconds:.1f} "
        f"requests={result.requests} errors={result.errors} requests/s={result.rps:.1f} "
        f"p50={result.p50_ms:.1f} ms p99={result.p99_ms:.1f} ms",
        flush=True,
    )
    return result


# -- the benchmark -----------------------------------------------------------------------------------


async def run(seconds: int, lever_seconds: int) -> list[Target]:
    heading("4. GraphQL overhead: the same 50-task page from /graphql and from a bare Starlette route")
    client = "wrk (Debian package)" if shutil.which("wrk") else "httpx (wrk not found)"
    await print_environment({"server": "uvicorn, 1 process, bench app = create_app() + bench-only routes"})
    print(f"sizes: {TASKS} bulk-loaded tasks; page: tasks(filter: {{role: {VIEWER_ROLE!r}}}, first: 50) as {VIEWER!r}")
    print(f"load: {client}, {CONNECTIONS} connections, {seconds} s per target route, {lever_seconds} s per lever")
    targets: list[Target] = []
    async with temporary_database(NAME) as dsn:
        connection = await asyncpg.connect(dsn)
        try:
            await seed_inbox(dsn, connection, TASKS)
            print(f"loaded: {await task_spread(connection)}")
        finally:
            await connection.close()
        with tempfile.TemporaryDirectory() as tmp:
            port = free_port()
            command = [sys.executable, "-m", "uvicorn", "bench.graphql_overhead:create_bench_app", "--factory"]
            command += ["--host", "127.0.0.1", "--port", str(port)]
            # One user's 32 connections are this bench's load generator, not a user to be kept fair to
            # others: with the per-user slots the GraphQL figures would time the queue for them.
            env = {**server_env(dsn, Path(tmp) / "files"), "STEPWISE_OPERATIONS_PER_USER": "0"}
            server = ServerProcess(command, env, port, Path(tmp) / "server.log")
            try:
                await server.wait_ready()
                headers = bearer(VIEWER)
                graphql_body = json.dumps({"query": PAGE_QUERY, "variables": {"role": VIEWER_ROLE}})
                bare_url = f"{server.base_url}/bare/tasks?role={VIEWER_ROLE}"
                async with httpx.AsyncClient(timeout=30.0) as http:
                    post_headers = {**headers, "Content-Type": "application/json"}
                    from_graphql = await http.post(f"{server.base_url}/graphql", content=graphql_body,
                                                   headers=post_headers)  # fmt: skip
                    from_uncached = await http.post(f"{server.base_url}/graphql-uncached", content=graphql_body,
                                                    headers=post_headers)  # fmt: skip
                    from_bare = await http.get(bare_url, headers=headers)
                edges = len(from_graphql.json()["data"]["tasks"]["edges"])
                identical = from_graphql.content == from_bare.content == from_uncached.content
                print(
                    f"responses: /graphql {len(from_graphql.content)} bytes, {edges} edges; /bare/tasks "
                    f"{len(from_bare.content)} bytes; byte-identical (graphql, bare, uncached): {identical}"
                )
                if not identical or edges != 50:
                    raise RuntimeError(
                        f"the routes disagree:\n{from_graphql.text[:600]}\n{from_bare.text[:600]}\n"
                        f"{from_uncached.text[:600]}"
                    )
                await load(bare_url, headers, None, 3, "warm-up")
                bare = await load(bare_url, headers, None, seconds, "/bare/tasks")
                graphql = await load(f"{server.base_url}/graphql", headers, graphql_body, seconds, "/graphql")
                lever = None
                if lever_seconds:
                    url = f"{server.base_url}/graphql-uncached"
                    lever = await load(url, headers, graphql_body, lever_seconds, "/graphql-uncached")
            finally:
                server.stop()
    ratio = graphql.rps / bare.rps
    print(f"ratio: /graphql requests/s / bare requests/s = {graphql.rps:.1f} / {bare.rps:.1f} = {ratio:.3f}")
    if lever is not None:
        print(
            f"lever (shipped): without ParserCache + ValidationCache = {lever.rps:.1f} requests/s "
            f"= {lever.rps / bare.rps:.3f}x bare; the caches make /graphql {graphql.rps / lever.rps:.2f}x faster"
        )
    targets.append(Target("graphql_vs_bare_route", ratio, GOAL, "x", True))
    print_targets(targets)
    return targets


def main() -> None:
    line_buffered()
    parser = argparse.ArgumentParser(prog="python -m bench.graphql_overhead", description=__doc__)
    parser.add_argument("--seconds", type=int, default=15, help="load duration per target route")
    parser.add_argument("--lever-seconds", type=int, default=10, help="load duration per lever (0: skip levers)")
    args = parser.parse_args()
    asyncio.run(run(args.seconds, args.lever_seconds))


if __name__ == "__main__":
    main()
