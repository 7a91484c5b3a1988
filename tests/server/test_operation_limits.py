"""Operation limits: each a document just under its limit and one just over, with the defaults.

A refusal is a request error (400 under application/graphql-response+json, nothing executed) whose
``extensions`` name the limit and its value; the documents the web app and the tests send fit well
within the defaults.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import httpx
import pytest
from graphql.language.lexer import Lexer
from graphql.language.source import Source
from graphql.language.token_kind import TokenKind
from sqlalchemy import func, select

from engine.storage.models import InstanceRow
from engine.transitions.engine import Engine
from server.app import create_app
from server.auth import issue_token
from server.demo import load_demo
from server.settings import Settings

SPEC = {"Accept": "application/graphql-response+json"}
DEFAULTS = Settings()


async def post(client: httpx.AsyncClient, settings: Settings, body: Any, user: str | None = "alice") -> httpx.Response:
    headers = {**SPEC, "Content-Type": "application/json"}
    if user:
        headers["Authorization"] = f"Bearer {issue_token(settings, user)}"
    return await client.post("/graphql", content=json.dumps(body), headers=headers)


def limit_of(response: httpx.Response) -> dict[str, Any] | None:
    """The refusal's extensions, or None when the operation ran."""
    body = response.json()
    if "data" in body:
        assert response.status_code == 200, body
        return None
    assert response.status_code == 400, body
    [error] = body["errors"]
    extensions: dict[str, Any] = error["extensions"]
    return extensions


def nested(depth: int) -> str:
    """A query of exactly ``depth`` (``{ me { id } }`` is 1): tasks → step → tasks → …, one of each."""
    path = ["tasks(first: 1)", "edges", "node", "step"]
    fields = [path[i % len(path)] for i in range(depth)]
    return "{ " + " { ".join(fields) + " { id }" + " }" * depth


async def test_depth(client: httpx.AsyncClient, settings: Settings) -> None:
    assert limit_of(await post(client, settings, {"query": nested(DEFAULTS.max_query_depth)})) is None
    over = limit_of(await post(client, settings, {"query": nested(DEFAULTS.max_query_depth + 1)}))
    assert over == {"code": "MAX_DEPTH_EXCEEDED", "limit": 15}


async def test_nesting_that_would_exhaust_the_parser_is_refused_unparsed(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """950 levels used to be "maximum recursion depth exceeded", a bug's 500."""
    query = "{ me " + "{ id " * 950 + "}" * 951
    refused = limit_of(await post(client, settings, {"query": query}))
    assert refused == {"code": "MAX_DEPTH_EXCEEDED", "limit": 15}


async def test_aliases(client: httpx.AsyncClient, settings: Settings) -> None:
    def aliased(count: int) -> str:
        return "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(count)) + " }"

    assert limit_of(await post(client, settings, {"query": aliased(DEFAULTS.max_aliases)})) is None
    over = limit_of(await post(client, settings, {"query": aliased(DEFAULTS.max_aliases + 1)}))
    assert over == {"code": "MAX_ALIASES_EXCEEDED", "limit": 30}


def tokens_in(query: str) -> int:
    lexer, count = Lexer(Source(query)), 0
    while lexer.advance().kind is not TokenKind.EOF:
        count += 1
    return count


async def test_tokens(client: httpx.AsyncClient, settings: Settings) -> None:
    def of_tokens(count: int) -> str:  # each status in the list is one token
        query = "{ tasks(first: 1, filter: {status: [" + "PENDING " * (count - 19) + "]}) { totalCount } }"
        assert tokens_in(query) == count
        return query

    assert limit_of(await post(client, settings, {"query": of_tokens(DEFAULTS.max_tokens)})) is None
    over = limit_of(await post(client, settings, {"query": of_tokens(DEFAULTS.max_tokens + 1)}))
    assert over == {"code": "MAX_TOKENS_EXCEEDED", "limit": 1000}


async def test_repeated_fields(client: httpx.AsyncClient, settings: Settings) -> None:
    def repeated(count: int) -> str:
        return "{ me { " + "... on User { id } " * count + "} }"

    assert limit_of(await post(client, settings, {"query": repeated(10)})) is None
    over = limit_of(await post(client, settings, {"query": repeated(11)}))
    assert over == {"code": "MAX_REPEATS_EXCEEDED", "limit": 10}


async def test_document_size(client: httpx.AsyncClient, settings: Settings) -> None:
    def of_bytes(size: int) -> str:
        return "{ me { id } }".ljust(size)

    assert limit_of(await post(client, settings, {"query": of_bytes(DEFAULTS.max_document_bytes)})) is None
    over = limit_of(await post(client, settings, {"query": of_bytes(DEFAULTS.max_document_bytes + 1)}))
    assert over == {"code": "MAX_DOCUMENT_BYTES_EXCEEDED", "limit": 32768}


def page(first: int | str, inner: str = "id") -> str:
    return f"tasks(first: {first}) {{ edges {{ node {{ {inner} }} }} }}"


async def test_cost_counts_lists_by_first_and_nested_lists_multiply(settings: Settings) -> None:
    cheap = replace(settings, max_query_cost=340)
    app = create_app(cheap)
    async with app.router.lifespan_context(app):
        await load_demo(app.state.engine)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://stepwise.test") as client:
            # 1 + 113 × 3 = 340: a page costs its `first` times what each edge selects (edges, node, id)
            assert limit_of(await post(client, cheap, {"query": "{ " + page(113) + " }"})) is None
            over = limit_of(await post(client, cheap, {"query": "{ " + page(114) + " }"}))
            assert over == {"code": "MAX_COST_EXCEEDED", "limit": 340, "cost": 343}
            # by a variable too
            query = "query($n: Int!) { " + page("$n") + " }"
            assert limit_of(await post(client, cheap, {"query": query, "variables": {"n": 114}}))["cost"] == 343  # type: ignore[index]
            # the same text again, remembered once parsed (schema/pipeline.py): its cost is still by its variables
            assert limit_of(await post(client, cheap, {"query": query, "variables": {"n": 113}})) is None
            assert limit_of(await post(client, cheap, {"query": query, "variables": {"n": 114}}))["cost"] == 343  # type: ignore[index]
            # 10 tasks, each with a step whose page of 10 costs 31: 1 + 10 × (1 + 1 + 1 + 31) = 341
            inner = "step { " + page(10) + " }"
            over = limit_of(await post(client, cheap, {"query": "{ " + page(10, inner) + " }"}))
            assert over == {"code": "MAX_COST_EXCEEDED", "limit": 340, "cost": 341}


async def test_the_largest_page_the_web_app_asks_for_fits(client: httpx.AsyncClient, settings: Settings) -> None:
    row = ("id kind type name title description status displayStatus priority revision assignedRole assignedGroup "
           "createdAt updatedAt dueAt completedAt assignee { id name } step { id title } "
           "workflowInstance { id definitionKey status } viewerCanClaim viewerCanComplete viewerCanAssign "
           "viewerCanRetry")  # fmt: skip
    query = "{ tasks(first: 200) { totalCount pageInfo { hasNextPage endCursor } edges { node { " + row + " } } } }"
    assert limit_of(await post(client, settings, {"query": query})) is None


async def test_first_has_a_maximum(client: httpx.AsyncClient, settings: Settings) -> None:
    within = (await post(client, settings, {"query": "{ " + page(200) + " }"})).json()
    assert "errors" not in within
    over = (await post(client, settings, {"query": "{ " + page(201) + " }"})).json()
    [error] = over["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "between 0 and 200" in error["message"]


async def test_several_operations_need_an_operation_name(client: httpx.AsyncClient, settings: Settings) -> None:
    query = " ".join(f"query Q{i} {{ me {{ id }} }}" for i in range(50))
    refused = limit_of(await post(client, settings, {"query": query}))
    assert refused == {"code": "OPERATION_NAME_REQUIRED"}
    named = (await post(client, settings, {"query": query, "operationName": "Q7"})).json()
    assert named == {"data": {"me": {"id": "alice"}}}


async def test_batched_requests_are_refused(client: httpx.AsyncClient, settings: Settings) -> None:
    response = await post(client, settings, [{"query": "{ me { id } }"}, {"query": "{ me { id } }"}])
    assert response.status_code == 400 and "data" not in response.json()


@pytest.mark.parametrize("limit", ["aliases", "tokens"])
async def test_a_refused_mutation_runs_no_resolver(
    client: httpx.AsyncClient, settings: Settings, engine: Engine, limit: str
) -> None:
    start = 'startWorkflow(input: {definitionKey: "expense_approval", input: {}}) { __typename }'
    if limit == "aliases":
        query = "mutation { " + " ".join(f"s{i}: {start}" for i in range(31)) + " }"
    else:
        query = "mutation { " + start.replace("__typename", "__typename " * 1000) + " }"
    response = await post(client, settings, {"query": query})
    assert response.status_code == 400, response.text
    async with engine.db.read() as session:
        assert (await session.execute(select(func.count()).select_from(InstanceRow))).scalar() == 0
