"""Issue 3's "Done when", as one story on the demo, told through the real HTTP app.

alice submits an expense (field errors first, a draft that survives them), uploads a real PDF
receipt, and writes a note on the approval; bob finds the approval by role, reads the note and
approves with a comment; carol reassigns a second approval from bob to another approver; erin, of
the finance group, sees only her group's task of a definition dana deploys; and a signed-in
stranger sees nothing at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from engine.storage.directory import DirectoryRepository
from engine.transitions.engine import Engine
from server.auth import issue_token
from server.settings import Settings
from tests.server.conftest import GraphQL
from tests.server.inbox_world import add_stranger
from tests.server.test_documents import upload
from tests.server.test_task_api import snapshot


def small_pdf(text: str) -> bytes:
    """A real one-page PDF (catalog, page tree, page, content stream, font, and a correct xref table)."""
    content = f"BT /F1 14 Tf 24 100 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 320 144] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    pdf, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(pdf))
        pdf += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(pdf)
    pdf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    pdf += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    pdf += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return pdf


RECEIPT = small_pdf("Receipt: team lunch, 42.50 EUR")

START = """mutation($key: String!, $input: JSON) { startWorkflow(input: {definitionKey: $key, input: $input}) {
  __typename ... on StartWorkflowSuccess { workflowInstance { id status } } ... on Error { code message } } }"""
INBOX = """query($filter: TaskFilter) { tasks(filter: $filter) { totalCount edges { node {
  id nodeId title description status assignee { id } assignedRole assignedGroup } } } }"""
TASK = """query($id: ID!) { task(id: $id) { id nodeId title description status revision draft output
  assignee { id } completedBy { id } form { fields { key type label required options } }
  documentRequirements { key accept minFiles maxFiles } documents { id filename contentType size url }
  messages { author { id name } body } viewerCanClaim viewerCanComplete viewerCanAssign } }"""
RESULT = """__typename
  ... on TaskSuccess { task { id status revision draft output assignee { id } completedBy { id } } }
  ... on ValidationFailed { message fieldErrors { field code message } } ... on Error { code message }"""
SAVE = f"""mutation($id: ID!, $values: JSON!) {{ saveTaskProgress(input: {{taskId: $id, values: $values}}) {{
  {RESULT} }} }}"""
SUBMIT = f"mutation($id: ID!, $values: JSON) {{ submitTask(input: {{taskId: $id, values: $values}}) {{ {RESULT} }} }}"
APPROVE = f"""mutation($id: ID!, $comment: String) {{ approveTask(input: {{taskId: $id, comment: $comment}}) {{
  {RESULT} }} }}"""
CLAIM = f"mutation($id: ID!) {{ claimTask(input: {{taskId: $id}}) {{ {RESULT} }} }}"
ASSIGN = f"mutation($id: ID!, $to: ID) {{ assignTask(input: {{taskId: $id, userId: $to}}) {{ {RESULT} }} }}"
POST = """mutation($id: ID!, $body: String!) { postTaskMessage(input: {taskId: $id, body: $body}) {
  __typename ... on TaskMessageSuccess { posted: message { body author { id } } } ... on Error { code message } }
}"""
INSTANCE = """query($id: ID!) { workflowInstance(id: $id) { id status data
  milestones { key steps { key metrics { total active completed blocked } } } tasks { id nodeId status } } }"""
DEPLOY = """mutation($d: JSON!) { deployWorkflowDefinition(input: {definition: $d}) {
  __typename ... on DeploySuccess { definition { key version } } ... on Error { code message } } }"""

EXPENSE = {"amount": 42.5, "description": "Team lunch with the Acme people", "spentOn": "2026-01-02",
           "category": "meals", "tags": ["client"], "urgent": False}  # fmt: skip


@dataclass
class Story:
    gql: GraphQL
    client: httpx.AsyncClient
    settings: Settings

    async def ask(self, query: str, user: str, **variables: Any) -> Any:
        body = await self.gql(query, user=user, **variables)
        assert "errors" not in body, body
        [value] = body["data"].values()
        return value

    async def inbox(self, user: str, **filter: Any) -> list[dict[str, Any]]:
        connection = await self.ask(INBOX, user, filter=filter)
        assert connection["totalCount"] == len(connection["edges"])
        return [edge["node"] for edge in connection["edges"]]

    async def one(self, user: str, node_id: str, **filter: Any) -> dict[str, Any]:
        [task] = [t for t in await self.inbox(user, **filter) if t["nodeId"] == node_id]
        return task

    async def start_expense(self, name: str) -> str:
        started = await self.ask(START, "alice", key="expense_approval",
                                 input={"entityName": name, "entityType": "Expense"})  # fmt: skip
        assert started["__typename"] == "StartWorkflowSuccess", started
        return str(started["workflowInstance"]["id"])

    async def expense_and_receipt(self, name: str) -> tuple[str, str]:
        """alice's quick path to an approval: a valid form, a receipt, submitted. → (instance, approval id)."""
        instance_id = await self.start_expense(name)
        form = await self.one("alice", "expense_form")
        assert (await self.ask(SUBMIT, "alice", id=form["id"], values=EXPENSE))["__typename"] == "TaskSuccess"
        receipt = await self.one("alice", "receipt")
        uploaded = await upload(self.client, self.settings, "alice", receipt["id"],
                                [("receipt.pdf", RECEIPT, "application/pdf")])  # fmt: skip
        assert uploaded["__typename"] == "DocumentsSuccess", uploaded
        assert (await self.ask(SUBMIT, "alice", id=receipt["id"]))["__typename"] == "TaskSuccess"
        tasks = (await self.ask(INSTANCE, "alice", id=instance_id))["tasks"]
        [approval] = [t["id"] for t in tasks if t["nodeId"] == "approval"]
        return instance_id, approval


async def test_the_demo_story(gql: GraphQL, client: httpx.AsyncClient, settings: Settings, app_engine: Engine) -> None:
    story = Story(gql, client, settings)
    await add_stranger(app_engine)
    async with app_engine.db.transaction() as session:  # a second approver, for carol to reassign to
        await DirectoryRepository(session).save_user("frank", "Frank Fischer", "frank@example.com", ("approver",),
                                                     (), app_engine.clock.now())  # fmt: skip

    # --- alice: the expense form ----------------------------------------------------------------
    assert await story.inbox("alice") == []
    definitions = await story.ask("{ workflowDefinitions { key title } }", "alice")
    assert {"key": "expense_approval", "title": "Expense approval"} in definitions
    instance_id = await story.start_expense("Team lunch")
    [form] = await story.inbox("alice")
    assert (form["nodeId"], form["title"], form["status"]) == ("expense_form", "Submit expense for Team lunch",
                                                               "PENDING")  # fmt: skip
    shown = await story.ask(TASK, "alice", id=form["id"])
    fields = {f["key"]: (f["type"], f["required"]) for f in shown["form"]["fields"]}
    assert fields == {"amount": ("number", True), "description": ("text", True), "spentOn": ("date", True),
                      "category": ("dropdown", False), "tags": ("multiselect", False),
                      "urgent": ("checkbox", False)}  # fmt: skip
    assert shown["viewerCanComplete"] and not shown["viewerCanAssign"]

    draft = {"amount": 42.5, "description": "Team lunch"}
    saved = await story.ask(SAVE, "alice", id=form["id"], values=draft)
    assert saved["task"]["status"] == "CLAIMED" and saved["task"]["draft"] == draft
    before = await snapshot(app_engine)
    bad = {"amount": -3, "description": "", "spentOn": "last Friday", "category": "boats", "tags": ["golf"],
           "urgent": "no"}  # fmt: skip
    refused = await story.ask(SUBMIT, "alice", id=form["id"], values=bad)
    assert refused["__typename"] == "ValidationFailed"
    assert {e["field"] for e in refused["fieldErrors"]} == {
        "values.amount", "values.description", "values.spentOn", "values.category", "values.tags",
        "values.urgent"}, "every bad field at once"  # fmt: skip
    assert all(e["message"] for e in refused["fieldErrors"])
    assert await snapshot(app_engine) == before, "a failed submit changes nothing"
    again = await story.ask(TASK, "alice", id=form["id"])
    assert again["draft"] == draft and again["status"] == "CLAIMED", "the saved draft survives"
    assert [t["nodeId"] for t in await story.inbox("alice")] == ["expense_form"]

    submitted = await story.ask(SUBMIT, "alice", id=form["id"], values=EXPENSE)
    assert submitted["task"]["status"] == "COMPLETED" and submitted["task"]["completedBy"] == {"id": "alice"}
    assert submitted["task"]["output"] == EXPENSE

    # --- alice: the receipt -----------------------------------------------------------------------
    receipt = await story.one("alice", "receipt", role="requester")
    requirements = (await story.ask(TASK, "alice", id=receipt["id"]))["documentRequirements"]
    assert requirements == [{"key": "receipt", "accept": ["application/pdf", "image/*"], "minFiles": 1,
                             "maxFiles": 3}]  # fmt: skip
    early = await story.ask(SUBMIT, "alice", id=receipt["id"])
    assert [(e["field"], e["code"]) for e in early["fieldErrors"]] == [("documents.receipt", "MISSING_DOCUMENT")]
    uploaded = await upload(
        client, settings, "alice", receipt["id"], [("lunch-receipt.pdf", RECEIPT, "application/pdf")]
    )
    assert uploaded["__typename"] == "DocumentsSuccess", uploaded
    [document] = uploaded["documents"]
    assert (document["filename"], document["contentType"], document["size"]) == (
        "lunch-receipt.pdf", "application/pdf", len(RECEIPT))  # fmt: skip
    download = await client.get(document["url"], headers={"Authorization": f"Bearer {issue_token(settings, 'alice')}"})
    assert download.status_code == 200 and download.content == RECEIPT
    done = await story.ask(SUBMIT, "alice", id=receipt["id"])
    assert done["task"]["status"] == "COMPLETED"
    assert done["task"]["output"]["documents"][0]["filename"] == "lunch-receipt.pdf"

    # --- alice writes on the approval; bob finds it by role, reads, approves --------------------
    approval = await story.one("alice", "approval")  # the starter sees her instance's approval
    note = "Receipt is attached; the Acme people were there too."
    posted = await story.ask(POST, "alice", id=approval["id"], body=note)
    assert posted["posted"] == {"body": note, "author": {"id": "alice"}}

    [found] = await story.inbox("bob", role="approver")
    assert found["id"] == approval["id"] and found["title"] == "Approve Expense: Team lunch"
    assert found["description"] == "Alice Adams spent 42.5 EUR on meals: Team lunch with the Acme people"
    assert found["assignedRole"] == "approver" and found["assignee"] is None
    reading = await story.ask(TASK, "bob", id=approval["id"])
    assert reading["messages"] == [{"author": {"id": "alice", "name": "Alice Adams"}, "body": note}]
    assert reading["viewerCanComplete"] and reading["viewerCanClaim"]
    approved = await story.ask(APPROVE, "bob", id=approval["id"], comment="Fine — enjoy the lunch")
    assert approved["task"]["status"] == "COMPLETED" and approved["task"]["completedBy"] == {"id": "bob"}
    decision = approved["task"]["output"]
    assert (decision["decision"], decision["comment"], decision["decidedBy"]) == ("approved", "Fine — enjoy the lunch",
                                                                                  "bob")  # fmt: skip
    assert await story.inbox("bob", role="approver") == []
    instance = await story.ask(INSTANCE, "alice", id=instance_id)
    assert instance["data"]["approvalResult"]["decision"] == "approved"
    assert {t["nodeId"]: t["status"] for t in instance["tasks"]} == {
        "expense_form": "COMPLETED", "receipt": "COMPLETED", "approval": "COMPLETED", "notify": "PENDING",
        "mail": "PENDING"}, "approved: notify and mail are queued for the worker"  # fmt: skip
    assert [(m["key"], [(s["key"], s["metrics"]) for s in m["steps"]]) for m in instance["milestones"]] == [
        ("submission", [("request", {"total": 2, "active": 0, "completed": 2, "blocked": 0})]),
        ("review", [("decision", {"total": 3, "active": 0, "completed": 1, "blocked": 0})]),
    ]  # fmt: skip

    # --- carol reassigns a second approval from bob to frank -------------------------------------
    taxi_id, taxi = await story.expense_and_receipt("Taxi")
    assert (await story.ask(CLAIM, "bob", id=taxi))["task"]["assignee"] == {"id": "bob"}
    assert (await story.ask(ASSIGN, "bob", id=taxi, to="frank"))["__typename"] == "Forbidden"
    moved = await story.ask(ASSIGN, "carol", id=taxi, to="frank")
    assert moved["__typename"] == "TaskSuccess" and moved["task"]["assignee"] == {"id": "frank"}
    assert (await story.ask(APPROVE, "bob", id=taxi, comment="mine"))["__typename"] == "Forbidden"
    assert [t["id"] for t in await story.inbox("frank", assignedToMe=True)] == [taxi]
    assert await story.inbox("bob", assignedToMe=True) == []
    assert (await story.ask(APPROVE, "frank", id=taxi, comment="ok"))["task"]["completedBy"] == {"id": "frank"}
    assert (await story.ask(INSTANCE, "alice", id=taxi_id))["data"]["approvalResult"]["decidedBy"] == "frank"

    # --- erin sees only her group's tasks --------------------------------------------------------
    assert await story.inbox("erin", includeCompleted=True) == [], "nothing of the expenses is finance's"
    budget = {
        "key": "budget_check", "title": "Budget check", "start": "prepare",
        "nodes": [
            {"id": "prepare", "type": "userTask", "schemaType": "userTask.form", "title": "Prepare the budget",
             "assignToRole": "requester", "form": {"fields": [{"key": "total", "type": "number", "label": "Total"}]}},
            {"id": "finance_review", "type": "userTask", "schemaType": "userTask.approval",
             "title": "Finance review", "assignToGroup": "finance"},
            {"id": "legal_review", "type": "userTask", "schemaType": "userTask.approval", "title": "Legal review",
             "assignToGroup": "legal"},
            {"id": "approver_review", "type": "userTask", "schemaType": "userTask.approval",
             "title": "Approver review", "assignToRole": "approver"},
        ],
        "edges": [{"from": "prepare", "to": "finance_review"}, {"from": "prepare", "to": "legal_review"},
                  {"from": "prepare", "to": "approver_review"}],
    }  # fmt: skip
    assert (await story.ask(DEPLOY, "alice", d=budget))["__typename"] == "Forbidden"
    deployed = await story.ask(DEPLOY, "dana", d=budget)
    assert deployed == {"__typename": "DeploySuccess", "definition": {"key": "budget_check", "version": 1}}
    started = await story.ask(START, "alice", key="budget_check", input={})
    budget_id = started["workflowInstance"]["id"]
    prepare = await story.one("alice", "prepare")
    assert (await story.ask(SUBMIT, "alice", id=prepare["id"], values={"total": 1000}))["__typename"] == "TaskSuccess"
    erins = await story.inbox("erin")
    assert [(t["nodeId"], t["title"], t["assignedGroup"]) for t in erins] == [
        ("finance_review", "Finance review", "finance")]  # fmt: skip
    assert [t["nodeId"] for t in await story.inbox("erin", includeCompleted=True)] == ["finance_review"]
    assert await story.inbox("erin", groupId="legal") == [] and await story.inbox("erin", role="approver") == []
    tasks = await story.ask(INSTANCE, "erin", id=budget_id)
    assert [t["nodeId"] for t in tasks["tasks"]] == ["finance_review"], "the instance page shows erin her task only"
    assert {t["nodeId"] for t in await story.inbox("carol", workflowInstanceId=budget_id)} == {
        "finance_review", "legal_review", "approver_review"}  # fmt: skip
    erin_approves = await story.ask(APPROVE, "erin", id=erins[0]["id"], comment="within budget")
    assert erin_approves["task"]["completedBy"] == {"id": "erin"}

    # --- a stranger sees nothing ----------------------------------------------------------------
    me = await story.ask("{ me { id roles groups } }", "sam")
    assert me == {"id": "sam", "roles": [], "groups": []}
    everything = await story.inbox("dana", includeCompleted=True)
    assert len(everything) == 14, "5 + 5 expense tasks (notify and mail queued), 4 budget tasks"
    assert await story.inbox("sam", includeCompleted=True) == []
    assert (await story.ask(INBOX, "sam", filter={"status": ["PENDING", "COMPLETED"]}))["totalCount"] == 0
    for task in everything:
        assert await story.ask("query($id: ID!) { task(id: $id) { id } }", "sam", id=task["id"]) is None
    for some_instance in (instance_id, taxi_id, budget_id):
        assert await story.ask(INSTANCE, "sam", id=some_instance) is None
    sam = {"Authorization": f"Bearer {issue_token(settings, 'sam')}"}
    assert (await client.get(document["url"], headers=sam)).status_code == 404
    assert (await story.ask(POST, "sam", id=approval["id"], body="hello?"))["__typename"] == "NotFound"
    assert (await story.ask(CLAIM, "sam", id=erins[0]["id"]))["__typename"] == "NotFound"
