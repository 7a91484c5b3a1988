"""``userTask.actionApproval`` inside a workflow, through the task service on both databases:
the proposal from the instance data, the outcome under ``storeAs`` driving the next edge, approval
policies, and what deploy refuses."""

from __future__ import annotations

from typing import Any

import pytest

from engine.clock import ManualClock
from engine.definitions.builder import WorkflowBuilder
from engine.errors import DefinitionError, InvalidStateError, ServiceAccountError
from engine.state import InstanceStatus
from engine.storage.database import Database
from engine.storage.instances import InstanceRepository
from engine.tasks.action_approvals import ActionDecision
from engine.tasks.service import TaskService
from engine.transitions.engine import Engine
from tests.tasks.policy_support import add_users, open_task

SCHEMA = {"type": "object", "properties": {"amount": {"type": "number", "maximum": 500}}, "required": ["amount"]}


def refund_flow(key: str = "refund_flow", **options: Any) -> dict[str, Any]:
    b = WorkflowBuilder(key)
    b.action_approval("decision", action="refund", summary="Refund {{ order.id }}", arguments_from="order.refund",
                      arguments_schema=SCHEMA, store_as="approval", **options)  # fmt: skip
    b.user_task("pay", assign_to_role="clerk")
    b.user_task("tell", assign_to_role="clerk")
    b.edge("decision", "pay", when="approval.decision == 'approved' || approval.decision == 'edited'")
    b.edge("decision", "tell", when="approval.decision == 'rejected' || approval.decision == 'responded'")
    return b.to_json()


async def test_the_outcome_is_stored_and_drives_the_next_edge(engine: Engine, db: Database, clock: ManualClock) -> None:
    users = await add_users(db, clock)
    await engine.deploy(refund_flow(assign_to_role="approver"), "dana")
    instance = await engine.start("refund_flow", {"order": {"id": "A-9", "refund": {"amount": 40}}}, "alice")
    task = await open_task(db, instance.id)
    assert task.type == "ACTION_APPROVAL" and task.description == "Refund A-9"
    assert task.input["arguments"] == {"amount": 40} and task.input["argumentsSchema"] == SCHEMA
    assert task.input["requestedBy"] == "alice"
    service = TaskService(engine)
    await service.decide_action(users["bob"], task.id, ActionDecision.EDITED, {"amount": 30}, "less")
    async with db.read() as session:
        after = await InstanceRepository(session).get(instance.id)
    assert after is not None
    assert after.data["approval"]["decision"] == "edited" and after.data["approval"]["arguments"] == {"amount": 30}
    assert (await open_task(db, instance.id, "pay")).status.is_open


async def test_under_a_policy_each_approver_approves_the_action_as_proposed(
    engine: Engine, db: Database, clock: ManualClock
) -> None:
    users = await add_users(db, clock)
    await engine.deploy(refund_flow("refund_quorum", approval={"required": 2, "of": {"role": "approver"}}), "dana")
    instance = await engine.start("refund_quorum", {"order": {"id": "A-1", "refund": {"amount": 10}}}, "alice")
    task = await open_task(db, instance.id)
    service = TaskService(engine)
    with pytest.raises(InvalidStateError):
        await service.decide_action(users["bob"], task.id, ActionDecision.EDITED, {"amount": 5}, None)
    await service.decide_action(users["bob"], task.id, ActionDecision.APPROVED, None, None)
    await service.decide_action(users["carol"], task.id, ActionDecision.APPROVED, None, "fine")
    async with db.read() as session:
        after = await InstanceRepository(session).get(instance.id)
    assert after is not None and after.status is InstanceStatus.WAITING_FOR_SIGNAL  # at "pay"
    outcome = after.data["approval"]
    assert outcome["decision"] == "approved" and outcome["arguments"] == {"amount": 10}
    assert [d["by"] for d in outcome["decisions"]] == ["bob", "carol"]


async def test_approve_reject_and_submit_do_not_complete_an_action_approval(
    engine: Engine, db: Database, clock: ManualClock
) -> None:
    users = await add_users(db, clock)
    await engine.deploy(refund_flow(assign_to_role="approver"), "dana")
    instance = await engine.start("refund_flow", {"order": {"id": "A-2", "refund": {"amount": 1}}}, "alice")
    task = await open_task(db, instance.id)
    service = TaskService(engine)
    with pytest.raises(InvalidStateError):
        await service.decide(users["bob"], task.id, "approved", None, None, None)
    with pytest.raises(InvalidStateError):
        await service.submit(users["bob"], task.id, {}, None)
    robot = users["bob"].__class__("robot", "Robot", roles=frozenset({"service", "approver"}))
    with pytest.raises(ServiceAccountError):
        await service.decide_action(robot, task.id, ActionDecision.APPROVED, None, None)
    assert (await open_task(db, instance.id)).status.is_open


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"summary": "x"}, "needs config.action"),
        ({"action": "a", "arguments": {}, "argumentsFrom": "x"}, "not both"),
        ({"action": "a", "argumentsSchema": {"type": "nonsense"}}, "argumentsSchema"),
        ({"action": "a", "argumentsFrom": "not a path!"}, "config.argumentsFrom"),
    ],
)
async def test_deploy_refuses_a_bad_node(engine: Engine, config: dict[str, Any], problem: str) -> None:
    document = {"key": "bad_action", "start": "a", "nodes": [
        {"id": "a", "type": "userTask", "schemaType": "userTask.actionApproval", "assignToRole": "approver",
         "config": config}]}  # fmt: skip
    with pytest.raises(DefinitionError) as refused:
        await engine.deploy(document, "dana")
    assert problem in str(refused.value.field_errors), refused.value.field_errors
