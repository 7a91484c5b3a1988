"""The permission matrix's world (tests/server/test_permission_matrix.py): the users of its columns, the
definitions its tasks come from, and a :class:`Scene`, one cell's instance, task and acting user, with what
the cell's outcome is read from (✓ for a success type, else the error type's name). The actions are in
permission_actions.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select

from engine.storage.models import Base
from engine.transitions.engine import Engine
from server.auth import issue_token
from server.settings import Settings
from tests.server.conftest import GraphQL

USERS = {"admin": "dana", "manager": "carol", "assignee": "erin", "candidate": "bob", "starter": "alice",
         "stranger": "erin"}  # fmt: skip
OK, FORBIDDEN, HIDDEN, HOLDS, NA = "✓", "Forbidden", "NotFound", "InvalidState", "n/a"

DEFINITIONS = {
    "form": {"key": "matrix_form", "start": "form", "nodes": [
        {"id": "form", "type": "userTask", "schemaType": "userTask.form", "assignToRole": "approver",
         "form": {"fields": [{"key": "note", "type": "text", "label": "Note"}]}}]},
    "approval": {"key": "matrix_approval", "start": "decision", "nodes": [
        {"id": "decision", "type": "userTask", "schemaType": "userTask.approval", "assignToRole": "approver"}]},
    "upload": {"key": "matrix_upload", "start": "papers", "nodes": [
        {"id": "papers", "type": "userTask", "schemaType": "userTask.documentUpload", "assignToRole": "approver",
         "documents": [{"key": "scan", "label": "Scan", "accept": ["application/pdf"]}]}]},
    "action": {"key": "matrix_action", "start": "act", "nodes": [
        {"id": "act", "type": "userTask", "schemaType": "userTask.actionApproval", "assignToRole": "approver",
         "config": {"action": "refund", "arguments": {"amount": 5}}}]},
    # Nothing listens on port 9 (discard): the one attempt fails at once, and the task is FAILED.
    "system": {"key": "matrix_system", "start": "call", "nodes": [
        {"id": "call", "type": "http", "config": {"method": "GET", "url": "http://127.0.0.1:9/"},
         "retry": {"maxAttempts": 1}}]},
}  # fmt: skip
PDF = b"%PDF-1.4\n1 0 obj\n<< >>\nendobj\n%%EOF\n"
SUCCESSES = {"TaskSuccess", "TaskMessageSuccess", "DocumentsSuccess", "WorkflowSuccess", "StartWorkflowSuccess",
             "DeploySuccess", "DevSignInSuccess", "WebhookSecretSuccess", "WebhookList", "UserList",
             "WebhookDeliverySuccess", "RequestApprovalSuccess", "AwaitDecisionSuccess"}  # fmt: skip
OUTCOMES = {"Forbidden": FORBIDDEN, "NotFound": HIDDEN, "InvalidState": HOLDS}

UPLOAD = """mutation($id: ID!, $files: [Upload!]!) {
  uploadTaskDocuments(input: {taskId: $id, requirementKey: "scan", files: $files}) {
    __typename ... on DocumentsSuccess { documents { url } } ... on Error { message } } }"""


@dataclass
class Scene:
    """One cell's world: an instance alice started, its task, and the acting user."""

    gql: GraphQL
    client: httpx.AsyncClient
    settings: Settings
    engine: Engine
    role: str
    instance_id: str = ""
    task_id: str = ""

    @property
    def actor(self) -> str:
        return USERS[self.role]

    async def start(self, kind: str, *, assign: bool = True) -> None:
        await self.engine.deploy(DEFINITIONS[kind], deployed_by="dana")
        instance = await self.engine.start(str(DEFINITIONS[kind]["key"]), {}, "alice")
        [token] = instance.tokens
        assert token.task_id is not None
        self.instance_id, self.task_id = instance.id, token.task_id
        if assign and self.role == "assignee":
            await self.assign("erin")

    async def assign(self, user_id: str | None) -> None:
        query = "mutation($id: ID!, $to: ID) { assignTask(input: {taskId: $id, userId: $to}) { __typename } }"
        body = await self.gql(query, user="carol", id=self.task_id, to=user_id)
        assert body["data"]["assignTask"]["__typename"] == "TaskSuccess", body

    async def run(self, field: str, query: str, user: str | None = None, **variables: Any) -> str:
        """The cell's outcome: ✓ for a success type, else the error type's name."""
        body = await self.gql(query, user=user or self.actor, **variables)
        assert "errors" not in body, body
        return outcome(body["data"][field]["__typename"])

    async def upload(self, user: str) -> dict[str, Any]:
        operations = {"query": UPLOAD, "variables": {"id": self.task_id, "files": [None]}}
        response = await self.client.post(
            "/graphql",
            data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.files.0"]})},
            files={"0": ("scan.pdf", PDF, "application/pdf")},
            headers={"Authorization": f"Bearer {issue_token(self.settings, user)}"},
        )
        result: dict[str, Any] = response.json()["data"]["uploadTaskDocuments"]
        return result


def outcome(typename: str) -> str:
    return OK if typename in SUCCESSES else OUTCOMES.get(typename, typename)


TASK_RESULT = "{ __typename ... on Error { message } }"


async def database(scene: Scene) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, to compare before and after a refusal (events numbered first: a
    numbering round after the last commit is not a write of the action's)."""
    await scene.engine.sequencer.idle()
    async with scene.engine.db.read() as session:
        return {
            table.name: sorted(map(tuple, (await session.execute(select(table))).all()), key=repr)
            for table in Base.metadata.sorted_tables
        }
