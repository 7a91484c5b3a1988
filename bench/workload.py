"""The approval workload: start → user task → signal → next user task → signal → end.

Three committed transitions per instance (start, two signals), driven in-process by concurrent
asyncio drivers sharing one engine, exactly as the server's requests share one.

The quorum workload is the same workflow with the approval decided by a policy: two of
the role's three approvers, the starter excluded, each deciding through the task service as the API
does (four committed transitions: start, two decisions, the archive signal).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.catalog import default_registry
from engine.definitions.builder import WorkflowBuilder
from engine.idempotency import IdempotentRequest
from engine.state import InstanceStatus, User, new_id
from engine.storage.database import Database
from engine.storage.directory import DirectoryRepository
from engine.tasks.service import TaskService
from engine.transitions.engine import Engine

DEFINITION_KEY = "bench_approval"
QUORUM_KEY = "bench_quorum"
TRANSITIONS_PER_INSTANCE = 3
QUORUM_TRANSITIONS_PER_INSTANCE = 4
QUORUM_APPROVERS = ("bob", "dave", "erin")
START_INPUT = {"entityType": "Invoice", "entityName": "INV-2026-0001", "amount": 1250.5, "currency": "EUR"}
DECISION = {"decision": "approved", "comment": "within budget"}
ARCHIVE = {"box": 4, "shelf": "B"}


def approval_definition(quorum: bool = False) -> dict[str, Any]:
    """The plain approval; ``quorum``: decided by two of the role's three approvers, never the starter."""
    b = WorkflowBuilder(QUORUM_KEY if quorum else DEFINITION_KEY, title="Bench approval")
    who: dict[str, Any] = {"assign_to_role": "approver"}
    if quorum:
        who = {"approval": {"required": 2, "of": {"role": "approver"}}, "excludes": ["starter"]}
    with b.milestone("review", "Review"):
        with b.step("decide", "Decide"):
            b.user_task(
                "approvalDecision",
                name="Approval Decision",
                signal="approval_signal",
                schema_type="userTask.approval",
                title="Approve {{ entityType }}: {{ entityName }}",
                description="Review {{ entityName }} for {{ startedBy.id }}",
                **who,
                store_as="approvalResult",
                priority="high",
            )
        with b.step("wrap_up", "Wrap up"):
            b.user_task("archive", title="Archive {{ entityName }}", assign_to_role="clerk", store_as="archived")
    b.edge("approvalDecision", "archive")
    return b.to_json()


async def prepare_engine(url: str) -> Engine:
    """An engine on ``url`` with the workload's users and definition deployed."""
    engine = Engine(Database(url), default_registry())
    async with engine.db.transaction() as session:
        directory = DirectoryRepository(session)
        now = engine.clock.now()
        await directory.save_user("alice", "Alice Adams", "alice@example.com", ["requester"], [], now)
        for approver in QUORUM_APPROVERS:
            await directory.save_user(approver, approver.title(), f"{approver}@example.com", ["approver"], [], now)
        await directory.save_user("carol", "Carol Clark", "carol@example.com", ["clerk"], [], now)
    await engine.deploy(approval_definition(), "alice")
    await engine.deploy(approval_definition(quorum=True), "alice")
    return engine


async def one_quorum_instance(engine: Engine, tasks: TaskService, approvers: Sequence[User]) -> None:
    instance = await engine.start(QUORUM_KEY, START_INPUT, "alice")
    [token] = instance.tokens
    assert token.task_id is not None
    for approver in approvers[:2]:
        await tasks.decide(approver, token.task_id, "approved", "within budget", None, None)
    instance = await engine.send_signal(instance.id, "archive", ARCHIVE, "carol")
    if instance.status is not InstanceStatus.COMPLETED:
        raise RuntimeError(f"instance {instance.id} ended {instance.status}, not COMPLETED")


async def run_quorum(engine: Engine, instances: int, drivers: int) -> Run:
    """The quorum workload, timed like :func:`run_stepwise`."""
    approvers = [user for user in [await engine.user(user_id) for user_id in QUORUM_APPROVERS] if user is not None]
    tasks = TaskService(engine)
    run = await drive(lambda: one_quorum_instance(engine, tasks, approvers), instances, drivers, engine.sequencer.idle)
    return Run(run.drivers, run.instances, run.seconds, QUORUM_TRANSITIONS_PER_INSTANCE)


async def one_instance(engine: Engine, keyed: bool = False) -> None:
    """``keyed``: each transition guarded by an idempotency key of its own, as a client sending one
    with every mutation makes them (engine.idempotency)."""

    def key(user: str, operation: str, asked: Any) -> IdempotentRequest | None:
        return IdempotentRequest.of(user, new_id(), operation, asked) if keyed else None

    keys = engine.idempotency
    instance = await keys.run(
        key("alice", "startWorkflow", START_INPUT), lambda: engine.start(DEFINITION_KEY, START_INPUT, "alice")
    )
    instance = await keys.run(
        key("bob", "sendSignal", DECISION),
        lambda: engine.send_signal(instance.id, "approvalDecision", DECISION, "bob"),
    )
    instance = await keys.run(
        key("carol", "sendSignal", ARCHIVE), lambda: engine.send_signal(instance.id, "archive", ARCHIVE, "carol")
    )
    if instance.status is not InstanceStatus.COMPLETED:
        raise RuntimeError(f"instance {instance.id} ended {instance.status}, not COMPLETED")


@dataclass(frozen=True)
class Run:
    drivers: int
    instances: int
    seconds: float
    transitions_per_instance: int = TRANSITIONS_PER_INSTANCE

    @property
    def instances_per_second(self) -> float:
        return self.instances / self.seconds

    @property
    def transitions_per_second(self) -> float:
        return self.instances * self.transitions_per_instance / self.seconds


async def drive(work: Any, instances: int, drivers: int, settle: Any = None) -> Run:
    """Run ``await work()`` ``instances`` times from ``drivers`` concurrent drivers, then ``await
    settle()`` if given; time the whole."""
    remaining = instances

    async def driver() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await work()

    started = time.perf_counter()
    await asyncio.gather(*(driver() for _ in range(drivers)))
    if settle is not None:
        await settle()
    return Run(drivers=drivers, instances=instances, seconds=time.perf_counter() - started)


async def run_stepwise(engine: Engine, instances: int, drivers: int, keyed: bool = False) -> Run:
    """Timed until every event is numbered too (engine.sequencer numbers them after the commits)."""
    return await drive(lambda: one_instance(engine, keyed), instances, drivers, engine.sequencer.idle)
