"""Service accounts: API clients that are not people ask for approvals, are shown as the
requester, and never decide one, whatever their roles."""

from __future__ import annotations

import httpx
import jwt
import pytest
from click.testing import CliRunner

from engine import DirectoryRepository, Engine
from server.auth import issue_token
from server.cli import main
from server.settings import Settings
from tests.server.conftest import GraphQL
from tests.server.test_action_approvals import AWAIT, ask, counts, decide

SECRET = "test-secret-key-of-at-least-thirty-two-bytes"


async def make_service_account(engine: Engine, name: str, *roles: str) -> None:
    """What ``stepwise service-account create`` writes (the command runs its own event loop)."""
    async with engine.db.transaction() as session:
        await DirectoryRepository(session).save_user(name, name, None, {"service", *roles}, (), engine.clock.now())


def test_the_command_creates_the_account_and_prints_a_token_marked_as_a_service(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STEPWISE_DATABASE_URL", database_url)
    monkeypatch.setenv("STEPWISE_SECRET_KEY", SECRET)
    runner = CliRunner()
    assert runner.invoke(main, ["demo", "load"]).exit_code == 0
    created = runner.invoke(main, ["service-account", "create", "refund-bot", "--roles", "agents,requester"])
    assert created.exit_code == 0, created.output
    claims = jwt.decode(created.output.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "refund-bot" and claims["service"] is True
    renewed = runner.invoke(main, ["token", "refund-bot"])
    assert jwt.decode(renewed.output.strip(), SECRET, algorithms=["HS256"])["service"] is True
    person = runner.invoke(main, ["service-account", "create", "alice"])
    assert person.exit_code != 0 and "is a person" in person.output


async def test_a_service_account_asks_is_shown_as_the_requester_and_cannot_decide(
    gql: GraphQL, app_engine: Engine
) -> None:
    # It even holds the approvers' role: separation of asker and decider does not depend on roles.
    await make_service_account(app_engine, "refund-bot", "approver")
    result = await ask(gql, user="refund-bot")
    task = result["task"]
    assert task["input"]["requestedBy"] == "refund-bot"
    query = """query($id: ID!) { task(id: $id) { workflowInstance { startedBy { id isService } }
      history { edges { node { kind actor { id isService } } } } } }"""
    shown = (await gql(query, user="bob", id=task["id"]))["data"]["task"]
    assert shown["workflowInstance"]["startedBy"] == {"id": "refund-bot", "isService": True}
    assert shown["history"]["edges"][0]["node"] == {"kind": "CREATED", "actor": {"id": "refund-bot", "isService": True}}

    before = await counts(app_engine)
    refused = await decide(gql, user="refund-bot", taskId=task["id"], decision="APPROVED")
    assert refused["__typename"] == "Forbidden" and refused["code"] == "SERVICE_ACCOUNT"
    edited = await decide(gql, user="refund-bot", taskId=task["id"], decision="EDITED",
                          arguments={"orderId": "A-17", "amount": 1})  # fmt: skip
    assert edited["code"] == "SERVICE_ACCOUNT"
    assert await counts(app_engine) == before

    assert (await decide(gql, taskId=task["id"], decision="APPROVED"))["__typename"] == "TaskSuccess"
    awaited = (await gql(AWAIT, user="refund-bot", id=task["id"], timeout=0))["data"]["awaitDecision"]
    assert awaited["status"] == "DECIDED" and awaited["outcome"]["decidedBy"] == "bob"


async def test_a_service_token_for_a_person_is_refused(client: httpx.AsyncClient, settings: Settings) -> None:
    """The directory says who is a service: a token claiming it for a person was not issued by the command."""
    token = issue_token(settings, "alice", service=True)
    response = await client.post("/graphql", json={"query": "{ me { id } }"},
                                 headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert response.status_code == 401 or response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
