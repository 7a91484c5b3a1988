"""5. Push latency and 6. memory: 1,000 graphql-transport-ws subscribers on 2 `stepwise serve` processes.

Two real ``stepwise serve`` processes (each one uvicorn process, embedded worker on: the defaults)
share one PostgreSQL database; a commit in one reaches the other's subscribers through its
``LISTEN`` connection. 1,000 users in 20 roles (50 per role) each open one WebSocket (even-numbered
to process A, odd to B) and subscribe to ``taskEvents(filter: {role: <their role>})``. After a
warm-up change per role has reached every subscriber (proof they are live), 200 task changes are
made through the ``claimTask`` mutation (by a user of the task's role, alternately on A and B, at a
fixed rate); each change reaches the 50 subscribers of its role: 10,000 deliveries.

Latency per delivery = the subscriber's receive time − the event's ``occurredAt`` (the server's
clock, the same host): the transition's start, a little before its commit, so this is an upper
bound of commit → receive. A delivery that never arrives counts as infinitely late.
Target: p99 ≤ 100 ms.

Memory: the RSS (``VmRSS``) of each server process idle after start-up (target ≤ 150 MB), and with
its 500 subscribers after the changes.

Without GraphQL subscriptions in the schema (``schema/subscriptions.py``) the latency target is
printed as ``MISS`` with ``measured=n/a`` and the reason — never a made-up figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import resource
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from bench.common import (
    ROOT,
    ServerProcess,
    Target,
    cpu_seconds,
    free_port,
    heading,
    line_buffered,
    percentile,
    print_environment,
    print_targets,
    rss_mb,
    temporary_database,
    venv_bin,
)
from bench.inbox_scaling import bearer, server_env
from bench.seed import (
    DEFINITION_KEY,
    INSTANCE_COLUMNS,
    NOW,
    STEP_COLUMNS,
    TASK_COLUMNS,
    seed_inbox,
    time_ordered_id,
)

NAME = "push_memory"
RSS_GOAL_MB = 150.0
PUSH_GOAL_MS = 100.0
SUBSCRIPTIONS = ROOT / "schema" / "subscriptions.py"
ROLES = [f"push_{n:02d}" for n in range(20)]
SUBSCRIPTION = """subscription($filter: TaskEventFilter) {
  taskEvents(filter: $filter) { cursor kind actor { id } occurredAt task { id nodeId status assignee { id } } } }"""
CLAIM = "mutation($id: ID!) { claimTask(input: {taskId: $id}) { __typename } }"
PROTOCOL = Subprotocol("graphql-transport-ws")


def subscriber(number: int) -> str:
    return f"sub_{number:04d}"


def actor(role: str) -> str:
    return f"actor_{role}"


def subscriptions_missing() -> str | None:
    """Why push latency cannot be measured here, or None when the schema has ``taskEvents``."""
    if not SUBSCRIPTIONS.exists():
        return (
            f"GraphQL subscriptions are not implemented yet ({SUBSCRIPTIONS.relative_to(ROOT)} is missing): "
            "there is nothing to subscribe to, so no push latency can be measured"
        )
    from schema.schema import build_schema

    if "taskEvents" not in str(build_schema()):
        return "the schema has no taskEvents subscription (schema/subscriptions.py is not wired in yet)"
    return None


def push_name(subscribers: int) -> str:
    """The target's name; a run with fewer than the issue's 1,000 subscribers says so in it."""
    return "push_latency_p99" if subscribers == 1000 else f"push_latency_p99_{subscribers}_subscribers"


def push_latency_target(reason: str, subscribers: int = 1000) -> Target:
    return Target(push_name(subscribers), None, PUSH_GOAL_MS, "ms", False, reason)


# -- data ------------------------------------------------------------------------------------------


async def load_push_fixtures(connection: asyncpg.Connection, tasks_per_role: int) -> dict[str, list[str]]:
    """Roles, 1,000 subscribers and 20 actors, and PENDING unassigned tasks per role; task ids by role."""
    await connection.copy_records_to_table("roles", records=[(r, r) for r in ROLES], columns=("key", "title"))
    people = [(subscriber(n), ROLES[n % len(ROLES)]) for n in range(1000)] + [(actor(r), r) for r in ROLES]
    users = [(user_id, user_id, f"{user_id}@example.com", NOW) for user_id, _ in people]
    await connection.copy_records_to_table("users", records=users, columns=("id", "name", "email", "created_at"))
    await connection.copy_records_to_table("user_roles", records=people, columns=("user_id", "role_key"))
    rng = random.Random(5)
    instances, steps, tasks = [], [], []
    by_role: dict[str, list[str]] = defaultdict(list)
    for number in range(tasks_per_role * len(ROLES)):
        role = ROLES[number % len(ROLES)]
        instance_id, step_id, task_id = (time_ordered_id(NOW, rng) for _ in range(3))
        instances.append((instance_id, DEFINITION_KEY, 1, "WAITING_FOR_SIGNAL", json.dumps({"entityName": "push"}),
                          "[]", actor(role), NOW, NOW, None, 1, None))  # fmt: skip
        steps.append((step_id, instance_id, "review", "wrap_up", NOW))
        tasks.append((
            task_id, instance_id, step_id, time_ordered_id(NOW, rng), "archive", "USER", "FORM", "userTask.form",
            "Archive", f"Archive push {number}", None, None, role, None, None, "PENDING", 1, "{}", "null", "null",
            0, NOW, NOW, None, None, None, None, 0, None, None, None, None,
        ))  # fmt: skip
        by_role[role].append(task_id)
    await connection.copy_records_to_table("workflow_instances", records=instances, columns=INSTANCE_COLUMNS)
    await connection.copy_records_to_table("step_instances", records=steps, columns=STEP_COLUMNS)
    await connection.copy_records_to_table("tasks", records=tasks, columns=TASK_COLUMNS)
    await connection.execute("ANALYZE")
    return by_role


# -- subscribers -----------------------------------------------------------------------------------


@dataclass
class Subscriber:
    user: str
    role: str
    url: str
    socket: ClientConnection | None = None
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)  # task ids of the events received (cheap to poll)
    error: str | None = None

    async def open(self) -> None:
        self.socket = await connect(self.url, subprotocols=[PROTOCOL], max_size=2**22, ping_interval=None)
        token = bearer(self.user)["Authorization"]
        await self.socket.send(json.dumps({"type": "connection_init", "payload": {"authorization": token}}))
        ack = json.loads(await asyncio.wait_for(self.socket.recv(), 30))
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"{self.user}: no connection_ack: {ack}")
        payload = {"query": SUBSCRIPTION, "variables": {"filter": {"role": self.role}}}
        await self.socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))

    async def read(self) -> None:
        assert self.socket is not None
        try:
            async for raw in self.socket:
                arrived = time.time()
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "next":
                    self.received.append((arrived, message["payload"]))
                    event = (message["payload"].get("data") or {}).get("taskEvents")
                    if event:
                        self.seen.add(event["task"]["id"])
                elif kind == "ping":
                    await self.socket.send('{"type":"pong"}')
                elif kind in ("error", "complete"):
                    self.error = f"{kind}: {message.get('payload')}"
        except Exception as exc:  # a dropped connection shows up as missing deliveries, with the reason
            self.error = f"{type(exc).__name__}: {exc}"

    def events_for(self, task_ids: set[str]) -> dict[str, float]:
        """Latency in ms per task id received (receive − occurredAt), for changes in ``task_ids``."""
        found = {}
        for arrived, payload in self.received:
            event = (payload.get("data") or {}).get("taskEvents")
            if event and event["task"]["id"] in task_ids:
                occurred = datetime.fromisoformat(event["occurredAt"]).timestamp()
                found[event["task"]["id"]] = (arrived - occurred) * 1000
        return found


async def claim_all(
    servers: list[ServerProcess], changes: list[tuple[str, str]], rate: float
) -> tuple[float, list[float], list[str]]:
    """Claim each (role, task) at a fixed rate, alternating servers: (seconds, mutation latencies, failures).

    A failed or timed-out mutation is counted, not fatal: if it did not commit, its deliveries are
    missing and count as infinitely late.
    """
    latencies: list[float] = []
    failures: list[str] = []
    clients = [httpx.AsyncClient(base_url=s.base_url, timeout=60.0) for s in servers]
    started = time.perf_counter()

    async def claim(number: int, role: str, task_id: str) -> None:
        await asyncio.sleep(max(0.0, started + number / rate - time.perf_counter()))
        sent = time.perf_counter()
        try:
            response = await clients[number % len(clients)].post(
                "/graphql", json={"query": CLAIM, "variables": {"id": task_id}}, headers=bearer(actor(role))
            )
        except httpx.HTTPError as exc:
            failures.append(f"{type(exc).__name__} after {time.perf_counter() - sent:.1f} s")
            return
        latencies.append((time.perf_counter() - sent) * 1000)
        outcome = response.json().get("data", {}) or {}
        if (outcome.get("claimTask") or {}).get("__typename") != "TaskSuccess":
            failures.append(f"claimTask answered {response.text[:200]}")

    try:
        await asyncio.gather(*(claim(n, role, task_id) for n, (role, task_id) in enumerate(changes)))
    finally:
        for client in clients:
            await client.aclose()
    return time.perf_counter() - started, latencies, failures


async def wait_for(subscribers: list[Subscriber], wanted: dict[str, set[str]], timeout: float) -> float:
    """Wait until every subscriber got every change of its role in ``wanted``; returns seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if all(wanted[s.role] <= s.seen for s in subscribers):
            break
        await asyncio.sleep(0.05)
    return time.perf_counter() - started


# -- the benchmark ---------------------------------------------------------------------------------


async def run(idle_seconds: float, subscribers_total: int, changes_total: int, rate: float) -> list[Target]:
    heading("5. Push latency and 6. memory: graphql-transport-ws subscribers on 2 stepwise serve processes")
    await print_environment({"servers": "2 x stepwise serve (1 uvicorn process each, embedded worker on)"})
    missing = subscriptions_missing()
    per_role = changes_total // len(ROLES)
    print(
        f"sizes: {subscribers_total} subscribers ({subscribers_total // len(ROLES)} per role, {len(ROLES)} roles) "
        f"over 2 processes; {per_role * len(ROLES)} changes (claimTask) at {rate:g}/s, each to its role's "
        f"subscribers; idle {idle_seconds:.0f} s before measuring idle RSS"
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, subscribers_total + 1024)), hard))
    targets: list[Target] = []
    async with temporary_database(NAME) as dsn:
        connection = await asyncpg.connect(dsn)
        try:
            await seed_inbox(dsn, connection, 10_000)
            by_role = await load_push_fixtures(connection, per_role + 1)
        finally:
            await connection.close()
        with tempfile.TemporaryDirectory() as tmp:
            servers = []
            try:
                for name in ("a", "b"):
                    port = free_port()
                    command = [venv_bin("stepwise"), "serve", "--host", "127.0.0.1", "--port", str(port)]
                    env = server_env(dsn, Path(tmp) / "files")
                    servers.append(ServerProcess(command, env, port, Path(tmp) / f"server-{name}.log"))
                for server in servers:
                    await server.wait_ready()
                await asyncio.sleep(idle_seconds)
                idle = [rss_mb(s.pid) for s in servers]
                print(f"rss idle after start-up: A {idle[0]:.1f} MB, B {idle[1]:.1f} MB", flush=True)
                targets.append(Target("server_rss_idle", max(idle), RSS_GOAL_MB, "MB", False))
                if missing:
                    targets.insert(0, push_latency_target(missing, subscribers_total))
                    print("rss with subscribers: n/a (no subscriptions)")
                else:
                    targets.insert(0, await push(servers, by_role, subscribers_total, rate))
            finally:
                for server in servers:
                    server.stop()
    print_targets(targets)
    return targets


async def push(
    servers: list[ServerProcess], by_role: dict[str, list[str]], subscribers_total: int, rate: float
) -> Target:
    urls = [s.base_url.replace("http://", "ws://") + "/graphql" for s in servers]
    subscribers = [
        Subscriber(subscriber(n), ROLES[n % len(ROLES)], urls[n % 2]) for n in range(subscribers_total)
    ]  # fmt: skip
    started = time.perf_counter()
    gate = asyncio.Semaphore(50)

    async def open_one(s: Subscriber) -> None:
        async with gate:
            await s.open()

    await asyncio.gather(*(open_one(s) for s in subscribers))
    readers = [asyncio.create_task(s.read()) for s in subscribers]
    print(f"{len(subscribers)} subscribers connected and subscribed in {time.perf_counter() - started:.1f} s")
    try:
        warm_up = [(role, ids[0]) for role, ids in by_role.items()]
        await claim_all(servers, warm_up, rate)
        waited = await wait_for(subscribers, {role: {task} for role, task in warm_up}, timeout=60)
        live = sum(1 for s in subscribers if by_role[s.role][0] in s.seen)
        print(f"warm-up: one change per role; {live}/{len(subscribers)} subscribers had theirs after {waited:.1f} s")
        rounds = min(len(ids) for ids in by_role.values())
        changes = [(role, by_role[role][number]) for number in range(1, rounds) for role in ROLES]
        cpu_before = [cpu_seconds(s.pid) for s in servers]
        seconds, mutation_ms, failures = await claim_all(servers, changes, rate)
        wanted: dict[str, set[str]] = defaultdict(set)
        for role, task in changes:
            wanted[role].add(task)
        drained = await wait_for(subscribers, wanted, timeout=30)
        server_cpu = sum(cpu_seconds(s.pid) - before for s, before in zip(servers, cpu_before, strict=True))
        rss = [rss_mb(s.pid) for s in servers]
    finally:
        for s in subscribers:
            if s.socket is not None:
                await s.socket.close()
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    latencies: list[float] = []
    per_subscriber_p99: list[float] = []
    missing = 0
    for s in subscribers:
        got = s.events_for(wanted[s.role])
        missing += len(wanted[s.role]) - len(got)
        mine = list(got.values()) + [math.inf] * (len(wanted[s.role]) - len(got))
        latencies += mine
        per_subscriber_p99.append(percentile(mine, 99))
    errors = [s.error for s in subscribers if s.error]
    print(
        f"changes: {len(changes)} claimTask mutations in {seconds:.1f} s ({len(changes) / seconds:.1f}/s); "
        f"mutation p50={percentile(mutation_ms, 50):.1f} ms p99={percentile(mutation_ms, 99):.1f} ms; "
        f"failed: {len(failures)}" + (f" (first: {failures[0]})" if failures else "")
    )
    print(
        f"deliveries: {len(latencies) - missing} of {len(latencies)} expected ({missing} missing), all in "
        f"{drained:.1f} s after the last change; subscriber errors: {len(errors)}"
        + (f" (first: {errors[0]})" if errors else "")
    )
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    print(
        f"commit -> receive (upper bound, from occurredAt): p50={p50:.1f} ms p90={percentile(latencies, 90):.1f} ms "
        f"p99={p99:.1f} ms max={max(latencies):.1f} ms; per subscriber p99: median "
        f"{percentile(per_subscriber_p99, 50):.1f} ms, worst {max(per_subscriber_p99):.1f} ms"
    )
    print(
        f"server CPU for the changes and their deliveries: {server_cpu:.1f} s over both processes = "
        f"{server_cpu * 1000 / max(1, len(latencies) - missing):.2f} ms per delivery (mutations included)"
    )
    print(f"rss with {len(subscribers) // 2} subscribers each: A {rss[0]:.1f} MB, B {rss[1]:.1f} MB")
    return Target(push_name(subscribers_total), p99 if math.isfinite(p99) else None, PUSH_GOAL_MS, "ms", False,
                  "" if math.isfinite(p99) else f"{missing} deliveries never arrived")  # fmt: skip


def main() -> None:
    line_buffered()
    parser = argparse.ArgumentParser(prog="python -m bench.push_memory", description=__doc__)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--subscribers", type=int, default=1000, help="at most 1000 (the fixture's users)")
    parser.add_argument("--changes", type=int, default=200, help="task changes (a multiple of 20 roles)")
    parser.add_argument("--rate", type=float, default=10.0, help="changes per second")
    args = parser.parse_args()
    asyncio.run(run(args.idle_seconds, min(args.subscribers, 1000), args.changes, args.rate))


if __name__ == "__main__":
    main()
