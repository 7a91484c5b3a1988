"""Approval policies through the task service on both databases: table-driven quorum cases, chains,
blocked tasks, a policy's task that nobody claims, and the race for the last approval between two engines
(two connection pools) on PostgreSQL. Separation of duties and delegation: test_separation_and_delegation.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from engine.catalog import default_registry
from engine.clock import ManualClock
from engine.definitions.builder import WorkflowBuilder
from engine.errors import (
    ForbiddenError,
    InvalidStateError,
    SeparationOfDutiesError,
)
from engine.state import InstanceStatus, TaskStatus
from engine.storage.database import Database
from engine.storage.directory import DirectoryRepository
from engine.storage.instances import InstanceRepository
from engine.storage.tasks import TaskRepository
from engine.tasks import policies
from engine.tasks.service import TaskService
from engine.transitions.engine import Engine
from tests.tasks.policy_support import (
    FORBIDDEN,
    HIDDEN,
    INVALID,
    OK,
    SOD,
    TWO_OF_ROLE,
    add_users,
    attempt,
    open_task,
    quorum_definition,
    snapshot,
)
from tests.transitions.test_transition_costs import statements


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


@pytest.mark.postgres_only
@pytest.mark.fast_paths  # the members a process remembers are the subject here
async def test_remembered_members_count_as_a_read_would(db: Database, engine: Engine, clock: ManualClock) -> None:
    """A quorum task's eligible count comes from the role's members as the process remembers them,
    without a read; when the role changes behind its back (another process, an admin), the start's last
    statement finds them changed, writes nothing, and the start runs again and counts the role as it is."""
    await add_users(db, clock)
    await engine.deploy(quorum_definition("quorum", TWO_OF_ROLE, ["starter"]))

    async def eligible_at_start() -> tuple[int | None, str | None]:
        instance = await engine.start("quorum", {}, "alice")
        task = await open_task(db, instance.id)
        return policies.levels(task)[0].eligible, task.blocked_reason

    assert await eligible_at_start() == (4, None)  # bob, carol, dan, dana: read, then remembered
    assert engine.members.get("role", "approver") == ("alice", "bob", "carol", "dan", "dana")
    async with statements(db) as sent:
        assert await eligible_at_start() == (4, None)
    assert not any("user_roles" in s and not s.lstrip().startswith("WITH") for s in sent.statements)
    async with db.transaction() as session:  # the role grows, then shrinks below the quorum
        await DirectoryRepository(session).save_user("gus", "Gus", "gus@example.com", {"approver"}, set(), clock.now())
    assert await eligible_at_start() == (5, None)
    async with db.transaction() as session:
        directory = DirectoryRepository(session)
        for user_id in ("bob", "carol", "dan", "gus"):
            await directory.save_user(user_id, user_id.title(), f"{user_id}@example.com", set(), set(), clock.now())
    eligible, blocked = await eligible_at_start()
    assert eligible == 1 and blocked is not None and "leaves 1 eligible user(s) for 2 approvals" in blocked
    assert engine.members.get("role", "approver") == ("alice", "dana")


async def test_forbidden_and_invalid_state_are_the_engine_errors(db: Database, engine: Engine) -> None:
    assert issubclass(SeparationOfDutiesError, ForbiddenError)
    assert SeparationOfDutiesError("x", "starter").code == SOD
    assert InvalidStateError.code == INVALID
