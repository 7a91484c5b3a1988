"""Approval policies, separation of duties and delegation, through the task service on both
databases: table-driven quorum cases, chains, blocked tasks, delegation, and the race for the last
approval between two engines (two connection pools) on PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.catalog import default_registry
from engine.clock import ManualClock
from engine.definitions.builder import WorkflowBuilder, reassign
from engine.errors import (
    ForbiddenError,
    InvalidStateError,
    SeparationOfDutiesError,
    StepwiseError,
    ValidationError,
)
from engine.state import InstanceStatus, Task, TaskEventKind, TaskStatus, User
from engine.storage.database import Database
from engine.storage.directory import DirectoryRepository
from engine.storage.instances import InstanceRepository
from engine.storage.models import task_events
from engine.storage.task_events import TaskEventRepository
from engine.storage.tasks import TaskRepository
from engine.tasks import policies
from engine.tasks.service import TaskService
from engine.transitions.engine import Engine
from engine.workers.builtin import BUILTIN_EXECUTORS
from engine.workers.executor import SystemTaskContext
from engine.workers.worker import Worker

USERS = {
    "alice": ({"requester", "approver"}, set()),
    "bob": ({"approver"}, set()),
    "carol": ({"approver", "manager"}, set()),
    "dan": ({"approver"}, set()),
    "dana": ({"admin", "approver"}, set()),
    "erin": (set(), {"finance"}),
    "frank": ({"clerk"}, set()),
}
OK, SOD, FORBIDDEN, INVALID, HIDDEN = "ok", "SEPARATION_OF_DUTIES", "FORBIDDEN", "INVALID_STATE", "NOT_FOUND"


async def add_users(db: Database, clock: ManualClock) -> dict[str, User]:
    async with db.transaction() as session:
        directory = DirectoryRepository(session)
        for user_id, (roles, groups) in USERS.items():
            await directory.save_user(user_id, user_id.title(), f"{user_id}@example.com", roles, groups, clock.now())
        return {user.id: user for user in await directory.list_users()}


def quorum_definition(key: str, approval: dict[str, Any], excludes: list[str] | None = None) -> dict[str, Any]:
    b = WorkflowBuilder(key)
    b.user_task("decision", schema_type="userTask.approval", approval=approval, excludes=excludes,
                store_as="result")  # fmt: skip
    b.user_task("archive", assign_to_role="clerk", store_as="archived")
    b.edge("decision", "archive")
    return b.to_json()


async def open_task(db: Database, instance_id: str, node_id: str = "decision") -> Task:
    async with db.read() as session:
        tasks = await TaskRepository(session).find_by_instance(instance_id)
    return next(t for t in tasks if t.node_id == node_id)


async def attempt(work: Any) -> str:
    try:
        await work
    except SeparationOfDutiesError:
        return SOD
    except StepwiseError as exc:
        return exc.code
    return OK


@dataclass(frozen=True)
class Case:
    name: str
    approval: dict[str, Any]
    steps: tuple[tuple[str, str, str], ...]
    """(user, "approved"/"rejected", expected: ok or an error code)"""
    outcome: str | None
    """The settled outcome, or None if the task is still open after the steps."""
    starter: str = "alice"
    counted: int | None = None


TWO_OF_ROLE = {"required": 2, "of": {"role": "approver"}}
CASES = (
    Case("quorum reached", TWO_OF_ROLE, (("bob", "approved", OK), ("carol", "approved", OK)), "approved"),
    Case("one rejection settles under rejectWhen any", TWO_OF_ROLE, (("bob", "rejected", OK),), "rejected"),
    Case(
        "quorum impossible: too many rejections",
        {**TWO_OF_ROLE, "of": {"users": ["bob", "carol", "dan"]}, "rejectWhen": 3},
        (("bob", "rejected", OK), ("carol", "rejected", OK)),
        "rejected",
    ),  # fmt: skip
    Case(
        "majority of rejections",
        {**TWO_OF_ROLE, "of": {"users": ["bob", "carol", "dan"]}, "rejectWhen": "majority"},
        (("bob", "rejected", OK), ("carol", "approved", OK), ("dan", "rejected", OK)),
        "rejected",
    ),  # fmt: skip
    Case(
        "the same user twice counts once",
        TWO_OF_ROLE,
        (("bob", "approved", OK), ("bob", "approved", INVALID)),
        None,
        counted=1,
    ),  # fmt: skip
    Case("the starter is refused", TWO_OF_ROLE, (("alice", "approved", SOD),), None, counted=0),
    Case(
        "an admin is refused by separation of duties",
        TWO_OF_ROLE,
        (("dana", "approved", SOD),),
        None,
        starter="dana",
        counted=0,
    ),  # fmt: skip
    Case("a non-approver does not even see it", TWO_OF_ROLE, (("frank", "approved", HIDDEN),), None, counted=0),
    Case(
        "a decision after the outcome is settled",
        TWO_OF_ROLE,
        (("bob", "approved", OK), ("carol", "approved", OK), ("dan", "approved", INVALID)),
        "approved",
    ),  # fmt: skip
    Case(
        "named users only",
        {"required": 1, "of": {"users": ["dan"]}},
        (("bob", "approved", HIDDEN), ("dan", "approved", OK)),
        "approved",
    ),  # fmt: skip
    Case(
        "a template resolving to user ids",
        {"required": 2, "of": {"users": "{{ reviewers }}"}},
        (("dan", "approved", OK), ("carol", "approved", FORBIDDEN), ("bob", "approved", OK)),
        "approved",
    ),  # fmt: skip
)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_quorum(case: Case, db: Database, engine: Engine, clock: ManualClock) -> None:
    users = await add_users(db, clock)
    service = TaskService(engine)
    await engine.deploy(quorum_definition("quorum", case.approval, ["starter"]))
    instance = await engine.start("quorum", {"reviewers": ["dan", "bob"]}, case.starter)
    task = await open_task(db, instance.id)
    for user_id, decision, expected in case.steps:
        before = await snapshot(db)
        assert await attempt(service.decide(users[user_id], task.id, decision, f"{user_id} says", None, None)) == (
            expected
        ), (user_id, decision)
        if expected != OK:
            assert await snapshot(db) == before, f"{user_id}'s refused decision changed nothing"
    task = await open_task(db, instance.id)
    assert policies.outcome(task) == case.outcome
    if case.outcome is None:
        assert task.status.is_open
        assert len(policies.decisions(task)) == case.counted
        return
    async with db.read() as session:
        data = (await engine_instance(session, instance.id)).data
    result = data["result"]
    assert result["outcome"] == result["decision"] == case.outcome and result["decidedBy"] == "policy"
    decided = [(d["by"], d["decision"]) for d in result["decisions"]]
    assert decided == [(user, decision) for user, decision, expected in case.steps if expected == OK]
    assert all(set(d) >= {"by", "decision", "comment", "at"} for d in result["decisions"])
    assert task.status is TaskStatus.COMPLETED


async def engine_instance(session: Any, instance_id: str) -> Any:
    found = await InstanceRepository(session).get(instance_id)
    assert found is not None
    return found


async def test_chain_levels_in_order_and_a_rejection_ends_it(db: Database, engine: Engine, clock: ManualClock) -> None:
    users = await add_users(db, clock)
    service = TaskService(engine)
    chain = {"chain": [{"role": "manager"}, {"group": "finance"}]}
    await engine.deploy(quorum_definition("chain", chain, ["starter"]))
    approved = await engine.start("chain", {}, "alice")
    task = await open_task(db, approved.id)
    assert task.assigned_role == "manager" and task.assigned_group is None
    # Level 2's approvers see the task once it reaches them.
    assert await attempt(service.decide(users["erin"], task.id, "approved", None, None, None)) == HIDDEN
    await service.decide(users["carol"], task.id, "approved", None, None, None)
    task = await open_task(db, approved.id)
    assert task.status.is_open and policies.current_level(task) == 1
    assert task.assigned_group == "finance" and task.assigned_role is None
    assert await attempt(service.decide(users["carol"], task.id, "approved", None, None, None)) == FORBIDDEN
    await service.decide(users["erin"], task.id, "approved", "paid", None, None)
    task = await open_task(db, approved.id)
    assert task.output["outcome"] == "approved"
    assert [(d["by"], d["level"]) for d in task.output["decisions"]] == [("carol", 0), ("erin", 1)]

    rejected = await engine.start("chain", {}, "alice")
    task = await open_task(db, rejected.id)
    await service.decide(users["carol"], task.id, "rejected", "no budget", None, None)
    task = await open_task(db, rejected.id)
    assert task.status is TaskStatus.COMPLETED and task.output["outcome"] == "rejected"
    assert await attempt(service.decide(users["dana"], task.id, "approved", None, None, None)) == INVALID


async def test_no_one_eligible_flags_the_task_blocked(db: Database, engine: Engine, clock: ManualClock) -> None:
    users = await add_users(db, clock)
    await engine.deploy(quorum_definition("blocked", {"required": 1, "of": {"group": "finance"}}, ["starter"]))
    instance = await engine.start("blocked", {}, "erin")  # the finance group's only member
    task = await open_task(db, instance.id)
    assert task.blocked_reason is not None and "erin (starter)" in task.blocked_reason
    async with db.read() as session:
        metrics = await TaskRepository(session).step_metrics([task.step_instance_id])
    assert metrics[task.step_instance_id].blocked == 1
    assert policies.decision_eligibility(users["erin"], task).reason == (
        "separation of duties: excluded as the workflow's starter"
    )

    form = WorkflowBuilder("form_blocked")
    form.user_task("review", assign_to_user="{{ startedBy.id }}", excludes=["starter"])
    await engine.deploy(form.to_json())
    instance = await engine.start("form_blocked", {}, "bob")
    task = await open_task(db, instance.id, "review")
    assert task.blocked_reason is not None
    service = TaskService(engine)
    assert await attempt(service.assign(users["dana"], task.id, "bob")) == SOD
    assigned = await service.assign(users["dana"], task.id, "carol")
    assert assigned.blocked_reason is None and assigned.assigned_user_id == "carol"


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


async def snapshot(db: Database) -> list[Any]:
    """Every task and event as stored, to compare before and after a refusal."""
    async with db.read() as session:
        tasks = await TaskRepository(session).find_by_status(TaskStatus.PENDING)
        tasks += await TaskRepository(session).find_by_status(TaskStatus.CLAIMED)
        tasks += await TaskRepository(session).find_by_status(TaskStatus.COMPLETED)
        events = await session.scalar(select(func.count()).select_from(task_events))
    return [sorted((t.id, t.revision, t.status, t.assigned_user_id, t.delegated_to) for t in tasks), events]


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


async def test_a_policy_task_is_not_claimed_assigned_or_delegated(
    db: Database, engine: Engine, clock: ManualClock
) -> None:
    users = await add_users(db, clock)
    service = TaskService(engine)
    await engine.deploy(quorum_definition("quorum", TWO_OF_ROLE, ["starter"]))
    instance = await engine.start("quorum", {}, "alice")
    task = await open_task(db, instance.id)
    assert await attempt(service.claim(users["bob"], task.id)) == INVALID
    assert await attempt(service.assign(users["dana"], task.id, "bob")) == INVALID
    assert await attempt(service.delegate(users["bob"], task.id, "dan")) == INVALID


@pytest.mark.postgres_only
async def test_two_connections_race_for_the_last_approval(db: Database, clock: ManualClock) -> None:
    """bob has approved; carol and dan decide at once on two engines (two pools, two connections):
    exactly one settles the outcome, the other is told it is settled, and both decisions never count."""
    users = await add_users(db, clock)
    first = Engine(db, default_registry(), clock=clock)
    other_db = Database(db.url)
    second = Engine(other_db, default_registry(), clock=clock)
    try:
        await first.deploy(quorum_definition("race", TWO_OF_ROLE, ["starter"]))
        for _ in range(5):
            instance = await first.start("race", {}, "alice")
            task = await open_task(db, instance.id)
            await TaskService(first).decide(users["bob"], task.id, "approved", None, None, None)
            results = await asyncio.gather(
                attempt(TaskService(first).decide(users["carol"], task.id, "approved", None, None, None)),
                attempt(TaskService(second).decide(users["dan"], task.id, "approved", None, None, None)),
            )
            assert sorted(results) == [INVALID, OK], results
            task = await open_task(db, instance.id)
            assert task.status is TaskStatus.COMPLETED and len(task.output["decisions"]) == 2
            async with db.read() as session:
                tasks = await TaskRepository(session).find_by_instance(instance.id)
                stored = await engine_instance(session, instance.id)
            assert [t.node_id for t in tasks].count("archive") == 1
            assert stored.status is InstanceStatus.WAITING_FOR_SIGNAL
    finally:
        await other_db.dispose()


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


async def test_forbidden_and_invalid_state_are_the_engine_errors(db: Database, engine: Engine) -> None:
    assert issubclass(SeparationOfDutiesError, ForbiddenError)
    assert SeparationOfDutiesError("x", "starter").code == SOD
    assert InvalidStateError.code == INVALID
