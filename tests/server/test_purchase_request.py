"""The demo's purchase request end to end through the GraphQL API: two of three approvers,
four-eyes against the requester, a finance chain above 1000 EUR, delegation, and every refusal typed
and leaving the task as it was."""

from __future__ import annotations

from typing import Any

from tests.server.conftest import GraphQL

START = """mutation($input: JSON) { startWorkflow(input: {definitionKey: "purchase_request", input: $input}) {
  __typename ... on StartWorkflowSuccess { workflowInstance { id } } ... on Error { message } } }"""
OPEN = """query($id: ID!) { workflowInstance(id: $id) { status data tasks { id nodeId status } } }"""
TASK = """query($id: ID!) { task(id: $id) { id nodeId status revision outcome blocked blockedReason
  approvalPolicy { chain currentLevel excludes levels { required rejectWhen role group users eligible } }
  decisions { by { id } decision comment level }
  eligibleToDecide { eligible reason } delegatedTo { id } owner { id } viewerCanComplete } }"""
RESULT = "{ __typename ... on Error { code message } ... on TaskSuccess { task { id status revision } } }"
SUBMIT = f"mutation($id: ID!, $values: JSON) {{ submitTask(input: {{taskId: $id, values: $values}}) {RESULT} }}"
APPROVE = f"mutation($id: ID!, $c: String) {{ approveTask(input: {{taskId: $id, comment: $c}}) {RESULT} }}"
REJECT = f"mutation($id: ID!, $c: String) {{ rejectTask(input: {{taskId: $id, comment: $c}}) {RESULT} }}"
CLAIM = f"mutation($id: ID!) {{ claimTask(input: {{taskId: $id}}) {RESULT} }}"
DELEGATE = f"mutation($id: ID!, $to: ID!) {{ delegateTask(input: {{taskId: $id, to: $to}}) {RESULT} }}"
RESOLVE = f"mutation($id: ID!, $values: JSON) {{ resolveTask(input: {{taskId: $id, values: $values}}) {RESULT} }}"


class Story:
    def __init__(self, gql: GraphQL) -> None:
        self.gql = gql

    async def do(self, query: str, user: str, **variables: Any) -> dict[str, Any]:
        body = await self.gql(query, user=user, **variables)
        assert "errors" not in body, body
        [result] = body["data"].values()
        assert isinstance(result, dict)
        return result

    async def start(self, requester: str, item: str, amount: float) -> str:
        started = await self.do(START, requester, input={})
        instance_id: str = started["workflowInstance"]["id"]
        request = await self.open_task(instance_id, "request", requester)
        submitted = await self.do(SUBMIT, requester, id=request, values={"item": item, "amount": amount})
        assert submitted["__typename"] == "TaskSuccess", submitted
        return instance_id

    async def open_task(self, instance_id: str, node_id: str, user: str = "dana") -> str:
        instance = await self.do(OPEN, user, id=instance_id)
        [task] = [t for t in instance["tasks"] if t["nodeId"] == node_id and t["status"] in ("PENDING", "CLAIMED")]
        task_id: str = task["id"]
        return task_id

    async def task(self, task_id: str, user: str) -> dict[str, Any]:
        return await self.do(TASK, user, id=task_id)


async def test_a_large_purchase_through_both_approvals_and_the_finance_chain(gql: GraphQL) -> None:
    story = Story(gql)
    instance = await story.start("grace", "Laptop", 2400)
    approvers = await story.open_task(instance, "approvers")

    # Four-eyes: grace requested it and holds the approver role, but may not decide it.
    seen = await story.task(approvers, "grace")
    assert seen["eligibleToDecide"] == {
        "eligible": False,
        "reason": "separation of duties: excluded as the workflow's starter",
    }
    assert seen["approvalPolicy"] == {"chain": False, "currentLevel": 0, "excludes": ["starter"], "levels": [
        {"required": 2, "rejectWhen": "any", "role": "purchase_approver", "group": None, "users": None,
         "eligible": 2}]}  # fmt: skip
    refused = await story.do(APPROVE, "grace", id=approvers, c="mine")
    assert (refused["__typename"], refused["code"]) == ("Forbidden", "SEPARATION_OF_DUTIES")
    assert (await story.task(approvers, "dana"))["revision"] == seen["revision"], "the refusal changed nothing"
    assert (await story.do(CLAIM, "henry", id=approvers))["__typename"] == "InvalidState"

    assert (await story.task(approvers, "henry"))["eligibleToDecide"] == {"eligible": True, "reason": None}
    assert (await story.do(APPROVE, "henry", id=approvers, c="needed"))["task"]["status"] == "PENDING"
    again = await story.do(APPROVE, "henry", id=approvers, c="really")
    assert again["__typename"] == "InvalidState", "the same approver counts once"
    assert (await story.do(APPROVE, "ivan", id=approvers, c="ok"))["task"]["status"] == "COMPLETED"
    settled = await story.task(approvers, "henry")
    assert settled["outcome"] == "approved"
    assert [(d["by"]["id"], d["decision"]) for d in settled["decisions"]] == [("henry", "approved"),
                                                                            ("ivan", "approved")]  # fmt: skip
    late = await story.do(REJECT, "grace", id=approvers, c="late")
    assert late["__typename"] == "InvalidState"

    # Above 1000 EUR: a manager, then finance.
    finance = await story.open_task(instance, "finance")
    chain = await story.task(finance, "carol")
    assert chain["approvalPolicy"]["chain"] and chain["approvalPolicy"]["excludes"] == ["starter", "previousApprovers"]
    assert (await story.do(APPROVE, "erin", id=finance))["__typename"] == "NotFound", "level 2 is not reached yet"
    assert (await story.do(APPROVE, "carol", id=finance, c="budget ok"))["task"]["status"] == "PENDING"
    assert (await story.task(finance, "erin"))["approvalPolicy"]["currentLevel"] == 1
    assert (await story.do(APPROVE, "erin", id=finance, c="paid"))["task"]["status"] == "COMPLETED"

    # The requester places the order, after delegating the paperwork to henry and getting it back.
    order = await story.open_task(instance, "placeOrder")
    assert (await story.do(DELEGATE, "grace", id=order, to="henry"))["__typename"] == "TaskSuccess"
    delegated = await story.task(order, "henry")
    assert delegated["delegatedTo"] == {"id": "henry"} and delegated["owner"] == {"id": "grace"}
    assert (await story.do(SUBMIT, "henry", id=order, values={"orderNumber": "PO-1"}))["__typename"] == "Forbidden"
    assert (await story.do(SUBMIT, "grace", id=order, values={"orderNumber": "PO-1"}))["__typename"] == "InvalidState"
    assert (await story.do(RESOLVE, "henry", id=order, values={"orderNumber": "PO-1"}))["__typename"] == "TaskSuccess"
    assert (await story.do(SUBMIT, "grace", id=order, values=None))["task"]["status"] == "COMPLETED"
    done = await story.do(OPEN, "grace", id=instance)
    assert done["status"] == "COMPLETED" and done["data"]["order"] == {"orderNumber": "PO-1"}
    assert done["data"]["finance"]["outcome"] == "approved" and done["data"]["finance"]["decidedBy"] == "policy"


async def test_a_small_purchase_skips_finance_and_one_rejection_ends_it(gql: GraphQL) -> None:
    story = Story(gql)
    small = await story.start("alice", "Stapler", 25)
    approvers = await story.open_task(small, "approvers")
    assert (await story.task(approvers, "alice"))["approvalPolicy"]["levels"][0]["eligible"] == 3
    await story.do(APPROVE, "grace", id=approvers)
    await story.do(APPROVE, "henry", id=approvers)
    assert [t["nodeId"] for t in (await story.do(OPEN, "alice", id=small))["tasks"]] == [
        "request", "approvers", "placeOrder"]  # fmt: skip

    rejected = await story.start("alice", "Yacht", 90_000)
    approvers = await story.open_task(rejected, "approvers")
    assert (await story.do(REJECT, "ivan", id=approvers, c="no"))["task"]["status"] == "COMPLETED"
    instance = await story.do(OPEN, "alice", id=rejected)
    assert instance["status"] == "COMPLETED" and instance["data"]["approval"]["outcome"] == "rejected"
