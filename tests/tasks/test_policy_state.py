"""A task's approval-policy state is the engine's typed, frozen value (engine.tasks.policy_state), on
both databases: what a task read back holds, what a decision makes of it, and the JSON it is stored as."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from sqlalchemy import select

from engine.clock import ManualClock
from engine.definitions.approval import Approvers
from engine.storage.database import Database
from engine.storage.models import tasks
from engine.tasks.policy_state import PolicyDecision, PolicyLevel, TaskPolicy
from engine.tasks.service import TaskService
from engine.transitions.engine import Engine
from tests.tasks.policy_support import add_users, open_task, quorum_definition

STORED = {
    "excluded": {"alice": "starter"}, "excludes": ["starter"],
    "levels": [{"of": {"role": "approver"}, "required": 2, "rejectWhen": "any", "eligible": 3},
               {"of": {"users": ["erin"]}, "required": 1, "rejectWhen": 1}],
    "chain": True, "level": 0,
    "decisions": [{"by": "bob", "decision": "approved", "comment": None, "at": "2026-01-05T09:00:00+00:00",
                   "level": 0, "values": {"amount": 5}}],
}  # fmt: skip


def test_the_stored_json_reads_as_frozen_values_and_writes_back_the_same() -> None:
    policy = TaskPolicy.from_json(STORED)
    assert policy.levels == (
        PolicyLevel(Approvers(role="approver"), 2, "any", 3),
        PolicyLevel(Approvers(users=("erin",)), 1, 1),
    )
    assert policy.decisions == (PolicyDecision("bob", "approved", None, "2026-01-05T09:00:00+00:00", 0, {"amount": 5}),)
    assert policy.excluded == {"alice": "starter"} and policy.current == policy.levels[0]
    assert policy.to_json() == STORED
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.level = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        policy.excluded["bob"] = "starter"  # type: ignore[index]
    only_excludes = {"excluded": {}, "excludes": ["starter"]}
    assert TaskPolicy.from_json(only_excludes).levels is None and TaskPolicy.from_json(only_excludes).to_json() == {
        **only_excludes
    }


async def stored_policy(db: Database, task_id: str) -> Any:
    async with db.read() as session:
        return await session.scalar(select(tasks.c.policy).where(tasks.c.id == task_id))


async def test_a_decision_makes_a_new_policy_and_the_task_reads_back_typed(
    db: Database, engine: Engine, clock: ManualClock
) -> None:
    users = await add_users(db, clock)
    await engine.deploy(quorum_definition("typed", {"required": 2, "of": {"role": "approver"}}, ["starter"]))
    instance = await engine.start("typed", {}, "alice")
    before = await open_task(db, instance.id)
    assert isinstance(before.policy, TaskPolicy) and before.policy.decisions == ()
    assert before.policy.excluded == {"alice": "starter"} and before.policy.current.eligible == 4
    after = await TaskService(engine).decide(users["bob"], before.id, "approved", "fine", None, None)
    assert before.policy.decisions == (), "the policy the task was read with is unchanged"
    assert after.policy is not None and [(d.by, d.decision, d.comment) for d in after.policy.decisions] == [
        ("bob", "approved", "fine")
    ]
    read_back = await open_task(db, instance.id)
    assert read_back.policy == after.policy
    assert await stored_policy(db, before.id) == after.policy.to_json()
