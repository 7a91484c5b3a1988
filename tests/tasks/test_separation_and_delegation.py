"""Separation of duties and delegation through the task service on both databases: ``excludes`` refuse
claim, assignment and work to whoever they name, admins included; delegate and resolve; and an escalation
that may not reassign past those rules. Approval policies themselves: test_policies.py."""

from __future__ import annotations

from datetime import timedelta

from engine.clock import ManualClock
from engine.definitions.builder import WorkflowBuilder, reassign
from engine.errors import (
    ValidationError,
)
from engine.state import TaskEventKind, TaskStatus, User
from engine.storage.database import Database
from engine.storage.task_events import TaskEventRepository
from engine.tasks import policies
from engine.tasks.service import TaskService
from engine.transitions.engine import Engine
from engine.workers.builtin import BUILTIN_EXECUTORS
from engine.workers.executor import SystemTaskContext
from engine.workers.worker import Worker
from tests.tasks.policy_support import (
    FORBIDDEN,
    INVALID,
    SOD,
    TWO_OF_ROLE,
    add_users,
    attempt,
    open_task,
    snapshot,
)


async def test_excludes_refuse_claim_assign_and_work_even_for_admins(
    db: Database, engine: Engine, clock: ManualClock
) -> None:
    users = await add_users(db, clock)
    service = TaskService(engine)
    b = WorkflowBuilder("four_eyes")
    b.user_task("prepare", assign_to_role="approver", store_as="prepared")
    b.user_task("check", schema_type="userTask.approval", assign_to_role="approver",
                excludes=["starter", "completedBy:prepare"])  # fmt: skip
    b.user_task("sign", schema_type="userTask.approval", assign_to_role="approver", excludes=["previousApprovers"])
    b.edge("prepare", "check").edge("check", "sign")
    await engine.deploy(b.to_json())
    instance = await engine.start("four_eyes", {}, "dana")
    prepare = await open_task(db, instance.id, "prepare")
    await service.submit(users["bob"], prepare.id, {}, None)
    check = await open_task(db, instance.id, "check")
    assert (
        policies.excluded_by(check, "dana") == "starter" and policies.excluded_by(check, "bob") == "completedBy:prepare"
    )
    before = await snapshot(db)
    for work in (
        service.claim(users["dana"], check.id),  # an admin, and the starter
        service.claim(users["bob"], check.id),  # completed ``prepare``
        service.assign(users["dana"], check.id, "bob"),
        service.decide(users["bob"], check.id, "approved", None, None, None),
        service.save_progress(users["dana"], check.id, {}, None),
    ):
        assert await attempt(work) == SOD
    assert await snapshot(db) == before, "a refusal changes nothing"
    assert not policies.decision_eligibility(users["dana"], check).eligible
    await service.decide(users["carol"], check.id, "approved", None, None, None)
    sign = await open_task(db, instance.id, "sign")
    assert policies.excluded_by(sign, "carol") == "previousApprovers"
    assert await attempt(service.decide(users["carol"], sign.id, "approved", None, None, None)) == SOD
    await service.decide(users["alice"], sign.id, "approved", None, None, None)


async def test_delegation(db: Database, engine: Engine, clock: ManualClock) -> None:
    users = await add_users(db, clock)
    service = TaskService(engine)
    b = WorkflowBuilder("delegated")
    b.user_task("decision", schema_type="userTask.approval", assign_to_role="approver", excludes=["starter"],
                store_as="result", form=[{"key": "note", "type": "text", "label": "Note"}])  # fmt: skip
    await engine.deploy(b.to_json())
    instance = await engine.start("delegated", {}, "alice")
    task = await open_task(db, instance.id)
    await service.claim(users["bob"], task.id)
    before = await snapshot(db)
    assert await attempt(service.delegate(users["carol"], task.id, "dan")) == FORBIDDEN  # not the assignee
    assert await attempt(service.delegate(users["bob"], task.id, "alice")) == SOD  # the starter
    assert await attempt(service.delegate(users["bob"], task.id, "nobody")) == ValidationError.code
    assert await attempt(service.resolve(users["bob"], task.id, None)) == INVALID  # not delegated
    assert await snapshot(db) == before
    delegated = await service.delegate(users["bob"], task.id, "frank")
    assert delegated.delegated_to == "frank" and delegated.assigned_user_id == "bob"
    # The delegate works on it but does not decide; the owner waits for it to come back.
    assert await attempt(service.decide(users["frank"], task.id, "approved", None, None, None)) == FORBIDDEN
    assert await attempt(service.decide(users["bob"], task.id, "approved", None, None, None)) == INVALID
    assert await attempt(service.claim(users["dana"], task.id)) == INVALID
    assert policies.decision_eligibility(users["frank"], delegated).reason is not None
    await service.save_progress(users["frank"], task.id, {"note": "looks fine"}, None)
    assert await attempt(service.resolve(users["bob"], task.id, None)) == FORBIDDEN  # only the delegate
    resolved = await service.resolve(users["frank"], task.id, {"note": "checked the invoice"})
    assert resolved.delegated_to is None and resolved.draft == {"note": "checked the invoice"}
    done = await service.decide(users["bob"], task.id, "approved", None, {"note": "ok"}, None)
    assert done.status is TaskStatus.COMPLETED and done.output["decidedBy"] == "bob"
    async with db.read() as session:
        events = await TaskEventRepository(session).for_task(task.id)
    actors = {e.kind: e.actor_id for e in events}
    assert actors[TaskEventKind.DELEGATED] == "bob"
    assert actors[TaskEventKind.PROGRESS_SAVED] == "frank" and actors[TaskEventKind.RESOLVED] == "frank"
    assert actors[TaskEventKind.COMPLETED] == "bob"


async def test_an_escalation_does_not_reassign_past_the_rules(db: Database, engine: Engine, clock: ManualClock) -> None:
    """A ladder's ``reassign`` is refused (recorded, the task left as it was) where the API's would be:
    to a user separation of duties excludes, or on a task an approval policy's approvers decide."""
    await add_users(db, clock)
    b = WorkflowBuilder("escalated")
    b.user_task("check", assign_to_role="approver", excludes=["starter"],
                escalation=[reassign("PT1H", user="alice")])  # fmt: skip
    b.user_task("vote", schema_type="userTask.approval", approval=TWO_OF_ROLE,
                escalation=[reassign("PT1H", role="manager")])  # fmt: skip
    b.edge("check", "vote")
    await engine.deploy(b.to_json())
    instance = await engine.start("escalated", {}, "alice")
    check = await open_task(db, instance.id, "check")
    clock.advance(timedelta(hours=1))
    async with SystemTaskContext(clock=clock) as context:
        worker = Worker(engine, {e.type: e for e in BUILTIN_EXECUTORS}, context)
        await worker.run_until_idle()
        bob = User("bob", "Bob", roles=frozenset({"approver"}))
        await TaskService(engine).submit(bob, check.id, {}, None)
        vote = await open_task(db, instance.id, "vote")
        clock.advance(timedelta(hours=1))
        await worker.run_until_idle()
    check = await open_task(db, instance.id, "check")
    assert check.completed_by == "bob"
    vote = await open_task(db, instance.id, "vote")
    assert vote.assigned_role == "approver" and vote.status.is_open
    async with db.read() as session:
        events = await TaskEventRepository(session).for_instance(instance.id)
    errors = [e.data.get("error") for e in events if e.kind is TaskEventKind.ESCALATED]
    assert errors == ["separation of duties excludes alice (starter); the task was left as it was",
                      "a task with an approval policy is decided by its approvers, not reassigned; the task was left "
                      "as it was"]  # fmt: skip
