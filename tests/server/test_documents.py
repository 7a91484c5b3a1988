"""Document uploads (GraphQL multipart requests) and downloads through the real HTTP app."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from engine.storage.models import documents, task_events
from engine.tasks.sniffing import accepts, clean_filename, sniff
from engine.transitions.engine import Engine
from server.auth import issue_token
from server.settings import Settings
from tests.server.conftest import GraphQL
from tests.server.test_task_api import SUBMIT, VALID, snapshot
from tests.server.test_workflow_api import START, start_expense

PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
NO_SUCH_ID = "00000000-0000-7000-8000-000000000000"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48

UPLOAD = """mutation($id: ID!, $key: String!, $files: [Upload!]!) {
  uploadTaskDocuments(input: {taskId: $id, requirementKey: $key, files: $files}) {
    __typename
    ... on DocumentsSuccess {
      documents { id requirementKey filename contentType size sha256 url uploadedBy { id } }
      task { id status revision assignee { id } documents { id filename } }
    }
    ... on ValidationFailed { message fieldErrors { field code message } }
    ... on Error { code message }
  }
}"""

File = tuple[str, bytes, str]


async def upload(
    client: httpx.AsyncClient, settings: Settings, user: str, task_id: str, files: list[File | Any],
    key: str = "receipt",
) -> dict[str, Any]:  # fmt: skip
    """A GraphQL multipart request; a non-tuple entry goes inline in the variables (not as a file)."""
    variables = {"id": task_id, "key": key, "files": [None if isinstance(f, tuple) else f for f in files]}
    mapping = {str(i): [f"variables.files.{i}"] for i, f in enumerate(files) if isinstance(f, tuple)}
    parts = {str(i): f for i, f in enumerate(files) if isinstance(f, tuple)}
    response = await client.post(
        "/graphql",
        data={"operations": json.dumps({"query": UPLOAD, "variables": variables}), "map": json.dumps(mapping)},
        files=parts,
        headers={"Authorization": f"Bearer {issue_token(settings, user)}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["uploadTaskDocuments"]
    return result


async def receipt_task(gql: GraphQL) -> tuple[dict[str, Any], str]:
    """An expense instance whose form alice submitted: its receipt task waits, unassigned."""
    instance = await start_expense(gql)
    done = await gql(SUBMIT, user="alice", id=instance["tasks"][0]["id"], values=VALID)
    assert done["data"]["submitTask"]["task"]["status"] == "COMPLETED"
    tasks = await gql("query($id: ID!) { workflowInstance(id: $id) { tasks { id nodeId } } }", user="alice",
                      id=instance["id"])  # fmt: skip
    [receipt] = [t["id"] for t in tasks["data"]["workflowInstance"]["tasks"] if t["nodeId"] == "receipt"]
    return instance, receipt


def blobs_in(files_dir: Path) -> list[Path]:
    return sorted(p for p in files_dir.rglob("*") if p.is_file()) if files_dir.exists() else []


async def document_rows(engine: Engine) -> int:
    async with engine.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(documents)) or 0)


def bearer(settings: Settings, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(settings, user)}"}


async def test_upload_sniffs_stores_and_downloads(
    gql: GraphQL, client: httpx.AsyncClient, settings: Settings, app_engine: Engine
) -> None:
    instance, task_id = await receipt_task(gql)
    # The PNG claims to be a PDF: its bytes decide. The path in the filename is dropped.
    files = [("receipt.pdf", PDF, "application/pdf"), ("../../photo.png", PNG, "application/pdf")]
    result = await upload(client, settings, "alice", task_id, files)
    assert result["__typename"] == "DocumentsSuccess", result
    pdf, png = result["documents"]
    assert (pdf["filename"], pdf["contentType"], pdf["size"]) == ("receipt.pdf", "application/pdf", len(PDF))
    assert (png["filename"], png["contentType"], png["size"]) == ("photo.png", "image/png", len(PNG))
    assert pdf["sha256"] == hashlib.sha256(PDF).hexdigest() and pdf["url"] == f"/files/documents/{pdf['id']}"
    assert pdf["uploadedBy"] == {"id": "alice"} and pdf["requirementKey"] == "receipt"
    task = result["task"]
    assert task["status"] == "CLAIMED" and task["assignee"] == {"id": "alice"}, "a candidate's upload claims"
    assert [d["id"] for d in task["documents"]] == [pdf["id"], png["id"]]

    stored = blobs_in(settings.files_dir)
    assert stored == sorted(settings.files_dir / s[:2] / s for s in (pdf["sha256"], png["sha256"]))
    assert stored[0].read_bytes() in (PDF, PNG)
    async with app_engine.db.read() as session:
        kinds = [(row.kind, row.data) for row in await session.execute(
            select(task_events.c.kind, task_events.c.data).where(task_events.c.task_id == task_id)
            .order_by(task_events.c.id))]  # fmt: skip
    # The events also record what changed for the task's history (status, assignee, revision).
    assert [kind for kind, _ in kinds] == ["CREATED", "CLAIMED", "UPDATED"]
    assert kinds[1][1]["assignee"] == {"from": None, "to": "alice"}
    assert {k: kinds[2][1][k] for k in ("documentsAdded", "requirementKey")} == {
        "documentsAdded": [pdf["id"], png["id"]], "requirementKey": "receipt"}  # fmt: skip

    for user in ("alice", "dana", "carol"):
        response = await client.get(pdf["url"], headers=bearer(settings, user))
        assert response.status_code == 200 and response.content == PDF, user
    response = await client.get(png["url"], headers=bearer(settings, "alice"))
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"] == 'attachment; filename="photo.png"'
    assert response.headers["x-content-type-options"] == "nosniff"

    for user in ("bob", "erin"):  # they may not see the receipt task: as if it did not exist
        assert (await client.get(pdf["url"], headers=bearer(settings, user))).status_code == 404
    unknown = await client.get(f"/files/documents/{NO_SUCH_ID}", headers=bearer(settings, "dana"))
    assert unknown.status_code == 404
    assert (await client.get(pdf["url"])).status_code == 401
    forged = await client.get(pdf["url"], headers={"Authorization": "Bearer x.y.z"})
    assert forged.status_code == 401 and forged.headers["www-authenticate"] == "Bearer"


async def test_every_bad_file_is_reported_and_nothing_is_kept(
    gql: GraphQL, client: httpx.AsyncClient, settings: Settings, app_engine: Engine
) -> None:
    _, task_id = await receipt_task(gql)
    before = await snapshot(app_engine)
    text = b"just some words, not a receipt\n"
    result = await upload(client, settings, "alice", task_id, [
        ("receipt.pdf", EXE, "application/pdf"),  # an executable that says it is a PDF
        ("scan.png", text, "image/png"),
        ("empty.pdf", b"", "application/pdf"),
        ("fine.png", PNG, "image/png"),
    ])  # fmt: skip
    assert result["__typename"] == "ValidationFailed"
    assert {e["field"]: e["code"] for e in result["fieldErrors"]} == {
        "files": "TOO_MANY_FILES", "files.0": "UNSUPPORTED_TYPE", "files.1": "UNSUPPORTED_TYPE",
        "files.2": "EMPTY_FILE",
    }  # fmt: skip
    messages = {e["field"]: e["message"] for e in result["fieldErrors"]}
    assert "application/vnd.microsoft.portable-executable" in messages["files.0"]
    assert "text/plain" in messages["files.1"]
    assert await snapshot(app_engine) == before and await document_rows(app_engine) == 0
    assert blobs_in(settings.files_dir) == [], "rejected uploads leave no blob and no temporary file"


async def test_max_files_counts_earlier_uploads(
    gql: GraphQL, client: httpx.AsyncClient, settings: Settings, app_engine: Engine
) -> None:
    _, task_id = await receipt_task(gql)
    first = await upload(client, settings, "alice", task_id, [("a.pdf", PDF, "application/pdf")] * 2)
    assert first["__typename"] == "DocumentsSuccess"
    second = await upload(client, settings, "alice", task_id, [("b.png", PNG, "image/png")] * 2)
    assert second["__typename"] == "ValidationFailed"
    [error] = second["fieldErrors"]
    assert error["field"] == "files" and error["code"] == "TOO_MANY_FILES" and "2 uploaded" in error["message"]
    third = await upload(client, settings, "alice", task_id, [("b.png", PNG, "image/png")])
    assert third["__typename"] == "DocumentsSuccess" and len(third["task"]["documents"]) == 3
    assert len(blobs_in(settings.files_dir)) == 2, "identical bytes share one blob"


async def test_an_inline_value_where_a_file_belongs_is_a_typed_error(
    gql: GraphQL, client: httpx.AsyncClient, settings: Settings, app_engine: Engine
) -> None:
    _, task_id = await receipt_task(gql)
    before = await snapshot(app_engine)
    as_json = await gql(UPLOAD, user="alice", id=task_id, key="receipt", files=["not a file", {"name": "x"}])
    result = as_json["data"]["uploadTaskDocuments"]
    assert result["__typename"] == "ValidationFailed"
    assert [(e["field"], e["code"]) for e in result["fieldErrors"]] == [("files.0", "NOT_A_FILE"),
                                                                        ("files.1", "NOT_A_FILE")]  # fmt: skip
    literal = 'mutation($id: ID!) { uploadTaskDocuments(input: {taskId: $id, requirementKey: "receipt", '
    literal += 'files: ["x"]}) { __typename ... on ValidationFailed { fieldErrors { field code } } } }'
    inline = (await gql(literal, user="alice", id=task_id))["data"]["uploadTaskDocuments"]
    assert inline == {"__typename": "ValidationFailed", "fieldErrors": [{"field": "files.0", "code": "NOT_A_FILE"}]}
    mixed = await upload(client, settings, "alice", task_id, [("ok.pdf", PDF, "application/pdf"), "sneaky"])
    assert [(e["field"], e["code"]) for e in mixed["fieldErrors"]] == [("files.1", "NOT_A_FILE")]
    empty = (await gql(UPLOAD, user="alice", id=task_id, key="receipt", files=[]))["data"]["uploadTaskDocuments"]
    assert [(e["field"], e["code"]) for e in empty["fieldErrors"]] == [("files", "NO_FILES")]
    assert await snapshot(app_engine) == before and blobs_in(settings.files_dir) == []


async def test_who_may_upload_where(
    gql: GraphQL, client: httpx.AsyncClient, settings: Settings, app_engine: Engine
) -> None:
    instance, task_id = await receipt_task(gql)
    before = await snapshot(app_engine)
    good = [("receipt.pdf", PDF, "application/pdf")]
    assert (await upload(client, settings, "erin", task_id, good))["__typename"] == "NotFound"
    assert (await upload(client, settings, "bob", task_id, good))["__typename"] == "NotFound"
    unknown = await upload(client, settings, "alice", NO_SUCH_ID, good)
    assert unknown["__typename"] == "NotFound"
    manager = await upload(client, settings, "carol", task_id, good)
    assert manager["__typename"] == "Forbidden", "carol sees the task but is not a candidate"
    wrong_key = await upload(client, settings, "alice", task_id, good, key="invoice")
    assert wrong_key["__typename"] == "ValidationFailed"
    assert [(e["field"], e["code"]) for e in wrong_key["fieldErrors"]] == [("requirementKey", "UNKNOWN_REQUIREMENT")]
    form_task = instance["tasks"][0]["id"]  # the completed expense form: not a document task
    assert (await upload(client, settings, "alice", form_task, good))["__typename"] == "InvalidState"
    assert await snapshot(app_engine) == before and blobs_in(settings.files_dir) == []

    assign = """mutation($id: ID!, $to: ID) { assignTask(input: {taskId: $id, userId: $to}) { __typename } }"""
    assert (await gql(assign, user="carol", id=task_id, to="dana"))["data"]["assignTask"]["__typename"] == "TaskSuccess"
    refused = await upload(client, settings, "alice", task_id, good)
    assert refused["__typename"] == "Forbidden", "a candidate may not work on a task someone else holds"
    assert (await upload(client, settings, "dana", task_id, good))["__typename"] == "DocumentsSuccess"


async def test_submitting_a_document_task_checks_each_requirement(
    gql: GraphQL, client: httpx.AsyncClient, settings: Settings, app_engine: Engine
) -> None:
    definition = {
        "key": "paperwork", "start": "papers",
        "nodes": [{"id": "papers", "type": "userTask", "schemaType": "userTask.documentUpload", "storeAs": "papers",
                   "assignToRole": "requester",
                   "documents": [{"key": "id", "label": "Identity card", "accept": ["image/*"], "maxFiles": 1},
                                 {"key": "contract", "label": "Signed contract", "accept": ["application/pdf"],
                                  "minFiles": 1, "maxBytes": 200},
                                 {"key": "extra", "label": "Anything else", "minFiles": 0}]}],
    }  # fmt: skip
    deploy = "mutation($d: JSON!) { deployWorkflowDefinition(input: {definition: $d}) { __typename } }"
    assert (await gql(deploy, user="dana", d=definition))["data"]["deployWorkflowDefinition"]["__typename"] == (
        "DeploySuccess"
    )
    started = (await gql(START, user="alice", key="paperwork", input={}))["data"]["startWorkflow"]
    instance_id, task_id = started["workflowInstance"]["id"], started["workflowInstance"]["tasks"][0]["id"]

    missing = (await gql(SUBMIT, user="alice", id=task_id))["data"]["submitTask"]
    assert missing["__typename"] == "ValidationFailed"
    assert {e["field"]: e["code"] for e in missing["fieldErrors"]} == {
        "documents.id": "MISSING_DOCUMENT", "documents.contract": "MISSING_DOCUMENT"}  # fmt: skip

    too_big = await upload(client, settings, "alice", task_id, [("c.pdf", PDF + b" " * 200, "application/pdf")],
                           key="contract")  # fmt: skip
    assert [(e["field"], e["code"]) for e in too_big["fieldErrors"]] == [("files.0", "TOO_LARGE")]
    contract = await upload(client, settings, "alice", task_id, [("c.pdf", PDF, "application/pdf")], key="contract")
    assert contract["__typename"] == "DocumentsSuccess"
    half = (await gql(SUBMIT, user="alice", id=task_id))["data"]["submitTask"]
    assert [e["field"] for e in half["fieldErrors"]] == ["documents.id"]
    card = await upload(client, settings, "alice", task_id, [("id.png", PNG, "image/png")], key="id")
    notes = await upload(client, settings, "alice", task_id, [("notes.txt", b"call back on Monday\n", "text/plain")],
                         key="extra")  # fmt: skip
    assert notes["documents"][0]["contentType"] == "text/plain"

    done = (await gql(SUBMIT, user="alice", id=task_id))["data"]["submitTask"]
    assert done["__typename"] == "TaskSuccess" and done["task"]["status"] == "COMPLETED"
    expected = [
        {"id": d["id"], "requirementKey": d["requirementKey"], "filename": d["filename"],
         "contentType": d["contentType"], "size": d["size"], "sha256": d["sha256"]}
        for d in (contract["documents"][0], card["documents"][0], notes["documents"][0])
    ]  # fmt: skip
    assert done["task"]["output"] == {"documents": expected}
    data = await gql("query($id: ID!) { workflowInstance(id: $id) { status data } }", user="alice", id=instance_id)
    assert data["data"]["workflowInstance"] == {"status": "COMPLETED", "data": {"papers": {"documents": expected}}}
    late = await upload(client, settings, "alice", task_id, [("x.png", PNG, "image/png")], key="extra")
    assert late["__typename"] == "InvalidState"


@pytest.mark.parametrize(
    ("head", "declared", "accept", "expected"),
    [
        (PDF, None, (), "application/pdf"),
        (PNG, "application/pdf", ("application/pdf",), "image/png"),
        (b"PK\x03\x04" + b"\x00" * 40, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", (),
         "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        (b"a,b\n1,2\n", "text/csv", (), "text/csv"),
        (b"a,b\n1,2\n", "application/pdf", (), "text/plain"),
        (b"\x00\x01\x02\x03binary", "image/png", (), "application/octet-stream"),
    ],
)  # fmt: skip
def test_sniffing_trusts_bytes_over_the_declared_type(
    head: bytes, declared: str | None, accept: tuple[str, ...], expected: str
) -> None:
    assert sniff(head, declared, accept) == expected


def test_accept_patterns_and_filenames() -> None:
    assert accepts(["image/*"], "image/png") and accepts(["*/*"], "text/plain")
    assert accepts(["application/pdf"], "application/pdf") and not accepts(["application/pdf", "image/*"], "text/plain")
    assert clean_filename("C:\\Users\\me\\scan.pdf") == "scan.pdf" and clean_filename("../..") == "upload"
    assert clean_filename(None) == "upload" and clean_filename("a\x00b\nc.pdf") == "abc.pdf"
    long = clean_filename("x" * 300 + ".pdf")
    assert len(long) == 255 and long.endswith(".pdf")


async def test_an_anonymous_multipart_request_is_refused(
    gql: GraphQL, client: httpx.AsyncClient, settings: Settings
) -> None:
    """Why no CSRF header is needed: a cross-site form cannot send the bearer token, so it is anonymous,
    and an anonymous upload is refused with 401 before its body is read (tests/server/test_request_bodies.py)."""
    _, task_id = await receipt_task(gql)
    operations = {"query": UPLOAD, "variables": {"id": task_id, "key": "receipt", "files": [None]}}
    response = await client.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.files.0"]})},
        files={"0": ("receipt.pdf", PDF, "application/pdf")},
    )
    body = response.json()
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert "data" not in body and body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert blobs_in(settings.files_dir) == []
