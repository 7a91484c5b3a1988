"""Generated input thrown at every mutation, on both databases (clean errors for every bad input).

Hypothesis builds each mutation's ``input`` from its fields with values of any JSON shape — text
with NUL characters and lone surrogates, integers far past 64 bits, floats, deep lists and objects,
nulls, and sometimes a real task or instance id — and posts it to ``/graphql``. Every answer must be
a success or a typed error (a member of the mutation's union implementing ``Error``, or a top-level
error with a code or a request error that executed nothing), never a bug's masked error or a 500;
and after every refusal the database is exactly as it was.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.clock import ManualClock
from engine.transitions.engine import Engine
from server.app import create_app
from server.auth import issue_token
from server.demo import load_demo
from server.settings import Settings
from tests.server.test_bad_input import everything
from tests.server.test_mutation_errors import MUTATIONS, mutation_types
from tests.server.test_workflow_api import start_expense

TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=12) | st.sampled_from(
    ["", "\x00", "a\x00b", "\ud800", "x\udfffy", "é" * 3, " ", "expense_approval", "alice", "request"]
)
SCALARS = (
    TEXT | st.booleans() | st.none()
    | st.integers(min_value=-(2**70), max_value=2**70) | st.sampled_from([2**31, -(2**31) - 1, 10**40, 0, -1])
    | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([1e308, -1e-308, 0.1])
)  # fmt: skip
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                    max_leaves=8)  # fmt: skip
CODES = {"BAD_USER_INPUT", "VALIDATION_FAILED", "UNAUTHENTICATED", "MAX_DEPTH_EXCEEDED", "MAX_COST_EXCEEDED",
         "BODY_TOO_LARGE"}  # fmt: skip


def shaped_like(template: object, key: str, ids: list[str]) -> st.SearchStrategy[Any]:
    """Mostly a value of the template's kind (so most inputs pass GraphQL's type check and reach the
    resolvers), sometimes anything at all."""
    shaped: st.SearchStrategy[Any]
    if isinstance(template, str):
        shaped = TEXT | st.sampled_from(ids) if key.endswith("Id") else TEXT
    elif isinstance(template, dict):
        shaped = st.dictionaries(TEXT | st.sampled_from(["amount", "description", "title"]), JSON, max_size=4)
    elif isinstance(template, list):
        shaped = st.lists(JSON, max_size=3)
    else:
        shaped = JSON
    return st.one_of(shaped, shaped, shaped, JSON)


@dataclass
class Arena:
    engine: Engine
    client: httpx.AsyncClient
    types: dict[str, tuple[str, set[str], set[str]]]
    """Each mutation's input type, its union's members and those that are errors."""
    ids: list[str]
    """A real workflow instance's id and its task's."""


@pytest.fixture
async def arena(settings: Settings, clock: ManualClock) -> AsyncIterator[Arena]:
    """The app without its mutation rate limit (the examples are many mutations in a row), an
    expense workflow started, and the mutations' types read once."""
    application = create_app(replace(settings, mutations_per_minute=0), clock=clock)
    async with application.router.lifespan_context(application):
        await load_demo(application.state.engine)
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://stepwise.test") as client:

            async def gql(query: str, user: str | None = "alice", **variables: Any) -> dict[str, Any]:
                headers = {"Authorization": f"Bearer {issue_token(settings, user)}"} if user else {}
                response = await client.post("/graphql", json={"query": query, "variables": variables},
                                             headers=headers)  # fmt: skip
                body: dict[str, Any] = response.json()
                return body

            instance = await start_expense(gql)
            # deployed on the first request of the process, refused or not (engine.ApprovalRequestService)
            await application.state.services.approval_requests.ensure_definition()
            yield Arena(application.state.engine, client, await mutation_types(gql),
                        [instance["id"], instance["tasks"][0]["id"]])  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])  # fmt: skip
@given(data=st.data())
async def test_generated_input_gets_a_typed_answer_and_changes_nothing_when_refused(
    arena: Arena, settings: Settings, data: st.DataObject
) -> None:
    mutation = data.draw(st.sampled_from(MUTATIONS), label="mutation")
    fields = {key: data.draw(shaped_like(value, key, arena.ids), label=key) for key, value in mutation.input.items()}
    extra: st.SearchStrategy[dict[str, Any]] = st.just({}) | st.just({}) | st.dictionaries(TEXT, JSON, max_size=2)
    fields |= data.draw(extra, label="extra fields")
    user = data.draw(st.sampled_from(["alice", "dana", "erin", None]), label="user")
    input_type, members, errors = arena.types[mutation.name]
    query = (f"mutation($input: {input_type}!) {{ {mutation.name}(input: $input) {{ __typename "
             "... on Error { code message } } }")  # fmt: skip
    before = await everything(arena.engine)
    headers = {"Content-Type": "application/json"}
    if user is not None:
        headers["Authorization"] = f"Bearer {issue_token(settings, user)}"
    body_bytes = json.dumps({"query": query, "variables": {"input": fields}}).encode()
    response = await arena.client.post("/graphql", content=body_bytes, headers=headers)
    assert response.status_code in (200, 400), response.text
    body = response.json()
    refused = True
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        assert error["message"] != "Unexpected error.", (mutation.name, fields, body)
        assert code in CODES or (code is None and "path" not in error), (mutation.name, fields, body)
    result = (body.get("data") or {}).get(mutation.name)
    if result is not None:
        assert result["__typename"] in members, (mutation.name, body)
        refused = result["__typename"] in errors
    if refused:
        assert await everything(arena.engine) == before, (mutation.name, fields, body)
