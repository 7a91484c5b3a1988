"""Durable execution on PostgreSQL with real time: a worker process killed mid-attempt, and two workers at once.

The target is a real HTTP server that dedupes on ``Idempotency-Key``, as the http executor's contract asks
of one: a key's work runs once, however often the key is sent. Execution is at-least-once, so a worker that
dies mid-call leaves its attempt to be repeated by another; the target must still do each key's work once,
and the engine must still complete each task once.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from engine.catalog import default_registry
from engine.definitions.builder import WorkflowBuilder
from engine.definitions.model import Node
from engine.state import InstanceStatus, Task, TaskEventKind, TaskStatus
from engine.storage.database import Database
from engine.storage.discussion import TaskDetailsRepository
from engine.storage.models import instances, task_events, tasks
from engine.storage.tasks import TaskRepository
from engine.transitions.engine import Engine
from engine.workers.builtin import BUILTIN_EXECUTORS
from engine.workers.executor import (
    ExecutionRequest,
    ExecutionResult,
    SystemTaskContext,
    SystemTaskExecutor,
    WaitUntil,
)
from engine.workers.worker import Worker
from tests.support import eventually, kill, tail
from tests.workers.support import LOOPBACK_ALLOWED, ServerThread

STEPWISE = Path(sys.executable).with_name("stepwise")  # the console script of the venv running the tests
SECRET_KEY = "crash-test-secret-key-0123456789abcdef"
POLL = 0.05


class DedupingTarget:
    """``POST /work``: the first request with a key starts that key's work (``work_seconds`` long); a
    repeat waits for that same work, or gets its stored answer once it finished. Nothing is redone.

    The work runs as its own task, so a caller that disconnects (a killed worker) does not stop it. The
    server runs on its own thread and loop: every count is guarded by a lock for the test to read.
    """

    def __init__(self, work_seconds: float) -> None:
        self.work_seconds = work_seconds
        self._lock = threading.Lock()
        self._work: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._requests: Counter[str] = Counter()  # every request, per key
        self._executions: Counter[str] = Counter()  # work started, per key
        self._completions: Counter[str] = Counter()  # work finished, per key
        self._in_flight: Counter[str] = Counter()  # requests being answered right now, per key
        self._overlaps: list[str] = []  # keys that were in flight twice at the same moment

    async def handle(self, request: Request) -> JSONResponse:
        key = request.headers.get("idempotency-key")
        if not key:
            return JSONResponse({"error": "Idempotency-Key required"}, status_code=400)
        payload = await request.json()
        with self._lock:
            self._requests[key] += 1
            self._in_flight[key] += 1
            if self._in_flight[key] > 1:
                self._overlaps.append(key)
            work = self._work.get(key)
            if work is None:
                self._executions[key] += 1
                work = self._work[key] = asyncio.ensure_future(self._do(key, payload))
        try:
            answer = await asyncio.shield(work)
        finally:
            with self._lock:
                self._in_flight[key] -= 1
        return JSONResponse(answer)

    async def _do(self, key: str, payload: Any) -> dict[str, Any]:
        await asyncio.sleep(self.work_seconds)
        with self._lock:
            self._completions[key] += 1
            return {"key": key, "n": payload.get("n"), "done": sum(self._completions.values())}

    def snapshot(self) -> TargetCounts:
        with self._lock:
            return TargetCounts(
                requests=Counter(self._requests),
                executions=Counter(self._executions),
                completions=Counter(self._completions),
                in_flight=frozenset(key for key, count in self._in_flight.items() if count > 0),
                overlaps=tuple(self._overlaps),
            )


@dataclass(frozen=True)
class TargetCounts:
    requests: Counter[str]
    executions: Counter[str]
    completions: Counter[str]
    in_flight: frozenset[str]
    overlaps: tuple[str, ...]


@contextmanager
def serving(target: DedupingTarget) -> Iterator[str]:
    server = ServerThread(Starlette(routes=[Route("/work", target.handle, methods=["POST"])]))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def call_then_echo() -> WorkflowBuilder:
    """``call`` POSTs to the target (its URL from the settings), ``done`` echoes the key it answered."""
    b = WorkflowBuilder("crashable")
    b.system_task(
        "call", "http",
        {"method": "POST", "url": "{{ settings.target }}/work", "json": {"n": "{{ n }}"}, "timeoutMs": 20_000},
        store_as="called",
    )  # fmt: skip
    b.system_task("done", "echo", {"output": {"key": "{{ called.body.key }}"}}, store_as="echoed")
    b.edge("call", "done")
    return b


async def statuses(db: Database, instance_ids: list[str]) -> Counter[str]:
    async with db.read() as session:
        rows = await session.execute(select(instances.c.status).where(instances.c.id.in_(instance_ids)))
        return Counter(row.status for row in rows)


async def all_tasks(db: Database, instance_ids: list[str]) -> list[Task]:
    async with db.read() as session:
        return await TaskRepository(session).find_by_instances(instance_ids)


async def completed_events(db: Database, instance_ids: list[str]) -> Counter[str]:
    """How many ``COMPLETED`` task events each task has."""
    query = select(task_events.c.task_id).where(
        task_events.c.workflow_instance_id.in_(instance_ids), task_events.c.kind == TaskEventKind.COMPLETED.value
    )
    async with db.read() as session:
        return Counter(row.task_id for row in await session.execute(query))


async def leased_tasks(db: Database) -> dict[str, str]:
    """``RUNNING`` tasks and the worker whose lease they hold."""
    query = select(tasks.c.id, tasks.c.lease_owner).where(tasks.c.status == TaskStatus.RUNNING.value)
    async with db.read() as session:
        return {row.id: row.lease_owner for row in await session.execute(query)}


def spawn_worker(database_url: str, target_url: str, log: Path) -> subprocess.Popen[bytes]:
    """``stepwise worker`` in its own process: 3 s leases, 0.2 s polls, output to ``log``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("STEPWISE_")}
    env.update(
        STEPWISE_DATABASE_URL=database_url,
        STEPWISE_SECRET_KEY=SECRET_KEY,
        STEPWISE_WORKER_LEASE_SECONDS="3",
        STEPWISE_WORKER_POLL_SECONDS="0.2",
        STEPWISE_TEMPLATE_SETTINGS=f'{{"target": "{target_url}"}}',
        STEPWISE_HTTP_ALLOW="127.0.0.1",  # the target is on loopback
        PYTHONUNBUFFERED="1",
    )
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen([str(STEPWISE), "worker"], env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.postgres_only
async def test_a_worker_killed_mid_call_loses_nothing_and_the_target_does_each_call_once(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    assert STEPWISE.exists(), f"{STEPWISE} is missing: install the project into the venv (pip install -e .)"
    target = DedupingTarget(work_seconds=1.0)
    with serving(target) as url:
        engine = Engine(db, default_registry(), settings={"target": url})  # real time: SystemClock
        await engine.deploy(call_then_echo().build())
        instance_ids = [(await engine.start("crashable", {"n": n}, "alice")).id for n in range(20)]
        first_log, second_log = tmp_path / "first-worker.log", tmp_path / "second-worker.log"
        first: subprocess.Popen[bytes] | None = None
        second: subprocess.Popen[bytes] | None = None
        try:
            first = spawn_worker(database_url, url, first_log)

            async def calls_in_flight() -> bool:
                assert first is not None and first.poll() is None, f"the first worker exited:\n{tail(first_log)}"
                return bool(target.snapshot().in_flight)

            await eventually(calls_in_flight, 20, lambda: f"the first worker never called:\n{tail(first_log)}")
            at_kill = target.snapshot()  # calls the worker is waiting on as it dies
            kill(first)
            assert not target.snapshot().completions, "the kill landed after a call finished: the test proves less"
            orphaned = await leased_tasks(db)  # claimed by the dead worker: RUNNING, lease not yet expired
            assert len(set(orphaned.values())) == 1, orphaned
            assert at_kill.in_flight and at_kill.in_flight <= orphaned.keys(), (at_kill.in_flight, orphaned)

            second = spawn_worker(database_url, url, second_log)

            seen: Counter[str] = Counter()

            async def all_completed() -> bool:
                assert second is not None and second.poll() is None, f"the second worker exited:\n{tail(second_log)}"
                seen.clear()
                seen.update(await statuses(db, instance_ids))
                return seen[InstanceStatus.COMPLETED.value] == len(instance_ids)

            await eventually(
                all_completed, 60,
                lambda: f"instances not all completed: {dict(seen)}\n--- second worker:\n{tail(second_log)}",
            )  # fmt: skip
        finally:
            kill(first)
            kill(second)

    final = target.snapshot()
    found = await all_tasks(db, instance_ids)
    calls = {t.id: t for t in found if t.node_id == "call"}
    echoes = [t for t in found if t.node_id == "done"]
    assert len(calls) == len(echoes) == len(instance_ids), "one call and one echo per instance, nothing lost"
    assert {t.status for t in found} == {TaskStatus.COMPLETED}
    events = await completed_events(db, instance_ids)
    assert all(events[t.id] == 1 for t in found), {t.id: events[t.id] for t in found if events[t.id] != 1}

    # The target did each task's work exactly once, and nothing else.
    assert set(final.executions) == set(final.completions) == set(calls)
    assert set(final.executions.values()) == set(final.completions.values()) == {1}
    call_of = {t.workflow_instance_id: t.id for t in calls.values()}
    for echo in echoes:  # each workflow went on with the target's one answer to its own call
        assert echo.output == {"key": call_of[echo.workflow_instance_id]}

    # Recovery really happened: what the dead worker held was claimed again, and its calls were repeated.
    for task_id in orphaned:
        assert calls[task_id].attempt_count >= 2, f"task {task_id} was never claimed again"
    for key in at_kill.in_flight:
        assert final.requests[key] >= 2, f"the call {key} in flight at the kill was not repeated"
    async with db.read() as session:
        attempts = await TaskDetailsRepository(session).attempts_of(list(calls))
    for task_id, recorded in attempts.items():
        assert [a.error for a in recorded].count(None) == 1, (task_id, recorded)


class Tracked:
    """Wraps an executor: records which worker ran each task, and any task run by two workers at once."""

    def __init__(self, inner: SystemTaskExecutor, worker: str, ledger: Ledger) -> None:
        self.type = inner.type
        self.task_type = inner.task_type
        self._inner = inner
        self._worker = worker
        self._ledger = ledger

    def validate(self, node: Node) -> list[str]:
        return self._inner.validate(node)

    async def execute(self, request: ExecutionRequest, context: SystemTaskContext) -> ExecutionResult | WaitUntil:
        with self._ledger.running(request.task_id, self._worker):
            return await self._inner.execute(request, context)


class Ledger:
    def __init__(self) -> None:
        self.ran_by: dict[str, list[str]] = {}
        self.overlaps: list[str] = []
        self._running: set[str] = set()

    @contextmanager
    def running(self, task_id: str, worker: str) -> Iterator[None]:
        if task_id in self._running:
            self.overlaps.append(task_id)
        self._running.add(task_id)
        self.ran_by.setdefault(task_id, []).append(worker)
        try:
            yield
        finally:
            self._running.discard(task_id)


@asynccontextmanager
async def worker_on_own_pool(
    database_url: str, name: str, settings: Mapping[str, Any], ledger: Ledger
) -> AsyncIterator[Worker]:
    """A worker with its own ``Database`` (its own connection pool), ``Engine`` and HTTP client."""
    db = Database(database_url)
    try:
        engine = Engine(db, default_registry(), settings=settings)
        async with SystemTaskContext(clock=engine.clock, host_policy=LOOPBACK_ALLOWED, settings=settings) as context:
            executors = {e.type: Tracked(e, name, ledger) for e in BUILTIN_EXECUTORS}
            yield Worker(engine, executors, context, lease=timedelta(seconds=60), batch=2, worker_id=name)
    finally:
        await db.dispose()


@pytest.mark.postgres_only
async def test_two_workers_never_run_the_same_attempt_at_once(db: Database, database_url: str) -> None:
    target = DedupingTarget(work_seconds=0.05)
    ledger = Ledger()
    with serving(target) as url:
        settings = {"target": url}
        engine = Engine(db, default_registry(), settings=settings)
        await engine.deploy(call_then_echo().build())
        instance_ids = [(await engine.start("crashable", {"n": n}, "alice")).id for n in range(30)]
        async with (
            worker_on_own_pool(database_url, "worker-a", settings, ledger) as a,
            worker_on_own_pool(database_url, "worker-b", settings, ledger) as b,
        ):
            ran_a, ran_b = await asyncio.wait_for(asyncio.gather(a.run_until_idle(), b.run_until_idle()), 30)

    final = target.snapshot()
    found = await all_tasks(db, instance_ids)
    assert len(found) == 60 and {t.status for t in found} == {TaskStatus.COMPLETED}
    assert (await statuses(db, instance_ids))[InstanceStatus.COMPLETED.value] == 30
    assert not ledger.overlaps, f"tasks run by two workers at once: {ledger.overlaps}"
    assert not final.overlaps, f"calls in flight twice at once: {final.overlaps}"
    assert ran_a + ran_b == 60, "every task claimed once"
    assert ran_a > 0 and ran_b > 0, f"one worker did everything: a={ran_a}, b={ran_b}"
    assert all(len(ledger.ran_by[t.id]) == 1 for t in found), {k: v for k, v in ledger.ran_by.items() if len(v) > 1}
    assert {t.attempt_count for t in found} == {1}
    calls = [t.id for t in found if t.node_id == "call"]
    assert set(final.requests) == set(calls) and set(final.requests.values()) == {1}
    events = await completed_events(db, instance_ids)
    assert all(events[t.id] == 1 for t in found)
    async with db.read() as session:
        attempts = await TaskDetailsRepository(session).attempts_of([t.id for t in found])
    assert all([(a.number, a.error) for a in recorded] == [(1, None)] for recorded in attempts.values()), attempts
