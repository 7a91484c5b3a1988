"""The worker end to end: real HTTP target on loopback, injected clock, both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from engine.catalog import default_registry
from engine.clock import ManualClock
from engine.definitions.builder import WorkflowBuilder
from engine.errors import ForbiddenError, InvalidStateError
from engine.state import InstanceStatus, TaskEventKind, TaskStatus, User
from engine.storage.database import Database
from engine.storage.discussion import TaskDetailsRepository
from engine.storage.instances import InstanceRepository
from engine.storage.leases import LeaseRepository
from engine.storage.task_events import TaskEventRepository
from engine.storage.tasks import TaskRepository
from engine.tasks.service import TaskService
from engine.transitions.engine import Engine
from engine.workers.builtin import BUILTIN_EXECUTORS
from engine.workers.executor import SystemTaskContext
from engine.workers.worker import Worker
from tests.workers.support import LOOPBACK_ALLOWED, ServerThread

SECRET = "s3cr3t-token-value"
ADMIN = User("dana", "Dana", roles=frozenset({"admin"}))


@dataclass
class Flaky:
    """Answers 500 for the first ``failures`` calls, then 200; remembers every Idempotency-Key."""

    failures: int = 0
    keys: list[str | None] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: Request) -> JSONResponse:
        self.keys.append(request.headers.get("idempotency-key"))
        if self.failures > 0:
            self.failures -= 1
            return JSONResponse({"error": "try later"}, status_code=500)
        return JSONResponse({"ok": True, "calls": len(self.keys)})


@pytest.fixture(scope="module")
def flaky_server() -> Iterator[tuple[ServerThread, list[Flaky]]]:
    current: list[Flaky] = [Flaky()]

    async def route(request: Request) -> JSONResponse:
        return await current[0].handle(request)

    server = ServerThread(Starlette(routes=[Route("/hook", route, methods=["POST"])]))
    server.start()
    yield server, current
    server.stop()


@pytest.fixture
def flaky(flaky_server: tuple[ServerThread, list[Flaky]]) -> Flaky:
    server, current = flaky_server
    current[0] = Flaky(url=f"{server.url}/hook")
    return current[0]


@pytest.fixture
async def contexts() -> AsyncIterator[list[SystemTaskContext]]:
    """The execution contexts a test's workers made, closed after it."""
    made: list[SystemTaskContext] = []
    yield made
    for context in made:
        await context.aclose()


def make_worker(engine: Engine, contexts: list[SystemTaskContext]) -> Worker:
    context = SystemTaskContext(clock=engine.clock, host_policy=LOOPBACK_ALLOWED)
    contexts.append(context)
    executors = {executor.type: executor for executor in BUILTIN_EXECUTORS}
    return Worker(engine, executors, context, secrets={"apiToken": SECRET}, lease=timedelta(seconds=30))


def hook_workflow(url: str, attempts: int = 3) -> WorkflowBuilder:
    b = WorkflowBuilder("hook")
    b.system_task("prepare", "echo", {"output": {"amount": "{{ amount }}", "who": "{{ startedBy.id }}"}},
                  store_as="prepared")  # fmt: skip
    b.system_task(
        "call", "http",
        {"method": "POST", "url": url, "json": {"amount": "{{ prepared.amount }}"},
         "headers": {"Authorization": "Bearer {{ secrets.apiToken }}"}, "query": {"token": "{{ secrets.apiToken }}"}},
        store_as="called", retry={"maxAttempts": attempts, "initialInterval": "PT10S", "backoffCoefficient": 2.0},
    )  # fmt: skip
    b.user_task("check", title="Check call {{ called.body.calls }}", assign_to_role="approver", store_as="checked")
    b.edge("prepare", "call").edge("call", "check")
    return b


async def tasks_by_node(engine: Engine, instance_id: str) -> dict[str, Any]:
    async with engine.db.read() as session:
        return {t.node_id: t for t in await TaskRepository(session).find_by_instance(instance_id)}


async def instance_status(engine: Engine, instance_id: str) -> InstanceStatus:
    async with engine.db.read() as session:
        instance = await InstanceRepository(session).get(instance_id)
    assert instance is not None
    return instance.status


async def test_retry_with_backoff_then_success(
    engine: Engine, clock: ManualClock, flaky: Flaky, contexts: list[SystemTaskContext]
) -> None:
    flaky.failures = 1
    await engine.deploy(hook_workflow(flaky.url).build())
    instance = await engine.start("hook", {"amount": 12.5}, "alice")
    assert instance.status is InstanceStatus.RUNNING
    worker = make_worker(engine, contexts)

    assert await worker.run_once() == 1  # echo
    assert await worker.run_once() == 1  # http: 500
    call = (await tasks_by_node(engine, instance.id))["call"]
    assert call.status is TaskStatus.WAITING and call.next_run_at == clock.now() + timedelta(seconds=10)
    assert await worker.run_once() == 0, "nothing is due before the back-off ends"

    clock.advance(timedelta(seconds=10))
    assert await worker.run_until_idle() == 1
    tasks = await tasks_by_node(engine, instance.id)
    assert tasks["prepare"].output == {"amount": 12.5, "who": "alice"}
    assert tasks["call"].status is TaskStatus.COMPLETED and tasks["call"].output["body"]["calls"] == 2
    assert tasks["check"].title == "Check call 2" and tasks["check"].status is TaskStatus.PENDING
    assert await instance_status(engine, instance.id) is InstanceStatus.WAITING_FOR_SIGNAL
    assert flaky.keys == [call.id, call.id], "every attempt carries Idempotency-Key: <task id>"

    async with engine.db.read() as session:
        attempts = (await TaskDetailsRepository(session).attempts_of([call.id]))[call.id]
    assert [a.number for a in attempts] == [1, 2]
    assert attempts[0].error and "500" in attempts[0].error and attempts[1].error is None
    recorded = repr([(a.request, a.response, a.error) for a in attempts])
    assert SECRET not in recorded and "***" in recorded


async def test_exhausted_attempts_fail_the_instance_and_an_admin_retry_resumes_it(
    engine: Engine, clock: ManualClock, flaky: Flaky, contexts: list[SystemTaskContext]
) -> None:
    flaky.failures = 2
    await engine.deploy(hook_workflow(flaky.url, attempts=2).build())
    instance = await engine.start("hook", {"amount": 1}, "alice")
    worker = make_worker(engine, contexts)
    await worker.run_until_idle()
    clock.advance(timedelta(seconds=10))
    await worker.run_until_idle()
    call = (await tasks_by_node(engine, instance.id))["call"]
    assert call.status is TaskStatus.FAILED and "500" in (call.error or "")
    assert await instance_status(engine, instance.id) is InstanceStatus.FAILED

    service = TaskService(engine)
    with pytest.raises(ForbiddenError):
        await service.retry(User("carol", "Carol", roles=frozenset({"manager"})), call.id)
    prepare = (await tasks_by_node(engine, instance.id))["prepare"]
    with pytest.raises(InvalidStateError):
        await service.retry(ADMIN, prepare.id)
    retried = await service.retry(ADMIN, call.id)
    assert retried.status is TaskStatus.PENDING
    assert await instance_status(engine, instance.id) is InstanceStatus.RUNNING

    await worker.run_until_idle()
    tasks = await tasks_by_node(engine, instance.id)
    assert tasks["call"].status is TaskStatus.COMPLETED and tasks["check"].status is TaskStatus.PENDING
    assert await instance_status(engine, instance.id) is InstanceStatus.WAITING_FOR_SIGNAL
    async with engine.db.read() as session:
        attempts = (await TaskDetailsRepository(session).attempts_of([call.id]))[call.id]
    assert [a.number for a in attempts] == [1, 2, 3]


async def test_a_delay_survives_a_restart(db: Database, clock: ManualClock, contexts: list[SystemTaskContext]) -> None:
    b = WorkflowBuilder("wait")
    b.system_task("pause", "delay", {"duration": "PT1H"})
    b.user_task("after", title="After the pause", assign_to_role="approver")
    b.edge("pause", "after")
    engine = Engine(db, default_registry(), clock=clock)
    await engine.deploy(b.build())
    instance = await engine.start("wait", {}, "alice")
    await make_worker(engine, contexts).run_until_idle()
    assert (await tasks_by_node(engine, instance.id))["pause"].status is TaskStatus.WAITING

    restarted = Engine(Database(db.url), default_registry(), clock=clock)  # nothing kept in memory
    try:
        worker = make_worker(restarted, contexts)
        clock.advance(timedelta(minutes=59))
        assert await worker.run_until_idle() == 0
        clock.advance(timedelta(minutes=1))
        assert await worker.run_until_idle() == 1
        tasks = await tasks_by_node(restarted, instance.id)
        assert tasks["pause"].status is TaskStatus.COMPLETED and tasks["after"].status is TaskStatus.PENDING
    finally:
        await restarted.db.dispose()


async def test_an_expired_lease_is_picked_up_by_another_worker(
    engine: Engine, clock: ManualClock, contexts: list[SystemTaskContext]
) -> None:
    b = WorkflowBuilder("echoes")
    b.system_task("say", "echo", {"output": "hello {{ name }}"}, store_as="said")
    await engine.deploy(b.build())
    instance = await engine.start("echoes", {"name": "world"}, "alice")
    async with engine.db.transaction() as session:  # a worker that claims and then dies
        [claimed] = await LeaseRepository(session).claim_runnable(clock.now(), "dead-worker", clock.now() + timedelta(
            seconds=30), 10)  # fmt: skip
    survivor = make_worker(engine, contexts)
    assert await survivor.run_once() == 0, "a live lease is respected"
    clock.advance(timedelta(seconds=31))
    assert await survivor.run_until_idle() == 1
    assert (await tasks_by_node(engine, instance.id))["say"].output == "hello world"
    assert claimed.status is TaskStatus.RUNNING
    assert await instance_status(engine, instance.id) is InstanceStatus.COMPLETED


async def test_due_tasks_expire_only_where_the_node_says_so(
    engine: Engine, clock: ManualClock, contexts: list[SystemTaskContext]
) -> None:
    b = WorkflowBuilder("deadlines")
    b.user_task("strict", title="Strict", assign_to_role="approver", due_in="PT1H", on_due="expire")
    b.user_task("lenient", title="Lenient", assign_to_role="approver", due_in="PT1H")
    b.user_task("start", title="Start", assign_to_role="approver")
    b.edge("start", "strict").edge("start", "lenient")
    b.start("start")
    await engine.deploy(b.build())
    instance = await engine.start("deadlines", {}, "alice")
    instance = await engine.send_signal(instance.id, "start", {}, "bob")
    worker = make_worker(engine, contexts)

    clock.advance(timedelta(minutes=59))
    assert await worker.expire_due() == 0
    clock.advance(timedelta(minutes=2))
    assert await worker.expire_due() == 1
    assert await worker.expire_due() == 0, "an expired task is not expired again"
    tasks = await tasks_by_node(engine, instance.id)
    assert tasks["strict"].status is TaskStatus.EXPIRED and tasks["lenient"].status is TaskStatus.PENDING
    async with engine.db.read() as session:
        events = await TaskEventRepository(session).for_task(tasks["strict"].id)
        metrics = await TaskRepository(session).step_metrics([tasks["strict"].step_instance_id])
    assert [e.kind for e in events][-1] is TaskEventKind.EXPIRED
    assert metrics[tasks["strict"].step_instance_id].blocked == 1


async def test_a_running_attempt_keeps_its_lease_and_a_dead_workers_attempt_is_recorded(
    engine: Engine, clock: ManualClock, contexts: list[SystemTaskContext]
) -> None:
    b = WorkflowBuilder("slow")
    b.system_task("say", "echo", {"output": "hi"}, store_as="said")
    await engine.deploy(b.build())
    instance = await engine.start("slow", {}, "alice")
    async with engine.db.transaction() as session:
        [task] = await LeaseRepository(session).claim_runnable(clock.now(), "w1", clock.now() + timedelta(seconds=5), 1)
        assert await LeaseRepository(session).extend_lease(task.id, "w1", clock.now() + timedelta(seconds=60))
        assert not await LeaseRepository(session).extend_lease(task.id, "w2", clock.now() + timedelta(seconds=60))
    clock.advance(timedelta(seconds=30))
    survivor = make_worker(engine, contexts)
    assert await survivor.run_once() == 0, "the renewed lease still holds"
    clock.advance(timedelta(seconds=31))
    assert await survivor.run_until_idle() == 1
    async with engine.db.read() as session:
        attempts = (await TaskDetailsRepository(session).attempts_of([task.id]))[task.id]
    assert [a.number for a in attempts] == [1, 2]
    assert attempts[0].error is not None and "abandoned: worker w1" in attempts[0].error
    assert attempts[1].error is None
    assert await instance_status(engine, instance.id) is InstanceStatus.COMPLETED
