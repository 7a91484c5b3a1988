"""The GraphQL-over-HTTP specification: media types, status codes, methods, and the `graphql-http` audit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.auth import issue_token
from server.http_spec import APPLICATION_JSON, GRAPHQL_RESPONSE_JSON, negotiate
from server.settings import Settings
from tests.conftest import IN_CI
from tests.server.live import server_processes

GRAPHQL_HTTP_VERSION = "1.23.1"
GRAPHQL_JS_VERSION = "16.12.0"  # graphql-http's peer dependency
SPEC_JSON = {"accept": GRAPHQL_RESPONSE_JSON}
LEGACY_JSON = {"accept": APPLICATION_JSON}


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, APPLICATION_JSON),
        ("", APPLICATION_JSON),
        ("*/*", APPLICATION_JSON),
        ("application/*", APPLICATION_JSON),
        (APPLICATION_JSON, APPLICATION_JSON),
        (GRAPHQL_RESPONSE_JSON, GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON}, {APPLICATION_JSON}", GRAPHQL_RESPONSE_JSON),
        (f"{APPLICATION_JSON}, {GRAPHQL_RESPONSE_JSON}", APPLICATION_JSON),
        (f"{APPLICATION_JSON};q=0.9, {GRAPHQL_RESPONSE_JSON}", GRAPHQL_RESPONSE_JSON),
        (f"*/*, {GRAPHQL_RESPONSE_JSON};q=0.5", APPLICATION_JSON),
        (f"*/*;q=0.8, {GRAPHQL_RESPONSE_JSON}", GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON};q=0, {APPLICATION_JSON}", APPLICATION_JSON),
        ("text/plain", None),
        ("application/xml, text/html;q=0.9", None),
        (f"{APPLICATION_JSON};q=zero", None),
    ],
)
def test_accept_negotiation(accept: str | None, chosen: str | None) -> None:
    assert negotiate(accept) == chosen


async def post(client: httpx.AsyncClient, headers: dict[str, str], query: str, **variables: Any) -> httpx.Response:
    return await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)


async def test_a_parse_error_is_400_without_data_under_the_spec_media_type(client: httpx.AsyncClient) -> None:
    response = await post(client, SPEC_JSON, "{ me {")
    assert response.status_code == 400
    assert response.headers["content-type"] == f"{GRAPHQL_RESPONSE_JSON}; charset=utf-8"
    body = response.json()
    assert "data" not in body and body["errors"][0]["message"].startswith("Syntax Error")


async def test_a_parse_error_is_200_without_data_under_application_json(client: httpx.AsyncClient) -> None:
    response = await post(client, LEGACY_JSON, "{ me {")
    assert response.status_code == 200
    assert response.headers["content-type"] == APPLICATION_JSON
    assert "data" not in response.json() and response.json()["errors"]


async def test_validation_and_variable_errors_are_400_under_the_spec_media_type(client: httpx.AsyncClient) -> None:
    invalid = await post(client, SPEC_JSON, "{ noSuchField }")
    assert invalid.status_code == 400 and "data" not in invalid.json()
    uncoerced = await post(client, SPEC_JSON, "query($first: Int) { __typename }", first="ten")
    assert uncoerced.status_code == 400 and "data" not in uncoerced.json()
    assert "$first" in uncoerced.json()["errors"][0]["message"]


async def test_an_executed_operation_is_200_with_data_even_with_field_errors(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    anonymous = await post(client, SPEC_JSON, "{ me { id } }")
    assert anonymous.status_code == 200
    body = anonymous.json()
    assert "data" in body and body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    signed_in = await post(client, {**SPEC_JSON, "authorization": f"Bearer {issue_token(settings, 'alice')}"},
                           "{ me { id } }")  # fmt: skip
    assert signed_in.status_code == 200 and signed_in.json() == {"data": {"me": {"id": "alice"}}}


async def test_a_bug_before_execution_is_500_under_the_spec_media_type(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(context: object) -> str:
        raise RuntimeError("an extension's bug")

    monkeypatch.setattr("server.rate_limits.client_key", broken)  # runs before every mutation executes
    headers = {**SPEC_JSON, "authorization": f"Bearer {issue_token(settings, 'alice')}"}
    response = await post(client, headers, 'mutation { startWorkflow(input: {definitionKey: "x"}) { __typename } }')
    assert response.status_code == 500 and "data" not in response.json()


async def test_get_runs_queries_and_refuses_mutations_with_405(client: httpx.AsyncClient) -> None:
    query = await client.get("/graphql", params={"query": "{ __typename }"}, headers=SPEC_JSON)
    assert query.status_code == 200 and query.json() == {"data": {"__typename": "Query"}}
    mutation = 'mutation { startWorkflow(input: {definitionKey: "x"}) { __typename } }'
    refused = await client.get("/graphql", params={"query": mutation}, headers=SPEC_JSON)
    assert refused.status_code == 405
    assert refused.headers["allow"] == "POST"
    assert refused.headers["content-type"] == GRAPHQL_RESPONSE_JSON
    assert "POST" in refused.json()["errors"][0]["message"]


@pytest.mark.parametrize("operation_name", [{"name": "Q"}, ["Q"], 7])
async def test_an_operation_name_that_is_not_a_string_is_400(client: httpx.AsyncClient, operation_name: Any) -> None:
    body = {"query": "query Q { __typename }", "operationName": operation_name}
    response = await client.post("/graphql", json=body, headers=LEGACY_JSON)
    assert response.status_code == 400 and "operationName" in response.json()["errors"][0]["message"]


async def test_an_accept_naming_no_json_type_is_406(client: httpx.AsyncClient) -> None:
    response = await post(client, {"accept": "text/plain"}, "{ __typename }")
    assert response.status_code == 406
    assert GRAPHQL_RESPONSE_JSON in response.json()["errors"][0]["message"]


async def test_the_graphiql_page_still_answers_a_browser(client: httpx.AsyncClient) -> None:
    page = await client.get("/graphql", headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


# -- the audit --------------------------------------------------------------------------------

AUDIT_SCRIPT = """
const { serverAudits } = require('graphql-http');
(async () => {
  const results = [];
  for (const audit of serverAudits({ url: process.argv[1] })) {
    const result = await audit.fn();
    results.push({ id: audit.id, name: audit.name, status: result.status, reason: result.reason });
  }
  process.stdout.write(JSON.stringify(results));
})();
"""


def _cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "stepwise-tests" / f"graphql-http-{GRAPHQL_HTTP_VERSION}"


@pytest.fixture(scope="session")
def graphql_http_audit() -> Path:
    """The pinned npm `graphql-http` package installed into a cache directory (once per machine)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        reason = "the graphql-http audit needs Node.js and npm (Debian: apt-get install nodejs npm)"
        if IN_CI:
            pytest.fail(f"CI=true requires the audit: {reason}", pytrace=False)
        pytest.skip(reason)
    prefix = _cache_dir()
    if not (prefix / "node_modules" / "graphql-http" / "package.json").exists():
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix),
             f"graphql-http@{GRAPHQL_HTTP_VERSION}", f"graphql@{GRAPHQL_JS_VERSION}"],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    return prefix


async def test_the_graphql_http_audit_passes_every_check(
    graphql_http_audit: Path, database_url: str, tmp_path: Path
) -> None:
    env = {
        "STEPWISE_DATABASE_URL": database_url,
        "STEPWISE_FILES_DIR": str(tmp_path / "files"),
        "STEPWISE_EMBEDDED_WORKER": "false",
        "STEPWISE_SECRET_KEY": "audit-secret-key-of-at-least-32-bytes",
        # The audit asks anonymously for `__type(name: …)`: a protocol check, not a production setting
        # (anonymous introspection is off by default: tests/server/test_anonymous_schema.py).
        "STEPWISE_ANONYMOUS_INTROSPECTION": "true",
    }
    async with server_processes(1, env, tmp_path) as (url,):
        audit = subprocess.run(
            ["node", "-e", AUDIT_SCRIPT, f"{url}/graphql"],
            cwd=graphql_http_audit, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
    results = json.loads(audit.stdout)
    assert len(results) == 61
    failing = [f"{r['id']} {r['status']}: {r['name']} ({r['reason']})" for r in results if r["status"] != "ok"]
    assert failing == []
