"""No N+1: an inbox page with nested assignee, step (with metrics) and instance (with its starter)
costs the same, small number of SQL statements for 10 tasks as for 50."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from typing import Any

import httpx
from sqlalchemy import event, select
from starlette.applications import Starlette

from engine.clock import ManualClock
from engine.storage.models import instances
from engine.tasks.service import TaskService
from engine.transitions.engine import Engine
from server.app import create_app
from server.auth import issue_token
from server.settings import Settings
from tests.server.live import wait_until

PAGE = """query($first: Int!) { tasks(first: $first) { totalCount edges { node { id
  assignee { id name } step { key metrics { total } } workflowInstance { id startedBy { id } } } } } }"""
# Authentication (one statement: a user with its memberships), the page (count + rows), then one
# batch per nested level: steps, the definition (once per version: the engine caches it),
# assignees, step metrics, instances, starters not already loaded as assignees.
MAX_STATEMENTS = 9


@contextmanager
def counting(engine: Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        statements.append(statement)

    sync_engine = engine.db.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)


@asynccontextmanager
async def fresh_server(settings: Settings, clock: ManualClock) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """A freshly started app (nothing cached yet) and a client that talks to it in-process."""
    app = create_app(settings, clock=clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://stepwise.test") as client,
    ):
        yield app, client


async def make_tasks(engine: Engine, count: int) -> None:
    """``count`` open tasks across as many instances: started by alice or dana, every other one claimed."""
    alice, bob = await engine.user("alice"), await engine.user("bob")
    assert alice is not None and bob is not None
    for i in range(count):
        instance = await engine.start("expense_approval", {"entityName": f"lunch {i}"}, "dana" if i % 3 else "alice")
        [token] = instance.tokens
        assert token.task_id is not None
        if i % 2:
            await TaskService(engine).claim(alice, token.task_id)


async def page_statements(settings: Settings, clock: ManualClock, first: int) -> list[str]:
    """The statements of one page request to a freshly started server (nothing cached yet)."""
    async with fresh_server(settings, clock) as (app, client):
        headers = {"Authorization": f"Bearer {issue_token(settings, 'dana')}"}
        with counting(app.state.engine) as statements:
            response = await client.post(
                "/graphql", json={"query": PAGE, "variables": {"first": first}}, headers=headers
            )
    body = response.json()
    assert "errors" not in body, body
    edges = body["data"]["tasks"]["edges"]
    assert len(edges) == first
    assert {e["node"]["workflowInstance"]["startedBy"]["id"] for e in edges} == {"alice", "dana"}
    assert {(e["node"]["assignee"] or {}).get("name") for e in edges} == {"Alice Adams", None}
    assert all(e["node"]["step"]["metrics"]["total"] == 1 for e in edges)
    return statements


async def test_an_inbox_page_costs_a_constant_number_of_statements(
    app_engine: Engine, settings: Settings, clock: ManualClock
) -> None:
    await make_tasks(app_engine, 50)
    small = await page_statements(settings, clock, 10)
    large = await page_statements(settings, clock, 50)
    assert len(large) == len(small), "\n".join(large)
    queries = [s for s in large if s.strip().upper() != "BEGIN"]  # SQLite's explicit BEGIN per session
    assert len(queries) <= MAX_STATEMENTS, "\n".join(queries)


SIGNALS_PAGE = """query($first: Int!) { tasks(first: $first) { edges { node { id
  workflowInstance { id heldSignals { nodeId sentBy { id } } unusedSignals { nodeId } } } } } }"""


async def signals_page_statements(settings: Settings, clock: ManualClock, first: int) -> list[str]:
    async with fresh_server(settings, clock) as (app, client):
        headers = {"Authorization": f"Bearer {issue_token(settings, 'dana')}"}
        with counting(app.state.engine) as statements:
            response = await client.post(
                "/graphql", json={"query": SIGNALS_PAGE, "variables": {"first": first}}, headers=headers
            )
    body = response.json()
    assert "errors" not in body, body
    edges = body["data"]["tasks"]["edges"]
    assert len(edges) == first
    held = [e["node"]["workflowInstance"]["heldSignals"] for e in edges]
    assert [{"nodeId": "receipt", "sentBy": {"id": "dana"}}] in held and [] in held, held
    return [s for s in statements if s.strip().upper() != "BEGIN"]


async def test_held_signals_of_a_page_of_instances_cost_a_constant_number_of_statements(
    app_engine: Engine, settings: Settings, clock: ManualClock
) -> None:
    """Each instance's heldSignals and unusedSignals come from one batch for the page, not a visibility
    check and a read per instance."""
    await make_tasks(app_engine, 50)
    async with app_engine.db.read() as session:
        instance_ids = [row[0] for row in (await session.execute(select(instances.c.id))).all()]
    for instance_id in instance_ids[::3]:  # a signal for a node the token has not reached: held
        await app_engine.send_signal(instance_id, "receipt", {"scan": "r.pdf"}, "dana")
    small = await signals_page_statements(settings, clock, 10)
    large = await signals_page_statements(settings, clock, 50)
    assert len(large) == len(small), "\n".join(large)


async def test_a_query_reads_on_one_connection_and_counts_on_another(
    app_engine: Engine, settings: Settings, clock: ManualClock
) -> None:
    """Authentication, the page and all its nested batches share one read session: one checkout
    (with its BEGIN and ROLLBACK) for the whole request, not one per DataLoader batch. ``totalCount``
    is counted on a connection of its own (it runs while the page is read), and only when selected;
    with count-beside off, after the page on the query's own."""
    await make_tasks(app_engine, 12)
    async with fresh_server(settings, clock) as (app, client):
        db = app.state.engine.db
        checkouts: list[object] = []
        event.listen(db.engine.sync_engine.pool, "checkout", lambda dbapi, record, proxy: checkouts.append(dbapi))
        on: list[tuple[object, str]] = []  # (connection, statement)

        def record(conn: Any, cursor: Any, sql: str, *rest: Any) -> None:
            on.append((conn.connection, sql))

        event.listen(db.engine.sync_engine, "before_cursor_execute", record)
        headers = {"Authorization": f"Bearer {issue_token(settings, 'dana')}"}
        uncounted = PAGE.replace("totalCount", "")
        response = await client.post("/graphql", json={"query": PAGE, "variables": {"first": 12}}, headers=headers)
        assert response.json()["data"]["tasks"]["totalCount"] == 12  # and the definition is in the engine's cache
        beside = db.fast_paths.count_beside  # off (STEPWISE_FAST_COUNT_BESIDE), the count is the query's own
        for query, connections, counted in [(PAGE, 2 if beside else 1, 1), (uncounted, 1, 0)]:
            checkouts.clear()
            on.clear()
            response = await client.post("/graphql", json={"query": query, "variables": {"first": 12}}, headers=headers)
            body = response.json()
            assert "errors" not in body and len(body["data"]["tasks"]["edges"]) == 12, body
            assert len(checkouts) == connections
            statements: dict[object, list[str]] = {}
            for connection, sql in on:
                if sql.strip().upper() != "BEGIN":  # SQLite's explicit BEGIN per connection
                    statements.setdefault(connection, []).append(" ".join(sql.split()))
            counts = [sql for sql in sum(statements.values(), []) if sql.startswith("SELECT count(*)")]
            assert len(statements) == connections and len(counts) == counted, statements
            if connections > 1:  # the count alone on its own connection
                assert all(sqls == counts or not set(sqls) & set(counts) for sqls in statements.values()), statements
        assert "totalCount" not in body["data"]["tasks"]
        assert db.engine.sync_engine.pool.checkedout() == 0


async def test_more_concurrent_pages_than_pooled_connections_all_complete(
    app_engine: Engine, settings: Settings, clock: ManualClock
) -> None:
    """Each page holds a connection; a count that waited for a second one beside it would wait
    forever once every connection is held by a page doing the same. A count with no connection to
    spare at once runs after its page, on the page's connection."""
    await make_tasks(app_engine, 12)
    unqueued = replace(settings, operations_per_user=0)  # one user's slots would queue them: the pool is under test
    async with fresh_server(unqueued, clock) as (app, client):
        pool = app.state.engine.db.engine.sync_engine.pool
        headers = {"Authorization": f"Bearer {issue_token(settings, 'dana')}"}
        body = {"query": PAGE, "variables": {"first": 5}}
        requests = 2 * (pool.size() + pool._max_overflow) + 2
        responses = await asyncio.wait_for(
            asyncio.gather(*(client.post("/graphql", json=body, headers=headers) for _ in range(requests))), 20
        )
        assert [r.json()["data"]["tasks"]["totalCount"] for r in responses] == [12] * requests
        assert pool.checkedout() == 0


LOOKUPS = """query($task: ID!, $instance: ID!) { task(id: $task) { id } workflowInstance(id: $instance) { id }
  workflowDefinitions { key } }"""


async def test_more_concurrent_lookups_than_pooled_connections_all_complete(
    app_engine: Engine, settings: Settings, clock: ManualClock
) -> None:
    """A query keeps the connection it authenticated on; a task, an instance or the definitions read
    on a second one beside it would wait for ever once every connection is held by a query doing the
    same. They read on the query's own."""
    instance = await app_engine.start("expense_approval", {"entityName": "lunch"}, "dana")
    [token] = instance.tokens
    unqueued = replace(settings, operations_per_user=0)  # one user's slots would queue them: the pool is under test
    async with fresh_server(unqueued, clock) as (app, client):
        pool = app.state.engine.db.engine.sync_engine.pool
        headers = {"Authorization": f"Bearer {issue_token(settings, 'dana')}"}
        body = {"query": LOOKUPS, "variables": {"task": token.task_id, "instance": instance.id}}
        requests = 2 * (pool.size() + pool._max_overflow) + 2
        responses = await asyncio.wait_for(
            asyncio.gather(*(client.post("/graphql", json=body, headers=headers) for _ in range(requests))), 20
        )
        answers = [response.json() for response in responses]
        assert all("errors" not in answer for answer in answers), answers[0]
        assert {answer["data"]["task"]["id"] for answer in answers} == {token.task_id}
        assert {answer["data"]["workflowInstance"]["id"] for answer in answers} == {instance.id}
        assert all({"key": "expense_approval"} in answer["data"]["workflowDefinitions"] for answer in answers)
        assert pool.checkedout() == 0


FRAGMENTS = """query($first: Int!) { tasks(first: $first) { totalCount edges { ...edge } } }
fragment edge on TaskEdge { node { id ... on Task { assignee { id name } } ...where } }
fragment where on Task { step { key metrics { total } } workflowInstance { id startedBy { id } } }"""


async def test_relations_selected_through_fragments_give_the_inline_answer(
    app_engine: Engine, settings: Settings, clock: ManualClock
) -> None:
    """A page looks ahead at what its tasks select (to load steps and assignees for all of them at
    once); fragments, named and inline, must not change the answer or the statements sent."""
    await make_tasks(app_engine, 12)
    async with fresh_server(settings, clock) as (app, client):
        headers = {"Authorization": f"Bearer {issue_token(settings, 'dana')}"}
        answers, counts = [], []
        for document in (PAGE, FRAGMENTS, PAGE):  # the first also fills the engine's definition cache
            with counting(app.state.engine) as statements:
                response = await client.post(
                    "/graphql", json={"query": document, "variables": {"first": 12}}, headers=headers
                )
            answers.append(response.json())
            counts.append(len(statements))
    assert "errors" not in answers[1], answers[1]
    assert answers[1] == answers[2]
    assert counts[1] == counts[2]


CLAIM = "mutation($id: ID!) { claimTask(input: {taskId: $id}) { __typename } }"


async def test_every_request_gives_back_its_connections_and_a_mutation_holds_no_read_open(
    app_engine: Engine, settings: Settings, clock: ManualClock
) -> None:
    """The session a request authenticated in is closed whatever happens next: a query ends it, a
    mutation closes it before it writes (so a write never runs beside an idle read transaction),
    and a request that never executes (bad syntax, failed validation, bad token) closes it too."""
    await make_tasks(app_engine, 2)
    async with fresh_server(settings, clock) as (app, client):
        pool = app.state.engine.db.engine.sync_engine.pool
        checked_out_at_checkouts: list[int] = []  # with the one being checked out
        requests_task = asyncio.current_task()  # the in-process transport runs the app in the caller's task

        def record(dbapi_connection: Any, record: Any, proxy: Any) -> None:
            if asyncio.current_task() is requests_task:  # not the event hub's reads in the background
                checked_out_at_checkouts.append(pool.checkedout())

        dana = {"Authorization": f"Bearer {issue_token(settings, 'dana')}"}
        page = (await client.post("/graphql", json={"query": PAGE, "variables": {"first": 2}}, headers=dana)).json()
        requests: list[tuple[dict[str, Any], dict[str, str], str | None]] = [
            ({"query": CLAIM, "variables": {"id": page["data"]["tasks"]["edges"][0]["node"]["id"]}}, dana, None),
            ({"query": "{ tasks(first: 1) { totalCount "}, dana, "Syntax Error"),
            ({"query": "{ tasks(first: 1) { noSuchField } }"}, dana, "Cannot query field"),
            ({"query": "{ me { id } }"}, {"Authorization": "Bearer not-a-token"}, "token"),
            ({"query": PAGE, "variables": {"first": 2}}, dana, None),
        ]
        event.listen(pool, "checkout", record)
        for body, headers, error in requests:
            answer = (await client.post("/graphql", json=body, headers=headers)).json()
            if error is None:
                assert "errors" not in answer, answer
            else:
                assert error in answer["errors"][0]["message"], answer
            # After a commit the event hub reads the new events in the background: wait for it.
            await wait_until(lambda: pool.checkedout() == 0, f"the connections of {body['query']!r}")
    # The claim's transition took its connection after the request's read session gave its back.
    assert len(checked_out_at_checkouts) >= 5 and set(checked_out_at_checkouts) == {1}
