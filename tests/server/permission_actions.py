"""The permission matrix's actions (tests/server/test_permission_matrix.py), each the one request a user
makes in a :class:`~tests.server.permission_scenes.Scene`, answering the cell's outcome."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from engine import HostPolicy, User, WebhookDispatcher, WebhookFilter, WebhookService
from engine.workers.builtin import BUILTIN_EXECUTORS
from engine.workers.executor import SystemTaskContext
from engine.workers.worker import Worker
from server.auth import issue_token
from tests.server.permission_scenes import (
    DEFINITIONS,
    HIDDEN,
    NA,
    OK,
    PDF,
    TASK_RESULT,
    Scene,
    database,
    outcome,
)
from tests.workers.support import LOOPBACK_ALLOWED


async def see(scene: Scene) -> str:
    await scene.start("form")
    query = "query($id: ID!) { task(id: $id) { id messages { id } documents { id } } }"
    body = await scene.gql(query, user=scene.actor, id=scene.task_id)
    return OK if body["data"]["task"] is not None else HIDDEN


async def history(scene: Scene) -> str:
    """Both histories, or neither: who may see the task may see its events, in either."""
    await scene.start("form")
    query = """query($task: ID!, $instance: ID!) {
      task(id: $task) { history { edges { node { kind } } } }
      workflowInstance(id: $instance) { history { edges { node { taskId } } } } }"""
    data = (await scene.gql(query, user=scene.actor, task=scene.task_id, instance=scene.instance_id))["data"]
    if data["task"] is None and data["workflowInstance"] is None:
        return HIDDEN
    assert data["task"]["history"]["edges"][0]["node"]["kind"] == "CREATED"
    assert {e["node"]["taskId"] for e in data["workflowInstance"]["history"]["edges"]} == {scene.task_id}
    return OK


async def claim(scene: Scene) -> str:
    await scene.start("form")
    return await scene.run("claimTask", f"mutation($id: ID!) {{ claimTask(input: {{taskId: $id}}) {TASK_RESULT} }}",
                           id=scene.task_id)  # fmt: skip


ASSIGN = f"mutation($id: ID!, $to: ID) {{ assignTask(input: {{taskId: $id, userId: $to}}) {TASK_RESULT} }}"


async def assign(scene: Scene) -> str:
    await scene.start("form")
    return await scene.run("assignTask", ASSIGN, id=scene.task_id, to="bob")


async def unassign(scene: Scene) -> str:
    """Someone else holds the task (the assignee column: erin holds it herself)."""
    await scene.start("form")
    if scene.role != "assignee":
        await scene.assign("bob" if scene.role == "stranger" else "erin")
    return await scene.run("assignTask", ASSIGN, id=scene.task_id, to=None)


async def save_progress(scene: Scene) -> str:
    await scene.start("form")
    query = f'mutation($id: ID!) {{ saveTaskProgress(input: {{taskId: $id, values: {{note: "x"}}}}) {TASK_RESULT} }}'
    return await scene.run("saveTaskProgress", query, id=scene.task_id)


async def submit(scene: Scene) -> str:
    await scene.start("form")
    query = f'mutation($id: ID!) {{ submitTask(input: {{taskId: $id, values: {{note: "x"}}}}) {TASK_RESULT} }}'
    return await scene.run("submitTask", query, id=scene.task_id)


def decide(field: str) -> Callable[[Scene], Awaitable[str]]:
    async def action(scene: Scene) -> str:
        await scene.start("approval")
        query = f'mutation($id: ID!) {{ {field}(input: {{taskId: $id, comment: "ok"}}) {TASK_RESULT} }}'
        return await scene.run(field, query, id=scene.task_id)

    return action


async def upload_documents(scene: Scene) -> str:
    await scene.start("upload")
    return outcome((await scene.upload(scene.actor))["__typename"])


async def download(scene: Scene) -> str:
    """bob uploads, carol unassigns him again (the assignee column: then assigns erin)."""
    await scene.start("upload", assign=False)
    uploaded = await scene.upload("bob")
    await scene.assign("erin" if scene.role == "assignee" else None)
    url = uploaded["documents"][0]["url"]
    response = await scene.client.get(
        url, headers={"Authorization": f"Bearer {issue_token(scene.settings, scene.actor)}"}
    )
    assert response.status_code in (200, 404), response.text
    return OK if response.status_code == 200 and response.content == PDF else HIDDEN


async def post_message(scene: Scene) -> str:
    await scene.start("form")
    query = """mutation($id: ID!) { postTaskMessage(input: {taskId: $id, body: "hello"}) {
      __typename ... on Error { message } } }"""
    return await scene.run("postTaskMessage", query, id=scene.task_id)


async def start_workflow(scene: Scene) -> str:
    await scene.start("form")
    query = (
        """mutation { startWorkflow(input: {definitionKey: "matrix_form"}) { __typename ... on Error { message } } }"""
    )
    return await scene.run("startWorkflow", query)


async def deploy(scene: Scene) -> str:
    query = """mutation($d: JSON!) { deployWorkflowDefinition(input: {definition: $d}) {
      __typename ... on Error { message } } }"""
    document = {**DEFINITIONS["form"], "key": "matrix_deployed"}
    return await scene.run("deployWorkflowDefinition", query, d=document)


async def send_signal(scene: Scene) -> str:
    await scene.start("form")
    query = """mutation($id: ID!) { sendSignal(input: {workflowInstanceId: $id, nodeId: "form", payload: {}}) {
      __typename ... on Error { message } } }"""
    return await scene.run("sendSignal", query, id=scene.instance_id)


async def correlate(scene: Scene) -> str:
    """sendSignal's rule, the instance found by the business key alice started it with."""
    await scene.engine.deploy(DEFINITIONS["form"], deployed_by="dana")
    instance = await scene.engine.start("matrix_form", {}, "alice", correlation_key="ORDER-1")
    scene.instance_id, scene.task_id = instance.id, str(instance.tokens[0].task_id)
    if scene.role == "assignee":
        await scene.assign("erin")
    query = """mutation { correlate(input: {definitionKey: "matrix_form", correlationKey: "ORDER-1", nodeId: "form",
      payload: {}}) { __typename ... on Error { message } } }"""
    return await scene.run("correlate", query)


async def cancel(scene: Scene) -> str:
    await scene.start("form")
    query = """mutation($id: ID!) { cancelWorkflow(input: {workflowInstanceId: $id}) {
      __typename ... on Error { message } } }"""
    return await scene.run("cancelWorkflow", query, id=scene.instance_id)


RETRY = """mutation($id: ID!) { retryTask(input: {taskId: $id}) {
  __typename ... on TaskSuccess { task { status } } ... on Error { message } } }"""


async def failed_system_task(scene: Scene) -> None:
    """alice's instance whose http task used its one attempt: the task and the instance are FAILED.
    The server's embedded worker is off in tests; this is the worker ``stepwise worker`` runs."""
    await scene.start("system", assign=False)
    async with SystemTaskContext(clock=scene.engine.clock, host_policy=LOOPBACK_ALLOWED) as context:
        worker = Worker(scene.engine, {e.type: e for e in BUILTIN_EXECUTORS}, context)
        assert await worker.run_once() == 1
    query = "query($id: ID!) { task(id: $id) { kind status assignedRole assignedGroup assignee { id } } }"
    task = (await scene.gql(query, user="dana", id=scene.task_id))["data"]["task"]
    assert task == {"kind": "SYSTEM", "status": "FAILED", "assignedRole": None, "assignedGroup": None,
                    "assignee": None}  # fmt: skip


async def retry(scene: Scene) -> str:
    """A system task has no role or group, so no candidates, and cannot be assigned, so no assignee:
    those two cells are n/a, and that is what they check."""
    await failed_system_task(scene)
    if scene.role == "candidate":
        claim = "mutation($id: ID!) { claimTask(input: {taskId: $id}) { __typename } }"
        assert (await scene.gql(claim, user="bob", id=scene.task_id))["data"]["claimTask"]["__typename"] == "NotFound"
        return NA  # bob holds role approver, which the task does not name: he cannot even see it
    if scene.role == "assignee":
        refused = await scene.gql(ASSIGN, user="carol", id=scene.task_id, to="erin")
        assert refused["data"]["assignTask"]["__typename"] == "InvalidState", refused
        return NA
    result = await scene.run("retryTask", RETRY, id=scene.task_id)
    if result == OK:
        again = await scene.gql("query($id: ID!) { task(id: $id) { status } }", user="dana", id=scene.task_id)
        assert again["data"]["task"]["status"] == "PENDING", "re-queued for the worker"
    return result


DELEGATE = f"mutation($id: ID!, $to: ID!) {{ delegateTask(input: {{taskId: $id, to: $to}}) {TASK_RESULT} }}"


async def delegate(scene: Scene) -> str:
    """erin holds the task (the stranger column: bob does) and the actor hands it to carol."""
    await scene.start("form")
    if scene.role != "assignee":
        await scene.assign("bob" if scene.role == "stranger" else "erin")
    return await scene.run("delegateTask", DELEGATE, id=scene.task_id, to="carol")


async def resolve(scene: Scene) -> str:
    """erin holds the task and delegated it to bob, so the candidate column is the delegate (the
    stranger column: bob holds it and delegated it to carol)."""
    await scene.start("form", assign=False)
    owner, delegate_to = ("bob", "carol") if scene.role == "stranger" else ("erin", "bob")
    await scene.assign(owner)
    delegated = await scene.gql(DELEGATE, user=owner, id=scene.task_id, to=delegate_to)
    assert delegated["data"]["delegateTask"]["__typename"] == "TaskSuccess", delegated
    query = f"mutation($id: ID!) {{ resolveTask(input: {{taskId: $id}}) {TASK_RESULT} }}"
    return await scene.run("resolveTask", query, id=scene.task_id)


async def list_users(scene: Scene) -> str:
    """Like the webhooks list: the result union's Forbidden."""
    query = "{ users { __typename ... on UserList { users { id } } ... on Error { code } } }"
    return await scene.run("users", query)


async def dev_sign_in(scene: Scene) -> str:
    """The app under test runs without STEPWISE_DEV, as production does (tests/server/test_directory_api.py
    signs in with it on)."""
    query = 'mutation { devSignIn(input: {userId: "dana"}) { __typename ... on Error { message } } }'
    return await scene.run("devSignIn", query)


# A public address literal: admitted by the host policy without a DNS lookup; these cells deliver nothing to it.
WEBHOOK_URL = "https://93.184.215.14/hook"


async def manage_webhooks(scene: Scene) -> str:
    query = """mutation($url: String!) { createWebhook(input: {url: $url}) { __typename ... on Error { message } } }"""
    return await scene.run("createWebhook", query, url=WEBHOOK_URL)


async def read_webhooks(scene: Scene) -> str:
    return await scene.run("webhooks", "{ webhooks { __typename ... on Error { message } } }")


async def redeliver_webhook(scene: Scene) -> str:
    """dana's webhook has one delivery, failed: the worker's host policy denies the address."""
    service, dana = WebhookService(scene.engine), User("dana", "Dana", roles=frozenset({"admin"}))
    webhook, _ = await service.create(dana, WEBHOOK_URL, (), WebhookFilter())
    await scene.start("form")
    await scene.engine.sequencer.idle()
    dispatcher = WebhookDispatcher(scene.engine.db, scene.engine.clock, HostPolicy(deny=("93.184.215.14",)), "m")
    try:
        await dispatcher.run_until_idle()
    finally:
        await dispatcher.aclose()
    delivery = (await service.deliveries(dana, webhook.id, 10, None))[0][0]
    query = """mutation($id: ID!) { redeliverWebhook(input: {deliveryId: $id}) {
      __typename ... on Error { message } } }"""
    return await scene.run("redeliverWebhook", query, id=delivery.id)


async def decide_action(scene: Scene) -> str:
    await scene.start("action")
    query = f"""mutation($id: ID!) {{ decideActionApproval(input: {{taskId: $id, decision: APPROVED}})
      {TASK_RESULT} }}"""
    return await scene.run("decideActionApproval", query, id=scene.task_id)


async def request_approval(scene: Scene) -> str:
    query = """mutation { requestApproval(input: {action: "refund", arguments: {amount: 5},
      assignTo: {role: "approver"}}) { __typename ... on Error { message } } }"""
    return await scene.run("requestApproval", query)


async def await_decision(scene: Scene) -> str:
    await scene.start("action")
    query = """query($id: ID!) { awaitDecision(taskId: $id, timeoutSeconds: 0) {
      __typename ... on AwaitDecisionSuccess { status } ... on Error { message } } }"""
    return await scene.run("awaitDecision", query, id=scene.task_id)


def bulk(field: str, kind: str, arguments: str) -> Callable[[Scene], Awaitable[str]]:
    """The bulk mutation on the cell's one task: its item answers as the single mutation would, and a
    refused item (as a dry run, always) leaves every table as it was."""

    async def action(scene: Scene) -> str:
        await scene.start(kind)
        query = f"""mutation($ids: [ID!]!, $dry: Boolean!) {{
          {field}(input: {{taskIds: $ids, dryRun: $dry{arguments}}}) {{ __typename
            ... on BulkTasksSuccess {{ succeeded failed items {{ taskId result {TASK_RESULT} }} }} }} }}"""
        before = await database(scene)
        rehearsed = await scene.gql(query, user=scene.actor, ids=[scene.task_id], dry=True)
        assert await database(scene) == before, "a dry run wrote something"
        body = await scene.gql(query, user=scene.actor, ids=[scene.task_id], dry=False)
        [item] = body["data"][field]["items"]
        result = outcome(item["result"]["__typename"])
        assert result == outcome(rehearsed["data"][field]["items"][0]["result"]["__typename"]), (body, rehearsed)
        if result != OK:
            assert await database(scene) == before, f"the refused {field} changed the database"
        return result

    return action


ACTIONS: dict[str, Callable[[Scene], Awaitable[str]]] = {
    "see a task, its messages and documents": see,
    "read a task's and its instance's history": history,
    "claim": claim,
    "assign to someone else": assign,
    "unassign": unassign,
    "save progress": save_progress,
    "submit": submit,
    "approve": decide("approveTask"),
    "reject": decide("rejectTask"),
    "upload documents": upload_documents,
    "download a document": download,
    "post a message": post_message,
    "start a workflow": start_workflow,
    "deploy a definition": deploy,
    "send a raw signal": send_signal,
    "correlate a signal by business key": correlate,
    "cancel a workflow": cancel,
    "retry a failed system task": retry,
    "delegate": delegate,
    "resolve a delegated task": resolve,
    "list the users": list_users,
    "sign in as another user (devSignIn)": dev_sign_in,
    "manage webhooks": manage_webhooks,
    "read webhooks and their delivery logs": read_webhooks,
    "redeliver a webhook delivery": redeliver_webhook,
    "decide an action approval": decide_action,
    "request approval for an action": request_approval,
    "await an action approval's decision": await_decision,
    "claim many (claimTasks)": bulk("claimTasks", "form", ""),
    "assign many to someone else (assignTasks)": bulk("assignTasks", "form", ', userId: "bob"'),
    "approve or reject many (decideTasks)": bulk("decideTasks", "approval", ", decision: APPROVED"),
}
