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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from pyinstrument import Profiler
from sqlalchemy import bindparam, event, insert, select

from bench.common import heading, line_buffered, print_environment, sqlalchemy_url, temporary_database
from bench.inbox_scaling import INBOX_QUERY, SECRET, STEP_QUERY, bearer
from bench.seed import (
    VIEWER,
    VIEWER_ROLE,
    seed_inbox,
    seed_inbox_alone,
)
from bench.workload import TRANSITIONS_PER_INSTANCE, prepare_engine, run_stepwise
from engine.storage.database import Database
from engine.storage.models import task_events, tasks
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
    ("sqlalchemy/pool/", "SQLAlchemy: pool (checkout, idle ping)"),
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
    """Statements sent and pool checkouts (each a BEGIN and COMMIT/ROLLBACK; a ping after 1 s idle) on one database."""

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
        f"(each: BEGIN, …, COMMIT/ROLLBACK round trips; a ping only after sitting idle)"
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
        loaded = await seed_inbox_alone(dsn, 10_000)
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


# -- evidence for the proposals (docs/performance.md): nothing here changes engine/schema/server code ----


async def statement_costs(count: int = 2000) -> None:
    """CPU per statement: a Core statement built per call on the AsyncSession (what the repositories do),
    a prebuilt one on the session and on its connection, and asyncpg's own prepared statement."""
    await print_environment()

    async def timed(label: str, call: Callable[[], Awaitable[Any]]) -> None:
        for _ in range(100):
            await call()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(count):
            await call()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(f"    {label:<74} CPU {cpu / count * 1e6:5.0f} us  wall {wall / count * 1e6:5.0f} us")

    async with temporary_database("profile_statements") as dsn:
        db = Database(sqlalchemy_url(dsn))
        now = datetime.now(UTC)
        event_row = {"kind": "CREATED", "task_id": "t", "step_instance_id": "s", "workflow_instance_id": "w",
                     "actor_id": "a", "occurred_at": now, "data": None}  # fmt: skip
        prebuilt = select(tasks).where(
            tasks.c.workflow_instance_id == bindparam("w"), tasks.c.token_id == bindparam("t")
        )
        insert_event = insert(task_events)
        heading(f"profile: one statement, {count} times (a SELECT by two columns; an INSERT of a task event)")
        try:
            async with db.transaction() as session:
                connection = await session.connection()
                await connection.exec_driver_sql("ALTER TABLE task_events DROP CONSTRAINT fk_task_events_task_id_tasks")

                def built() -> Any:
                    return select(tasks).where(tasks.c.workflow_instance_id == "w", tasks.c.token_id == "t")

                await timed(
                    "SELECT: built per call, AsyncSession.execute (as shipped)", lambda: session.execute(built())
                )
                await timed("SELECT: prebuilt + bindparams, AsyncSession.execute",
                            lambda: session.execute(prebuilt, {"w": "w", "t": "t"}))  # fmt: skip
                await timed("SELECT: prebuilt + bindparams, AsyncConnection.execute",
                            lambda: connection.execute(prebuilt, {"w": "w", "t": "t"}))  # fmt: skip
                await timed("INSERT: insert().values(**row) per call, AsyncSession.execute (as shipped)",
                            lambda: session.execute(task_events.insert().values(**event_row)))  # fmt: skip
                await timed("INSERT: prebuilt insert(), AsyncConnection.execute(row)",
                            lambda: connection.execute(insert_event, event_row))  # fmt: skip
                raise _Rollback
        except _Rollback:
            pass
        finally:
            await db.dispose()
        raw = await asyncpg.connect(dsn)
        try:
            async with raw.transaction():
                await raw.execute("ALTER TABLE task_events DROP CONSTRAINT fk_task_events_task_id_tasks")
                fetch = await raw.prepare("SELECT * FROM tasks WHERE workflow_instance_id = $1 AND token_id = $2")
                add = await raw.prepare(
                    "INSERT INTO task_events (kind, task_id, step_instance_id, workflow_instance_id, actor_id, "
                    "occurred_at, data) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                )
                await timed("SELECT: asyncpg prepared statement", lambda: fetch.fetch("w", "t"))
                await timed("INSERT: asyncpg prepared statement", lambda: add.fetch(*event_row.values()))
        finally:
            await raw.close()


class _Rollback(Exception):
    pass


INBOX_VISIBILITY = (
    "(assigned_user_id = $1 OR workflow_instance_id IN (SELECT id FROM workflow_instances WHERE started_by = $1) "
    "OR assigned_role IN ('approver'))"
)
OPEN_FOR_ROLE = "assigned_role = 'approver' AND status NOT IN ('COMPLETED', 'CANCELLED')"
ONLY_ROLE = f"$1::text IS NOT NULL AND {OPEN_FOR_ROLE}"  # $1 unused: every statement takes the viewer
INBOX_SQL = {
    "count, as shipped (the role implies visibility)": f"SELECT count(*) FROM tasks WHERE {ONLY_ROLE}",
    "page, as shipped": f"SELECT * FROM tasks WHERE {ONLY_ROLE} ORDER BY created_at, id LIMIT 51",
    "count, visibility OR kept (a role not held)": f"SELECT count(*) FROM tasks WHERE {INBOX_VISIBILITY} AND "
    f"{OPEN_FOR_ROLE}",
    "page, visibility OR kept": f"SELECT * FROM tasks WHERE {INBOX_VISIBILITY} AND {OPEN_FOR_ROLE} "
    "ORDER BY created_at, id LIMIT 51",
}
PARTIAL_INDEXES = ("ix_tasks_role_unfinished", "ix_tasks_user_unfinished", "ix_tasks_group_unfinished")


async def inbox_sql(size: int) -> None:
    """The inbox page's SQL (statuses as literals) on ``size`` tasks, with the shipped indexes and without
    the partial ones on unfinished tasks (migration 867da6278fba)."""
    await print_environment()
    async with temporary_database("profile_inbox_sql") as dsn:
        connection = await asyncpg.connect(dsn)
        try:
            await seed_inbox(dsn, connection, size)
            await connection.execute("VACUUM ANALYZE tasks")
            heading(f"profile: inbox SQL on {size} tasks, 50 runs each")
            for phase in ("the shipped indexes", "no partial indexes on unfinished tasks"):
                if phase.startswith("no "):
                    for index in PARTIAL_INDEXES:
                        await connection.execute(f"DROP INDEX {index}")
                print(f"with {phase}:")
                for name, sql in INBOX_SQL.items():
                    times = []
                    for _ in range(55):
                        started = time.perf_counter()
                        await connection.fetch(sql, VIEWER)
                        times.append((time.perf_counter() - started) * 1000)
                    times = sorted(times[5:])
                    plan = [row[0] for row in await connection.fetch(f"EXPLAIN {sql}", VIEWER)]
                    scans = [line.strip().split("  (")[0] for line in plan if "Scan" in line or "->  Sort" in line]
                    print(f"    {name:<50} p50 {times[25]:7.2f} ms  p99 {times[-1]:7.2f} ms  {' / '.join(scans)}")
        finally:
            await connection.close()


def main() -> None:
    line_buffered()
    parser = argparse.ArgumentParser(prog="python -m bench.profiling", description=__doc__)
    parser.add_argument("what", choices=["engine", "inbox", "statements", "inbox-sql"])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--drivers", type=int, default=1)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--size", type=int, default=100_000, help="inbox-sql: tasks to load")
    args = parser.parse_args()
    if args.what == "engine":
        asyncio.run(profile_engine(args.instances, args.drivers))
    elif args.what == "inbox":
        asyncio.run(profile_inbox(args.requests))
    elif args.what == "statements":
        asyncio.run(statement_costs())
    else:
        asyncio.run(inbox_sql(args.size))


if __name__ == "__main__":
    main()
