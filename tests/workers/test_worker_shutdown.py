"""A stopping worker: attempts that finish within the grace are recorded; the rest are handed back,
runnable at once by another worker with the interrupted attempt not counted."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

from engine.definitions.builder import WorkflowBuilder
from engine.observer import AttemptOutcome, EngineObserver
from engine.state import InstanceStatus, Task, TaskStatus
from engine.storage.discussion import TaskDetailsRepository
from engine.storage.instances import InstanceRepository
from engine.storage.leases import LeaseRepository
from engine.storage.tasks import TaskRepository
from engine.transitions.engine import Engine
from engine.workers.executor import ExecutionRequest, ExecutionResult, SystemTaskContext
from engine.workers.http import HttpExecutor
from engine.workers.worker import Worker


@dataclass
class Held(HttpExecutor):
    """Stands in for a slow HTTP call: started, then held until released (or cancelled)."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: bool = False

    async def execute(self, request: ExecutionRequest, context: SystemTaskContext) -> ExecutionResult:
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return ExecutionResult(output={"status": 200})


@dataclass
class Outcomes(EngineObserver):
    seen: list[AttemptOutcome] = field(default_factory=list)

    def attempt_finished(self, task_type: str, outcome: AttemptOutcome, seconds: float) -> None:
        self.seen.append(outcome)


def slow_call() -> WorkflowBuilder:
    b = WorkflowBuilder("slow_call")
    b.system_task("call", "http", {"method": "GET", "url": "http://127.0.0.1:9/slow"}, store_as="called")
    b.user_task("check", title="Check the call", assign_to_role="approver")
    b.edge("call", "check")
    return b


def worker_with(engine: Engine, executor: HttpExecutor, name: str) -> Worker:
    context = SystemTaskContext(clock=engine.clock)  # the held calls make no request
    return Worker(engine, {"http": executor}, context, lease=timedelta(minutes=10), worker_id=name)


async def the_call(engine: Engine, instance_id: str) -> Task:
    async with engine.db.read() as session:
        [task] = [t for t in await TaskRepository(session).find_by_instance(instance_id) if t.node_id == "call"]
    return task


async def test_an_attempt_still_running_after_the_grace_is_handed_back(engine: Engine) -> None:
    outcomes = Outcomes()
    engine.observer = outcomes
    await engine.deploy(slow_call().build())
    instance = await engine.start("slow_call", {}, "alice")
    held = Held()
    stopping = worker_with(engine, held, "stopping")
    stop = asyncio.Event()
    running = asyncio.create_task(stopping.run(stop, grace_seconds=0.05))
    await asyncio.wait_for(held.started.wait(), 10)
    assert (await the_call(engine, instance.id)).status is TaskStatus.RUNNING

    stop.set()
    await asyncio.wait_for(running, 10)
    assert held.cancelled
    handed = await the_call(engine, instance.id)
    assert (handed.status, handed.attempt_count) == (TaskStatus.PENDING, 0)
    async with engine.db.read() as session:
        assert await LeaseRepository(session).lease_owner(handed.id) is None
        assert (await TaskDetailsRepository(session).attempts_of([handed.id])).get(handed.id, []) == []
    assert outcomes.seen == [AttemptOutcome.HANDED_BACK]

    # Another worker takes it at once: the ten-minute lease was given back, not left to run out.
    quick = Held()
    quick.release.set()
    assert await worker_with(engine, quick, "other").run_once() == 1
    assert (await the_call(engine, instance.id)).status is TaskStatus.COMPLETED
    assert outcomes.seen == [AttemptOutcome.HANDED_BACK, AttemptOutcome.COMPLETED]


async def test_an_attempt_that_ends_within_the_grace_is_recorded(engine: Engine) -> None:
    await engine.deploy(slow_call().build())
    instance = await engine.start("slow_call", {}, "alice")
    held = Held()
    stop = asyncio.Event()
    running = asyncio.create_task(worker_with(engine, held, "stopping").run(stop))
    await asyncio.wait_for(held.started.wait(), 10)
    stop.set()
    await asyncio.sleep(0.05)
    assert not running.done()  # it waits for the attempt (no grace limit given)
    held.release.set()
    await asyncio.wait_for(running, 10)
    assert not held.cancelled
    assert (await the_call(engine, instance.id)).status is TaskStatus.COMPLETED
    async with engine.db.read() as session:
        stored = await InstanceRepository(session).get(instance.id)
    assert stored is not None and stored.status is InstanceStatus.WAITING_FOR_SIGNAL  # at the user task now
