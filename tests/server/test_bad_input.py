"""Bad input gets a typed answer, one log line and no change.

Before, each of these was a plain-text 500 or "Unexpected error." with a full traceback in the log:
a NUL (PostgreSQL refuses it) or a lone surrogate in any string, ``1e400``, JSON nested 950 deep, a
5,001-digit integer, invalid UTF-8, a body that is only ``"s"``, a multipart ``map`` that is not an
object, a database gone while authenticating, a files directory that cannot be written, and a
cursor whose error quoted Python's JSON decoder.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select
from starlette.applications import Starlette

from engine.clock import ManualClock
from engine.storage.models import Base
from engine.transitions.engine import Engine
from server.app import create_app
from server.auth import issue_token
from server.demo import load_demo
from server.settings import Settings
from tests.server.conftest import GraphQL
from tests.server.test_documents import PDF, UPLOAD, receipt_task
from tests.server.test_workflow_api import START
from tests.support import free_port

STRINGY = 'mutation($body: String!) { postTaskMessage(input: {taskId: "nope", body: $body}) { __typename } }'


async def everything(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table: what "the database is unchanged" compares."""
    async with engine.db.read() as session:
        return {table.name: [tuple(row) for row in (await session.execute(select(table))).all()]
                for table in Base.metadata.sorted_tables}  # fmt: skip


def bearer(settings: Settings, user: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(settings, user)}"}


async def raw(client: httpx.AsyncClient, settings: Settings, body: bytes, **headers: str) -> httpx.Response:
    return await client.post("/graphql", content=body,
                             headers={"Content-Type": "application/json", **bearer(settings), **headers})  # fmt: skip


@pytest.fixture
def one_line_each(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    return caplog


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert record.exc_info is None and "Traceback" not in record.getMessage(), record.getMessage()


UNREADABLE = {
    "1e400": b'{"query": "{ me { id } }", "variables": {"x": 1e400}}',
    "-1e400": b'{"query": "{ me { id } }", "variables": {"x": -1e400}}',
    "NaN": b'{"query": "{ me { id } }", "variables": {"x": NaN}}',
    "5,001 digits": b'{"query": "{ me { id } }", "variables": {"x": ' + b"9" * 5001 + b"}}",
    "nested 950 deep": b'{"query": "{ me { id } }", "variables": {"x": ' + b"[" * 950 + b"]" * 950 + b"}}",
    "nested 100,000 deep": b'{"query": "{ me { id } }", "variables": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
    "invalid UTF-8": b'{"query": "{ me { id } }", "variables": {"x": "\xff\xfe\xc3"}}',
    "a string": b'"s"',
    "a number": b"42",
    "null": b"null",
    "not JSON": b"s",
    "empty": b"",
}


async def test_an_unreadable_body_is_400_json(
    client: httpx.AsyncClient, settings: Settings, one_line_each: pytest.LogCaptureFixture
) -> None:
    for case, body in UNREADABLE.items():
        response = await raw(client, settings, body)
        assert response.status_code == 400, (case, response.text)
        assert response.headers["content-type"].startswith("application/json"), case
        assert "data" not in response.json() and response.json()["errors"], case
    assert_no_traceback(one_line_each)


async def test_text_no_database_stores_is_refused_naming_the_field(
    gql: GraphQL, client: httpx.AsyncClient, settings: Settings, app_engine: Engine,
    one_line_each: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    before = await everything(app_engine)
    cases = [
        ({"query": START, "variables": {"input": {"definitionKey": "expense_approval",
                                                  "input": {"title": "a\x00b"}}}}, "input.input.title"),
        ({"query": START, "variables": {"input": {"definitionKey": "expense_approval",
                                                  "input": {"a\x00": 1}}}}, "input.input.'a\\x00'"),
        ({"query": STRINGY, "variables": {"body": "lone \ud800 surrogate"}}, "body"),
        ({"query": 'mutation { postTaskMessage(input: {taskId: "t", body: "nul \\u0000 here"}) { __typename } }'},
         "input.body"),
        ({"query": '{ task(id: "x\\u0000") { id } }'}, "id"),
    ]  # fmt: skip
    for body, field in cases:
        response = await raw(client, settings, json.dumps(body).encode())
        [error] = response.json()["errors"]
        assert error["extensions"]["code"] == "VALIDATION_FAILED", error
        assert error["extensions"]["field"] == field, error
    assert await everything(app_engine) == before
    assert_no_traceback(one_line_each)


async def test_a_multipart_map_that_is_not_an_object_is_400(gql: GraphQL, client: httpx.AsyncClient,
                                                             settings: Settings) -> None:  # fmt: skip
    _, task_id = await receipt_task(gql)
    operations = json.dumps({"query": UPLOAD, "variables": {"id": task_id, "key": "receipt", "files": [None]}})
    for mapping in ("[1, 2]", '"s"', '{"0": "variables.files.0"}', '{"0": ["variables.files.x"]}', '{"0": [7]}',
                    "{", '{"0": ["variables.nope.0.deeper"]}'):  # fmt: skip
        response = await client.post(
            "/graphql", data={"operations": operations, "map": mapping},
            files={"0": ("receipt.pdf", PDF, "application/pdf")}, headers=bearer(settings),
        )  # fmt: skip
        assert response.status_code == 400, (mapping, response.text)
        assert response.json()["errors"][0]["message"], mapping
    for operations_value in ('"s"', "7", "{"):
        response = await client.post(
            "/graphql", data={"operations": operations_value, "map": "{}"}, headers=bearer(settings),
            files={"0": ("receipt.pdf", PDF, "application/pdf")},
        )  # fmt: skip
        assert response.status_code == 400, (operations_value, response.text)


async def test_bad_cursors_say_only_that(gql: GraphQL) -> None:
    tasks = "query($after: String) { tasks(first: 2, after: $after) { totalCount } }"
    nul_id = base64.urlsafe_b64encode(json.dumps(["CREATED_AT", "2026-01-01T00:00:00+00:00", "\u0000"]).encode())
    for after in ("", "!!!", "bm90IGpzb24", "WzEsMiwzXQ==", nul_id.decode(), "x" * 10_000):
        body = await gql(tasks, user="dana", after=after)
        [error] = body["errors"]
        assert error["message"] == "after is not a cursor of this query", (after, error)
        assert error["extensions"]["fieldErrors"] == [
            {"field": "after", "message": "not a cursor of this query", "code": "INVALID_CURSOR"}
        ]


@pytest.fixture
async def unwritable_files(settings: Settings, clock: ManualClock, tmp_path: Path) -> AsyncIterator[Starlette]:
    """A files directory under a regular file: every write there fails as on a read-only or full disk."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    application = create_app(replace(settings, files_dir=blocker / "files"), clock=clock)
    async with application.router.lifespan_context(application):
        await load_demo(application.state.engine)
        yield application


async def test_a_files_directory_that_cannot_be_written_is_503(
    unwritable_files: Starlette, settings: Settings, one_line_each: pytest.LogCaptureFixture
) -> None:
    transport = httpx.ASGITransport(app=unwritable_files)
    async with httpx.AsyncClient(transport=transport, base_url="http://stepwise.test") as client:

        async def gql(query: str, user: str | None = None, **variables: Any) -> dict[str, Any]:
            response = await client.post("/graphql", json={"query": query, "variables": variables},
                                         headers=bearer(settings, user or "alice"))  # fmt: skip
            body: dict[str, Any] = response.json()
            return body

        _, task_id = await receipt_task(gql)
        before = await everything(unwritable_files.state.engine)
        operations = json.dumps({"query": UPLOAD, "variables": {"id": task_id, "key": "receipt", "files": [None]}})
        response = await client.post(
            "/graphql", data={"operations": operations, "map": '{"0": ["variables.files.0"]}'},
            files={"0": ("receipt.pdf", PDF, "application/pdf")}, headers=bearer(settings),
        )  # fmt: skip
        assert response.status_code == 503 and response.headers["retry-after"]
        [error] = response.json()["errors"]
        assert error["extensions"]["code"] == "UNAVAILABLE" and "cannot be stored" in error["message"]
        assert await everything(unwritable_files.state.engine) == before
    assert_no_traceback(one_line_each)


async def test_a_database_gone_while_authenticating_is_503(
    app: Starlette, client: httpx.AsyncClient, settings: Settings, dialect: str, database_url: str,
    one_line_each: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    engine: Engine = app.state.engine
    await engine.db.engine.dispose()
    if dialect == "sqlite":
        path = Path(database_url.removeprefix("sqlite+aiosqlite:///"))
        aside = path.with_suffix(".aside")
        shutil.move(path, aside)
        try:
            response = await client.post("/graphql", json={"query": "{ me { id } }"}, headers=bearer(settings))
        finally:
            await engine.db.engine.dispose()
            path.unlink(missing_ok=True)
            shutil.move(aside, path)
    else:  # PostgreSQL "restarting": every new connection is refused, as by a server that is down

        def to_a_closed_port(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
            cparams["port"] = free_port()

        event.listen(engine.db.engine.sync_engine, "do_connect", to_a_closed_port)
        try:
            response = await client.post("/graphql", json={"query": "{ me { id } }"}, headers=bearer(settings))
        finally:
            event.remove(engine.db.engine.sync_engine, "do_connect", to_a_closed_port)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"]
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAVAILABLE"
    assert "database" in response.json()["errors"][0]["message"]
    assert_no_traceback(one_line_each)
    assert (await client.post("/graphql", json={"query": "{ me { id } }"}, headers=bearer(settings))).json() == {
        "data": {"me": {"id": "alice"}}
    }
