"""``tasks(filter: {data: [...]})`` through the real HTTP app: a condition on the instance's
data narrows the inbox; a bad path is BAD_USER_INPUT naming the field."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from engine.storage.postgres.search_indexes import index_name
from engine.transitions.engine import Engine
from tests.server.conftest import GraphQL

DEFINITION = {"key": "search_api", "start": "decision", "nodes": [
    {"id": "decision", "type": "userTask", "schemaType": "userTask.approval", "assignToRole": "approver",
     "title": "Approve {{ customer.name }}"}]}  # fmt: skip
INBOX = """query($data: [DataConditionInput!]) {
  tasks(filter: {role: "approver", data: $data}, first: 50) { totalCount edges { node { title } } } }"""


async def test_the_inbox_filters_by_instance_data(gql: GraphQL, app_engine: Engine) -> None:
    await app_engine.deploy(DEFINITION, deployed_by="dana")
    for name, amount in (("Acme", 500), ("Globex", 1500), ("Initech", 2500)):
        await app_engine.start("search_api", {"customer": {"name": name}, "amount": amount}, "alice")

    async def titles(*conditions: dict[str, object]) -> list[str]:
        body = await gql(INBOX, user="bob", data=list(conditions))
        assert "errors" not in body, body
        return sorted(edge["node"]["title"] for edge in body["data"]["tasks"]["edges"])

    assert await titles({"path": "amount", "op": "GT", "value": 1000}) == ["Approve Globex", "Approve Initech"]
    named: dict[str, object] = {"path": "customer.name", "op": "IN", "value": ["Acme", "Initech"]}
    assert await titles({"path": "amount", "op": "GT", "value": 1000}, named) == ["Approve Initech"]
    assert await titles({"path": "customer.name", "op": "EXISTS", "value": False}) == []
    assert await titles({"path": "rank", "op": "EXISTS", "value": False, "source": "TASK_INPUT"}) == [
        "Approve Acme", "Approve Globex", "Approve Initech"]  # fmt: skip

    bad = await gql(INBOX, user="bob", data=[{"path": "amount'; --", "op": "EQ", "value": 1}])
    [error] = bad["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert [(f["field"], f["code"]) for f in error["extensions"]["fieldErrors"]] == [
        ("filter.data.0.path", "INVALID_PATH")
    ]


ORDERED = """query($after: String) { tasks(filter: {role: "approver"}, first: 2, after: $after,
  orderBy: {field: DATA, direction: DESC, dataPath: "amount"}) {
  pageInfo { hasNextPage endCursor } edges { node { title } } } }"""


async def test_the_inbox_orders_by_a_data_path(gql: GraphQL, app_engine: Engine) -> None:
    await app_engine.deploy(DEFINITION, deployed_by="dana")
    for name, amount in (("Acme", 500), ("Globex", 1500), ("Initech", 2500)):
        await app_engine.start("search_api", {"customer": {"name": name}, "amount": amount}, "alice")
    first = (await gql(ORDERED, user="bob"))["data"]["tasks"]
    assert [e["node"]["title"] for e in first["edges"]] == ["Approve Initech", "Approve Globex"]
    rest = (await gql(ORDERED, user="bob", after=first["pageInfo"]["endCursor"]))["data"]["tasks"]
    assert [e["node"]["title"] for e in rest["edges"]] == ["Approve Acme"] and not rest["pageInfo"]["hasNextPage"]
    unnamed = await gql("""{ tasks(orderBy: {field: DATA, direction: ASC}) { edges { cursor } } }""", user="bob")
    assert unnamed["errors"][0]["extensions"]["fieldErrors"][0]["field"] == "orderBy.dataPath"


DEPLOY = """mutation($d: JSON!, $key: String) {
  deployWorkflowDefinition(input: {definition: $d, idempotencyKey: $key}) { __typename ... on Error { message } } }"""


async def test_deploying_through_the_api_builds_the_searchable_indexes(gql: GraphQL, app_engine: Engine) -> None:
    """Built after the deploy's commit, on a connection of their own: neither the request nor its
    idempotency key holds a transaction the concurrent build would wait for."""
    document = {**DEFINITION, "key": "search_indexed", "searchable": ["amount", "customer.name"]}
    for key in (None, "deploy-once"):
        body = await asyncio.wait_for(gql(DEPLOY, user="dana", d=document, key=key), 60)
        assert body["data"]["deployWorkflowDefinition"]["__typename"] == "DeploySuccess", body
        document = {**document, "title": "again"}
    if app_engine.db.is_sqlite:
        return
    await app_engine.index_builds_done()
    async with app_engine.db.read() as session:
        built = set(await session.scalars(text("SELECT indexname FROM pg_indexes WHERE indexname LIKE 'ix_search_%'")))
    wanted = {index_name(t, p) for t in ("workflow_instances", "tasks") for p in ("amount", "customer.name")}
    assert wanted <= built
