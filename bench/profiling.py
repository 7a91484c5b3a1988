"""Where the time goes: pyinstrument over the benchmarks' hot paths, with SQL and round-trip counts.

Not part of ``python -m bench`` (profiling slows what it measures); run it to see what limits a
missed target:

* ``python -m bench.profiling engine`` — the approval workload in-process (``--drivers 1|16``);
* ``python -m bench.profiling inbox`` — the inbox page through the real app in-process (ASGI, no
  socket), and ``stepInstance{metrics}``, on 10k bulk-loaded tasks;

Each prints statements and connection checkouts per unit of work, CPU per unit, the self time split
by layer (SQLAlchemy statement building, compilation, the driver, GraphQL, …) and pyinstrument's tree.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from pyinstrument import Profiler
from sqlalchemy import event

from bench.common import heading, line_buffered, print_environment, sqlalchemy_url, temporary_database
from bench.inbox_scaling import INBOX_QUERY, SECRET, STEP_QUERY, bearer
from bench.seed import VIEWER, VIEWER_ROLE, Loaded, inbox_definition, load_directory, load_tasks
from bench.workload import TRANSITIONS_PER_INSTANCE, prepare_engine, run_stepwise
from engine.catalog import default_registry
from engine.runner import Engine
from engine.storage.database import Database
from server.app import create_app
from server.settings import Settings

LAYERS = (
    ("sqlalchemy/sql/compiler.py", "SQLAlchemy: compiling statements"),
    ("sqlalchemy/sql/cache_key.py", "SQLAlchemy: statement cache keys"),
    ("sqlalchemy/sql/traversals.py", "SQLAlchemy: statement cache keys"),
    ("sqlalchemy/sql/", "SQLAlchemy: building statements (select/insert/values/where)"),
    ("sqlalchemy/orm/", "SQLAlchemy: (Async)Session layer"),
    ("sqlalchemy/ext/asyncio/", "SQLAlchemy: (Async)Session layer"),
    ("sqlalchemy/engine/", "SQLAlchemy: execution and result rows"),
    ("sqlalchemy/pool/", "SQLAlchemy: pool (checkout, pre-ping)"),
    ("sqlalchemy/dialects/", "SQLAlchemy: asyncpg dialect adaptation"),
    ("sqlalchemy/util/_concurrency", "SQLAlchemy: greenlet bridge"),
    ("greenlet", "SQLAlchemy: greenlet bridge"),
    ("sqlalchemy/", "SQLAlchemy: other"),
    ("asyncpg/", "asyncpg driver"),
    ("graphql/", "graphql-core (parse, validate, execute)"),
    ("strawberry/", "strawberry (schema, resolvers, extensions)"),
    ("starlette/", "starlette"),
    ("httpx/", "httpx test client (not the server)"),
    ("httpcore/", "httpx test client (not the server)"),
    ("jwt/", "PyJWT (token check)"),
    ("cryptography/", "PyJWT (token check)"),
    ("jinja2/", "jinja2 templates"),
    ("jmespath/", "jmespath conditions"),
    ("/engine/", "stepwise engine/"),
    ("/schema/", "stepwise schema/"),
    ("/server/", "stepwise server/"),
    ("/bench/", "bench driver"),
    ("asyncio/", "asyncio (loop, transports: socket send/recv)"),
    ("selectors.py", "asyncio (waiting for I/O: idle)"),
    ("json/", "json"),
)


SOCKET = "socket send/recv syscalls"


def layer(path: str | None) -> str:
    for marker, name in LAYERS:
        if path and marker in path:
            return name
    return "other (stdlib: uuid, datetime, dataclasses, …)"


def self_time_by_layer(frame: Any, into: Counter[str], parent: str = "other") -> None:
    """Built-ins (no Python file) count for the layer that called them; the event loop's poll is idle."""
    path = frame.file_path
    if frame.function in ("epoll.poll", "select.select", "select.epoll.poll"):
        name = "asyncio (waiting for I/O: idle)"
    elif frame.function.startswith("socket."):
        name = SOCKET
    elif path is None or path.startswith("<"):
        name = parent
    else:
        name = layer(path)
    own = frame.total_self_time  # the time of its synthetic "[self]" children
    if own:
        into[name] += own
    for child in frame.children:
        if not child.is_synthetic:
            self_time_by_layer(child, into, name)


class SqlCounter:
    """Statements sent and pool checkouts (each costs a pre-ping round trip) on one database."""

    def __init__(self, db: Database) -> None:
        self.statements: Counter[str] = Counter()
        self.checkouts = 0
        sync = db.engine.sync_engine
        event.listen(sync, "before_cursor_execute", self._statement)
        event.listen(sync.pool, "checkout", self._checkout)

    def _statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        found = _TABLE.search(statement)
        self.statements[f"{statement.split()[0]} {found.group(1) if found else '?'}"] += 1

    def _checkout(self, *args: Any) -> None:
        self.checkouts += 1


_TABLE = re.compile(r"(?:\bFROM|\bINTO|^UPDATE)\s+(\w+)")


async def profiled(title: str, units: int, unit: str, work: Callable[[], Awaitable[Any]], counter: SqlCounter) -> None:
    counter.statements.clear()
    counter.checkouts = 0
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    cpu, wall = time.process_time(), time.perf_counter()
    profiler.start()
    await work()
    profiler.stop()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    heading(f"profile: {title}")
    print(f"{units} {unit}s: wall {wall * 1000 / units:.2f} ms/{unit}, CPU {cpu * 1000 / units:.2f} ms/{unit}")
    statements = sum(counter.statements.values())
    print(
        f"SQL per {unit}: {statements / units:.1f} statements + {counter.checkouts / units:.1f} connection checkouts "
        f"(each: pre-ping, BEGIN, …, COMMIT/ROLLBACK round trips)"
    )
    for statement, count in counter.statements.most_common():
        print(f"    {count / units:5.2f}  {statement}")
    session = profiler.last_session
    assert session is not None
    layers: Counter[str] = Counter()
    root = session.root_frame()
    if root is not None:
        self_time_by_layer(root, layers)
    busy = sum(v for k, v in layers.items() if "idle" not in k and k != SOCKET)
    print(
        f"self time by layer: {layers[SOCKET]:.2f} s in socket send/recv syscalls (wall time: on a busy machine it "
        f"includes waiting for a CPU after waking PostgreSQL), and the other {busy:.2f} s not idle:"
    )
    for name, seconds in layers.most_common():
        if "idle" not in name and name != SOCKET:
            print(f"    {100 * seconds / busy:5.1f}%  {name}")
    print(profiler.output_text(unicode=False, color=False, show_all=False))


async def profile_engine(instances: int, drivers: int) -> None:
    await print_environment()
    async with temporary_database("profile_engine") as dsn:
        engine = await prepare_engine(sqlalchemy_url(dsn))
        counter = SqlCounter(engine.db)
        try:
            await run_stepwise(engine, 30, 4)
            await profiled(
                f"approval workload, {drivers} driver(s)",
                instances * TRANSITIONS_PER_INSTANCE,
                "transition",
                lambda: run_stepwise(engine, instances, drivers),
                counter,
            )
        finally:
            await engine.db.dispose()


async def profile_inbox(requests: int) -> None:
    await print_environment()
    async with temporary_database("profile_inbox") as dsn:
        engine = Engine(Database(sqlalchemy_url(dsn)), default_registry())
        await engine.deploy(inbox_definition(), VIEWER)
        await engine.db.dispose()
        connection = await asyncpg.connect(dsn)
        loaded = Loaded()
        try:
            await load_directory(connection)
            await load_tasks(connection, 10_000, seed=1, loaded=loaded)
        finally:
            await connection.close()
        settings = Settings(database_url=sqlalchemy_url(dsn), secret_key=SECRET, files_dir=Path("/tmp/stepwise-bench"))
        app = create_app(settings)
        headers = bearer(VIEWER)
        rng = random.Random(3)
        async with app.router.lifespan_context(app):
            counter = SqlCounter(app.state.engine.db)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

                async def send(body: dict[str, Any], count: int) -> None:
                    for _ in range(count):
                        response = await client.post("/graphql", json=body, headers=headers)
                        if response.status_code != 200 or response.json().get("errors"):
                            raise RuntimeError(response.text[:300])

                inbox = {"query": INBOX_QUERY, "variables": {"role": VIEWER_ROLE}}
                step = {"query": STEP_QUERY, "variables": {"id": rng.choice(loaded.viewer_step_ids)}}
                await send(inbox, 20)
                await send(step, 20)
                await profiled("tasks(filter:{role}, first:50)", requests, "request", lambda: send(inbox, requests),
                               counter)  # fmt: skip
                await profiled("stepInstance{metrics}", requests, "request", lambda: send(step, requests), counter)


def main() -> None:
    line_buffered()
    parser = argparse.ArgumentParser(prog="python -m bench.profiling", description=__doc__)
    parser.add_argument("what", choices=["engine", "inbox"])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--drivers", type=int, default=1)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    if args.what == "engine":
        asyncio.run(profile_engine(args.instances, args.drivers))
    else:
        asyncio.run(profile_inbox(args.requests))


if __name__ == "__main__":
    main()
