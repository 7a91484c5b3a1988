"""Step pages and instance pages through the real HTTP app: ``stepInstance(id)`` with its metrics
(docs/design.md §1's table) and tasks, ``workflowInstance(id)`` with its milestone timeline, and
``cancelWorkflow``.

The definition here forks after a kickoff form into a three-task review step and an audit step, so a
step holds tasks in several states at once. Its milestones are listed in an order that is neither
alphabetical nor the order the steps are reached, so "definition order" is really tested.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from engine.clock import ManualClock
from engine.transitions.engine import Engine
from engine.workers.builtin import BUILTIN_EXECUTORS
from engine.workers.executor import SystemTaskContext
from engine.workers.worker import Worker
from tests.server.conftest import GraphQL
from tests.server.inbox_world import add_stranger
from tests.server.test_task_api import snapshot
from tests.workers.support import LOOPBACK_ALLOWED

REVIEW = {
    "key": "step_pages", "title": "Step pages",
    "milestones": [
        {"key": "submission", "title": "Submission", "steps": [{"key": "kickoff", "title": "Kick-off",
                                                                 "nodes": ["kickoff"]}]},
        {"key": "checks", "title": "Checks", "steps": [
            {"key": "review", "title": "Review", "nodes": ["r1", "r2", "r3"]},
            {"key": "audit", "title": "Audit", "nodes": ["audit"]}]},
        {"key": "closing", "title": "Closing", "steps": [{"key": "wrapup", "title": "Wrap-up", "nodes": ["final"]}]},
    ],
    "start": "kickoff",
    "nodes": [
        {"id": "kickoff", "type": "userTask", "schemaType": "userTask.form", "assignToRole": "requester",
         "form": {"fields": [{"key": "note", "type": "text", "label": "Note"}]}},
        {"id": "r1", "type": "userTask", "schemaType": "userTask.approval", "assignToRole": "approver"},
        {"id": "r2", "type": "userTask", "schemaType": "userTask.approval", "assignToRole": "approver"},
        {"id": "r3", "type": "userTask", "schemaType": "userTask.approval", "assignToRole": "approver",
         "dueIn": "PT1H", "onDue": "expire"},
        {"id": "audit", "type": "userTask", "schemaType": "userTask.approval", "assignToRole": "requester"},
        {"id": "final", "type": "userTask", "schemaType": "userTask.approval", "assignToRole": "approver",
         "join": "all"},
    ],
    # audit's edge comes first: its step is reached before review's, though the definition lists it after.
    "edges": [{"from": "kickoff", "to": "audit"}, {"from": "kickoff", "to": "r1"}, {"from": "kickoff", "to": "r2"},
              {"from": "kickoff", "to": "r3"}, {"from": "r1", "to": "final"}, {"from": "r2", "to": "final"},
              {"from": "r3", "to": "final"}],
}  # fmt: skip

TASK_FIELDS = "id nodeId status assignee { id }"
STEP = f"""query($id: ID!, $mine: Boolean, $completed: Boolean) {{ stepInstance(id: $id) {{
  id key title milestoneKey metrics {{ total active completed blocked }}
  tasks(assignedToMe: $mine, showCompleted: $completed) {{ totalCount edges {{ node {{ {TASK_FIELDS} }} }} }}
  everything: tasks {{ totalCount edges {{ node {{ nodeId }} }} }} }} }}"""
INSTANCE = f"""query($id: ID!) {{ workflowInstance(id: $id) {{ id status completedAt
  milestones {{ key title steps {{ id key title milestoneKey metrics {{ total active completed blocked }} }} }}
  tasks {{ {TASK_FIELDS} }} }} }}"""
CLAIM = "mutation($id: ID!) { claimTask(input: {taskId: $id}) { __typename } }"
APPROVE = 'mutation($id: ID!) { approveTask(input: {taskId: $id, comment: "ok"}) { __typename } }'
SUBMIT = 'mutation($id: ID!) { submitTask(input: {taskId: $id, values: {note: "go"}}) { __typename } }'
CANCEL = """mutation($id: ID!, $reason: String) { cancelWorkflow(input: {workflowInstanceId: $id, reason: $reason}) {
  __typename ... on WorkflowSuccess { workflowInstance { id status completedAt tasks { nodeId status } } }
  ... on Error { code message } } }"""


def metrics(total: int, active: int = 0, completed: int = 0, blocked: int = 0) -> dict[str, int]:
    return {"total": total, "active": active, "completed": completed, "blocked": blocked}


@dataclass
class Review:
    """An instance alice started and kicked off: review (r1, r2, r3) and audit wait."""

    gql: GraphQL
    instance_id: str
    tasks: dict[str, str]  # node id → task id

    async def step_id(self, key: str) -> str:
        body = await self.gql(INSTANCE, user="dana", id=self.instance_id)
        steps = [s for m in body["data"]["workflowInstance"]["milestones"] for s in m["steps"]]
        return str(next(s["id"] for s in steps if s["key"] == key))

    async def step(self, key: str, user: str = "dana", **variables: Any) -> dict[str, Any] | None:
        body = await self.gql(STEP, user=user, id=await self.step_id(key), **variables)
        assert "errors" not in body, body
        step: dict[str, Any] | None = body["data"]["stepInstance"]
        return step

    async def metrics(self, key: str) -> dict[str, int]:
        step = await self.step(key)
        assert step is not None
        return dict(step["metrics"])

    async def act(self, query: str, user: str, node: str) -> None:
        body = await self.gql(query, user=user, id=self.tasks[node])
        [result] = body["data"].values()
        assert result["__typename"] == "TaskSuccess", body


async def task_ids(gql: GraphQL, instance_id: str) -> dict[str, str]:
    body = await gql(INSTANCE, user="dana", id=instance_id)
    return {t["nodeId"]: t["id"] for t in body["data"]["workflowInstance"]["tasks"]}


@pytest.fixture
async def review(gql: GraphQL, app_engine: Engine) -> Review:
    await app_engine.deploy(REVIEW, deployed_by="dana")
    await add_stranger(app_engine)
    instance = await app_engine.start("step_pages", {}, "alice")
    kickoff = (await task_ids(gql, instance.id))["kickoff"]
    assert (await gql(SUBMIT, user="alice", id=kickoff))["data"]["submitTask"]["__typename"] == "TaskSuccess"
    return Review(gql, instance.id, await task_ids(gql, instance.id))


@pytest.fixture
async def worker(app_engine: Engine) -> AsyncIterator[Worker]:
    """A worker like ``stepwise worker``'s, run by hand (the test server's embedded worker is off)."""
    async with SystemTaskContext(clock=app_engine.clock, host_policy=LOOPBACK_ALLOWED) as context:
        executors = {executor.type: executor for executor in BUILTIN_EXECUTORS}
        yield Worker(app_engine, executors, context, lease=timedelta(seconds=30))


async def test_step_metrics_follow_the_tasks(review: Review, worker: Worker, clock: ManualClock) -> None:
    """docs/design.md §1: PENDING and CANCELLED count in total only; CLAIMED is active; EXPIRED is blocked."""
    assert await review.metrics("kickoff") == metrics(1, completed=1)
    assert await review.metrics("review") == metrics(3)
    await review.act(CLAIM, "bob", "r1")
    assert await review.metrics("review") == metrics(3, active=1)
    await review.act(APPROVE, "bob", "r1")
    assert await review.metrics("review") == metrics(3, completed=1)
    await review.act(CLAIM, "bob", "r2")
    assert await review.metrics("review") == metrics(3, active=1, completed=1)
    clock.advance(timedelta(hours=2))
    assert await worker.expire_due() == 1, "r3 is past due and its node says onDue: expire"
    assert await review.metrics("review") == metrics(3, active=1, completed=1, blocked=1)
    assert await review.metrics("audit") == metrics(1)

    cancelled = await review.gql(CANCEL, user="alice", id=review.instance_id)
    assert cancelled["data"]["cancelWorkflow"]["__typename"] == "WorkflowSuccess"
    assert await review.metrics("review") == metrics(3, completed=1, blocked=1), "r2 CANCELLED: total only"
    assert await review.metrics("audit") == metrics(1)
    assert await review.metrics("kickoff") == metrics(1, completed=1)


async def test_step_page_shape_and_task_toggles(review: Review) -> None:
    await review.act(CLAIM, "bob", "r1")
    await review.act(APPROVE, "bob", "r1")
    await review.act(CLAIM, "bob", "r2")
    step = await review.step("review", user="bob")
    assert step is not None
    assert (step["key"], step["title"], step["milestoneKey"]) == ("review", "Review", "checks")
    assert {e["node"]["nodeId"]: e["node"]["status"] for e in step["tasks"]["edges"]} == {
        "r1": "COMPLETED", "r2": "CLAIMED", "r3": "PENDING"}, "showCompleted defaults to true"  # fmt: skip

    def nodes(step: dict[str, Any] | None) -> list[str]:
        assert step is not None
        return sorted(e["node"]["nodeId"] for e in step["tasks"]["edges"])

    assert nodes(await review.step("review", user="bob", completed=False)) == ["r2", "r3"]
    assert nodes(await review.step("review", user="bob", mine=True)) == ["r1", "r2"]
    assert nodes(await review.step("review", user="bob", mine=True, completed=False)) == ["r2"]
    assert nodes(await review.step("review", user="dana", mine=True)) == [], "dana holds nothing here"
    assert nodes(await review.step("review", user="carol")) == ["r1", "r2", "r3"]
    assert nodes(await review.step("review", user="alice")) == ["r1", "r2", "r3"], "the starter sees all of it"


async def test_step_page_tasks_show_only_what_the_viewer_may_see(review: Review) -> None:
    """bob may see the instance (he is a candidate in it) but not alice's kickoff or audit tasks."""
    kickoff = await review.step("kickoff", user="bob")
    assert kickoff is not None and kickoff["everything"] == {"totalCount": 0, "edges": []}
    audit = await review.step("audit", user="bob")
    assert audit is not None and audit["everything"]["totalCount"] == 0
    assert (await review.step("kickoff", user="alice") or {})["everything"]["edges"] == [
        {"node": {"nodeId": "kickoff"}}
    ]
    # Its instance all the same (a step is visible as its instance is): the page's way back to it.
    query = "query($id: ID!) { stepInstance(id: $id) { workflowInstance { id definitionKey } } }"
    body = await review.gql(query, user="bob", id=await review.step_id("kickoff"))
    assert body["data"]["stepInstance"]["workflowInstance"] == {"id": review.instance_id, "definitionKey": "step_pages"}


async def test_a_step_the_viewer_may_not_see_is_null(review: Review, gql: GraphQL) -> None:
    for user in ("erin", "sam"):
        for key in ("kickoff", "review", "audit"):
            assert await review.step(key, user=user) is None, (user, key)
    assert (await gql(STEP, user="dana", id="00000000-0000-7000-8000-000000000000"))["data"]["stepInstance"] is None
    anonymous = await gql(STEP, id=await review.step_id("review"))
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_step_page_tasks_page_by_cursor_and_refuse_bad_ones(review: Review, gql: GraphQL) -> None:
    query = """query($id: ID!, $after: String, $first: Int) { stepInstance(id: $id) {
      tasks(first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { node { nodeId } } }
    } }"""
    step_id = await review.step_id("review")
    seen, after = [], None
    for _ in range(5):
        tasks = (await gql(query, user="dana", id=step_id, first=1, after=after))["data"]["stepInstance"]["tasks"]
        assert tasks["totalCount"] == 3
        seen += [e["node"]["nodeId"] for e in tasks["edges"]]
        if not tasks["pageInfo"]["hasNextPage"]:
            break
        after = tasks["pageInfo"]["endCursor"]
    assert sorted(seen) == ["r1", "r2", "r3"] and len(seen) == 3
    for variables in ({"after": "nope"}, {"first": -1}, {"first": 500}):
        body = await gql(query, user="dana", id=step_id, **variables)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
        assert body["errors"][0]["path"] == ["stepInstance", "tasks"]


async def test_system_task_states_in_step_metrics(gql: GraphQL, app_engine: Engine, worker: Worker,
                                                  clock: ManualClock) -> None:  # fmt: skip
    """A queued system task counts in total only, its retry back-off (WAITING) is active, FAILED is blocked."""
    await app_engine.deploy({"key": "calls", "start": "call", "nodes": [
        {"id": "call", "type": "http", "config": {"method": "GET", "url": "http://127.0.0.1:9/"},
         "retry": {"maxAttempts": 2, "initialInterval": "PT10S"}}]}, deployed_by="dana")  # fmt: skip
    instance = await app_engine.start("calls", {}, "alice")
    body = await gql(INSTANCE, user="alice", id=instance.id)
    [step] = [s for m in body["data"]["workflowInstance"]["milestones"] for s in m["steps"]]
    assert step["metrics"] == metrics(1)
    assert await worker.run_once() == 1
    page = await gql(STEP, user="alice", id=step["id"])
    assert page["data"]["stepInstance"]["metrics"] == metrics(1, active=1)
    assert page["data"]["stepInstance"]["tasks"]["edges"][0]["node"]["status"] == "WAITING"
    clock.advance(timedelta(seconds=10))
    assert await worker.run_once() == 1
    page = await gql(STEP, user="alice", id=step["id"])
    assert page["data"]["stepInstance"]["metrics"] == metrics(1, blocked=1)
    assert page["data"]["stepInstance"]["tasks"]["edges"][0]["node"]["status"] == "FAILED"
    failed = await gql(INSTANCE, user="alice", id=instance.id)
    assert failed["data"]["workflowInstance"]["status"] == "FAILED"


async def test_milestone_timeline_in_definition_order_with_steps_reached_so_far(
    gql: GraphQL, app_engine: Engine
) -> None:
    await app_engine.deploy(REVIEW, deployed_by="dana")
    instance = await app_engine.start("step_pages", {}, "alice")
    before = (await gql(INSTANCE, user="alice", id=instance.id))["data"]["workflowInstance"]
    assert [(m["key"], m["title"], [s["key"] for s in m["steps"]]) for m in before["milestones"]] == [
        ("submission", "Submission", ["kickoff"]), ("checks", "Checks", []), ("closing", "Closing", [])]  # fmt: skip
    assert before["milestones"][0]["steps"][0]["metrics"] == metrics(1)

    kickoff = (await task_ids(gql, instance.id))["kickoff"]
    assert (await gql(SUBMIT, user="alice", id=kickoff))["data"]["submitTask"]["__typename"] == "TaskSuccess"
    after = (await gql(INSTANCE, user="alice", id=instance.id))["data"]["workflowInstance"]
    timeline = [(m["key"], [(s["key"], s["title"], s["milestoneKey"], s["metrics"]) for s in m["steps"]])
                for m in after["milestones"]]  # fmt: skip
    assert timeline == [
        ("submission", [("kickoff", "Kick-off", "submission", metrics(1, completed=1))]),
        ("checks", [("review", "Review", "checks", metrics(3)), ("audit", "Audit", "checks", metrics(1))]),
        ("closing", []),
    ], "definition order, though audit was reached first; wrapup is not reached yet"
    assert after["status"] == "WAITING_FOR_SIGNAL" and after["completedAt"] is None


async def test_instance_tasks_show_only_what_the_viewer_may_see(review: Review, gql: GraphQL) -> None:
    def nodes(user_view: dict[str, Any]) -> list[str]:
        return sorted(t["nodeId"] for t in user_view["data"]["workflowInstance"]["tasks"])

    everything = ["audit", "kickoff", "r1", "r2", "r3"]
    for user in ("alice", "carol", "dana"):
        assert nodes(await gql(INSTANCE, user=user, id=review.instance_id)) == everything, user
    bob = await gql(INSTANCE, user="bob", id=review.instance_id)
    assert nodes(bob) == ["r1", "r2", "r3"], "bob is a candidate for the review tasks only"
    assert [m["key"] for m in bob["data"]["workflowInstance"]["milestones"]] == ["submission", "checks", "closing"]
    for user in ("erin", "sam"):
        assert (await gql(INSTANCE, user=user, id=review.instance_id))["data"]["workflowInstance"] is None, user


async def test_cancel_workflow_permissions_and_effect(review: Review, gql: GraphQL, app_engine: Engine) -> None:
    await review.act(CLAIM, "bob", "r1")
    before = await snapshot(app_engine)
    for user, refusal in (("erin", "NotFound"), ("sam", "NotFound"), ("bob", "Forbidden")):
        refused = (await gql(CANCEL, user=user, id=review.instance_id))["data"]["cancelWorkflow"]
        assert refused["__typename"] == refusal and refused["code"] in ("NOT_FOUND", "FORBIDDEN"), (user, refused)
    unknown = await gql(CANCEL, user="dana", id="00000000-0000-7000-8000-000000000000")
    assert unknown["data"]["cancelWorkflow"]["__typename"] == "NotFound"
    assert await snapshot(app_engine) == before, "refused cancels change nothing"

    done = (await gql(CANCEL, user="alice", id=review.instance_id, reason="changed my mind"))["data"]["cancelWorkflow"]
    assert done["__typename"] == "WorkflowSuccess", done
    instance = done["workflowInstance"]
    assert instance["status"] == "CANCELLED" and instance["completedAt"] is not None
    statuses = {t["nodeId"]: t["status"] for t in instance["tasks"]}
    assert statuses == {"kickoff": "COMPLETED", "audit": "CANCELLED", "r1": "CANCELLED", "r2": "CANCELLED",
                        "r3": "CANCELLED"}, "every open task is cancelled, claimed or not"  # fmt: skip
    inbox = await gql("{ tasks { totalCount } }", user="bob")
    assert inbox["data"]["tasks"]["totalCount"] == 0, "cancelled tasks leave the inbox"

    for user in ("alice", "carol", "dana"):
        again = (await gql(CANCEL, user=user, id=review.instance_id))["data"]["cancelWorkflow"]
        assert again["__typename"] == "InvalidState" and again["code"] == "INVALID_STATE", (user, again)
    claim = await gql("mutation($id: ID!) { claimTask(input: {taskId: $id}) { __typename } }", user="bob",
                      id=review.tasks["r2"])  # fmt: skip
    assert claim["data"]["claimTask"]["__typename"] == "InvalidState", "a cancelled task cannot be claimed"


async def test_a_manager_may_cancel_an_instance_they_did_not_start(review: Review, gql: GraphQL) -> None:
    done = (await gql(CANCEL, user="carol", id=review.instance_id))["data"]["cancelWorkflow"]
    assert done["__typename"] == "WorkflowSuccess" and done["workflowInstance"]["status"] == "CANCELLED"
    events = "query($id: ID!) { task(id: $id) { status updatedAt } }"
    assert (await gql(events, user="bob", id=review.tasks["r1"]))["data"]["task"]["status"] == "CANCELLED"
