"""Issue 5 through real WebSockets: taskEvents, notifications and taskMessages over both protocols.

Changes are made through the engine's services (the same rules as the mutations); what is under test
is what reaches each subscriber. Subscriptions start from a cursor (or, live, once the hub counts
them), so no test races its own subscription.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from engine import encode_event_cursor
from engine.clock import ManualClock
from engine.events.hub import EventHub
from engine.state import Task, User, WorkflowInstance
from engine.storage.directory import DirectoryRepository
from engine.storage.task_events import TaskEventRepository
from engine.storage.tasks import TaskRepository
from engine.tasks.service import TaskService
from engine.transitions.engine import Engine
from server.app import create_app
from server.auth import issue_token
from server.demo import load_demo
from server.settings import Settings
from tests.server.live import (
    EVENT_FIELDS,
    LEGACY_WS,
    TRANSPORT_WS,
    AsgiSocket,
    Feed,
    server_processes,
    serving,
    wait_until,
)

EVENTS = f"""subscription($filter: TaskEventFilter, $after: String) {{
  taskEvents(filter: $filter, after: $after) {{ {EVENT_FIELDS} }} }}"""
NOTIFICATIONS = f"subscription {{ notifications {{ {EVENT_FIELDS} }} }}"
MESSAGES = "subscription($taskId: ID!) { taskMessages(taskId: $taskId) { body author { id } } }"
FORM = {"amount": 42.5, "description": "Team lunch", "spentOn": "2026-11-20", "category": "meals"}


@pytest.fixture
async def live_url(app: Starlette) -> AsyncIterator[str]:
    async with serving(app) as url:
        yield url


@pytest.fixture
def hub(app: Starlette) -> EventHub:
    events: EventHub = app.state.events
    return events


def feed(url: str, settings: Settings, user: str, query: str, protocol: str = TRANSPORT_WS, **variables: Any) -> Feed:
    return Feed(url, issue_token(settings, user), protocol, query, variables)


async def person(engine: Engine, user_id: str) -> User:
    found = await engine.user(user_id)
    assert found is not None
    return found


async def cursor_now(engine: Engine) -> str:
    await engine.sequencer.idle()  # what this process committed is numbered
    async with engine.db.read() as session:
        return encode_event_cursor(await TaskEventRepository(session).latest_position())


async def task_at(engine: Engine, instance: WorkflowInstance, node_id: str) -> Task:
    async with engine.db.read() as session:
        tasks = await TaskRepository(session).find_by_instance(instance.id)
    return next(t for t in tasks if t.node_id == node_id)


async def approval_pending(engine: Engine) -> tuple[WorkflowInstance, Task]:
    """alice's expense, submitted and its receipt signalled by dana: an approval task for role approver."""
    instance = await engine.start("expense_approval", {"entityName": "Lunch"}, "alice")
    form = await task_at(engine, instance, "expense_form")
    await TaskService(engine).submit(await person(engine, "alice"), form.id, FORM, None)
    await engine.send_signal(instance.id, "receipt", {}, "dana")
    return instance, await task_at(engine, instance, "approval")


async def add_stranger(engine: Engine, user_id: str = "frank") -> User:
    async with engine.db.transaction() as session:
        await DirectoryRepository(session).save_user(user_id, "Frank Fox", None, (), (), engine.clock.now())
    return await person(engine, user_id)


@asynccontextmanager
async def started_app(settings: Settings, clock: ManualClock, **overrides: Any) -> AsyncIterator[Starlette]:
    application = create_app(replace(settings, **overrides), clock=clock)
    async with application.router.lifespan_context(application):
        await load_demo(application.state.engine)
        yield application


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["kind"] for e in events]


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_resume_after_a_disconnect_replays_exactly_what_was_missed(
    app_engine: Engine, live_url: str, settings: Settings, protocol: str
) -> None:
    alice, tasks = await person(app_engine, "alice"), TaskService(app_engine)
    instance = await app_engine.start("expense_approval", {"entityName": "Lunch"}, "alice")
    form = await task_at(app_engine, instance, "expense_form")
    only_this, start = {"workflowInstanceId": instance.id}, await cursor_now(app_engine)
    async with feed(live_url, settings, "alice", EVENTS, protocol, filter=only_this, after=start) as f:
        await tasks.save_progress(alice, form.id, {"amount": 1}, None)
        seen = await f.events(2)
    assert kinds(seen) == ["CLAIMED", "PROGRESS_SAVED"]

    # Disconnected: three changes.
    await tasks.save_progress(alice, form.id, {"amount": 2}, None)
    await tasks.post_message(alice, form.id, "receipt is in the mail")
    await tasks.save_progress(alice, form.id, {"amount": 3}, None)

    async with feed(live_url, settings, "alice", EVENTS, protocol, filter=only_this, after=seen[-1]["cursor"]) as f:
        missed = await f.events(3)
        assert kinds(missed) == ["PROGRESS_SAVED", "MESSAGE_POSTED", "PROGRESS_SAVED"]
        assert all(e["task"]["id"] == form.id and e["actor"] == {"id": "alice"} for e in missed)
        await tasks.save_progress(alice, form.id, {"amount": 4}, None)
        [live] = await f.events(1)  # the next one is the new change: nothing repeated, nothing extra
    cursors = [e["cursor"] for e in seen + missed + [live]]
    assert len(set(cursors)) == 6 and live["kind"] == "PROGRESS_SAVED"


async def test_visibility_is_checked_per_event(app_engine: Engine, live_url: str, settings: Settings) -> None:
    frank = await add_stranger(app_engine)
    start = await cursor_now(app_engine)
    async with (
        feed(live_url, settings, "frank", EVENTS, after=start) as stranger,
        feed(live_url, settings, "bob", EVENTS, filter={"role": "approver"}, after=start) as approver,
        feed(live_url, settings, "erin", EVENTS, after=start) as erin,
    ):
        instance, approval = await approval_pending(app_engine)
        [created] = await approver.events(1)  # the role holder gets the role's task, not the requester's
        assert created["kind"] == "CREATED" and created["task"]["id"] == approval.id

        carol, tasks = await person(app_engine, "carol"), TaskService(app_engine)
        await tasks.assign(carol, approval.id, "erin")
        [given] = await erin.events(1)  # an assignee sees the task while it is hers
        assert given["kind"] == "ASSIGNED" and given["task"]["assignee"] == {"id": "erin"}
        await tasks.assign(carol, approval.id, "bob")  # reassigned away: erin stops seeing it
        await tasks.post_message(await person(app_engine, "bob"), approval.id, "on it")
        assert kinds(await approver.events(3)) == ["ASSIGNED", "ASSIGNED", "MESSAGE_POSTED"]

        # Each later event erin and frank may see arrives after everything before it was judged.
        own = await app_engine.start("expense_approval", {"entityName": "Erin's"}, "erin")
        [after_reassignment] = await erin.events(1)
        assert after_reassignment["task"]["id"] == (await task_at(app_engine, own, "expense_form")).id
        mine = await app_engine.start("expense_approval", {"entityName": "Frank's"}, frank.id)
        [first_for_stranger] = await stranger.events(1)
        assert first_for_stranger["task"]["id"] == (await task_at(app_engine, mine, "expense_form")).id
        assert instance.id != mine.id


async def test_notifications_leave_out_the_subscribers_own_actions(
    app_engine: Engine, hub: EventHub, live_url: str, settings: Settings
) -> None:
    async with feed(live_url, settings, "bob", NOTIFICATIONS) as bob_feed:
        await wait_until(lambda: hub.subscriptions_of("bob") == 1, "bob's subscription to go live")
        bob, carol, tasks = await person(app_engine, "bob"), await person(app_engine, "carol"), TaskService(app_engine)
        _, approval = await approval_pending(app_engine)
        await tasks.claim(bob, approval.id)
        await tasks.post_message(bob, approval.id, "mine")
        await tasks.post_message(carol, approval.id, "any news?")
        got = await bob_feed.events(2, "notifications")
    assert [(e["kind"], e["actor"]["id"], e["task"]["id"]) for e in got] == [
        ("CREATED", "dana", approval.id),  # dana's signal moved the workflow to bob's role
        ("MESSAGE_POSTED", "carol", approval.id),
    ]


async def test_task_messages_arrive_live_for_those_who_may_see_the_task(
    app_engine: Engine, hub: EventHub, live_url: str, settings: Settings
) -> None:
    await add_stranger(app_engine)
    _, approval = await approval_pending(app_engine)
    async with (
        feed(live_url, settings, "bob", MESSAGES, taskId=approval.id) as bob_feed,
        feed(live_url, settings, "frank", MESSAGES, taskId=approval.id) as stranger,
    ):
        refused = await stranger.next()
        assert refused["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        await wait_until(lambda: hub.subscriptions_of("bob") == 1, "bob's subscription to go live")
        await TaskService(app_engine).post_message(await person(app_engine, "carol"), approval.id, "approved?")
        assert await bob_feed.events(1, "taskMessages") == [{"body": "approved?", "author": {"id": "carol"}}]


async def test_a_bad_cursor_is_bad_user_input(live_url: str, settings: Settings) -> None:
    """As on every query's connection: the code, and ``fieldErrors`` naming ``after``."""
    async with feed(live_url, settings, "alice", EVENTS, after="not-a-cursor") as f:
        item = await f.next()
    extensions = item["errors"][0]["extensions"]
    assert extensions["code"] == "BAD_USER_INPUT"
    assert [(e["field"], e["code"]) for e in extensions["fieldErrors"]] == [("after", "INVALID_CURSOR")], extensions


async def test_a_slow_subscriber_overflows_alone_and_resumes_from_its_cursor(
    settings: Settings, clock: ManualClock
) -> None:
    async with started_app(settings, clock, subscription_queue_size=2) as app:
        engine: Engine = app.state.engine
        instance = await engine.start("expense_approval", {"entityName": "Lunch"}, "alice")
        form = await task_at(engine, instance, "expense_form")
        alice, tasks = await person(engine, "alice"), TaskService(engine)
        token, start = issue_token(settings, "alice"), await cursor_now(engine)
        filter = {"taskId": form.id}
        async with AsgiSocket(app, token) as slow, AsgiSocket(app, token) as fast:
            await slow.subscribe("s", EVENTS, filter=filter, after=start)
            await fast.subscribe("f", EVENTS, filter=filter, after=start)
            await tasks.claim(alice, form.id)
            assert (await slow.next())["payload"]["data"]["taskEvents"]["kind"] == "CLAIMED"
            assert (await fast.next())["payload"]["data"]["taskEvents"]["kind"] == "CLAIMED"

            slow.pause()  # stops reading: one event blocks in its send, two fill its queue, one overflows
            for amount in range(4):
                await tasks.save_progress(alice, form.id, {"amount": amount}, None)
                assert (await fast.next())["payload"]["data"]["taskEvents"]["kind"] == "PROGRESS_SAVED"
            await wait_until(lambda: slow.blocked_sends == 1, "the slow subscriber's send to block")
            slow.resume()

            received = []
            while (message := await slow.next())["type"] == "next" and "errors" not in message["payload"]:
                received.append(message["payload"]["data"]["taskEvents"]["cursor"])
            [error] = message["payload"]["errors"]
            assert error["extensions"]["code"] == "SUBSCRIBER_OVERFLOW", error
            assert (await slow.next()) == {"id": "s", "type": "complete"}

            # Resuming from the cursor in the error misses nothing and repeats nothing.
            await slow.subscribe("s2", EVENTS, filter=filter, after=error["extensions"]["resumeAfter"])
            while len(received) < 4:
                received.append((await slow.next())["payload"]["data"]["taskEvents"]["cursor"])
            async with engine.db.read() as session:
                events = await TaskEventRepository(session).for_task(form.id)
                progress = [e.position for e in events if e.position is not None][2:]
            assert received == [encode_event_cursor(i) for i in progress]

            # The fast subscriber never noticed.
            await tasks.post_message(alice, form.id, "still here")
            assert (await fast.next())["payload"]["data"]["taskEvents"]["kind"] == "MESSAGE_POSTED"
            assert (await slow.next())["payload"]["data"]["taskEvents"]["kind"] == "MESSAGE_POSTED"


async def test_limits_per_connection_and_per_user(settings: Settings, clock: ManualClock) -> None:
    async with started_app(settings, clock, subscriptions_per_connection=2, subscriptions_per_user=3) as app:
        hub: EventHub = app.state.events
        token = issue_token(settings, "alice")
        async with AsgiSocket(app, token) as first, AsgiSocket(app, token) as second:
            await first.subscribe("a", EVENTS)
            await first.subscribe("b", EVENTS)
            await wait_until(lambda: hub.subscriptions_of("alice") == 2, "alice's two subscriptions")
            await first.subscribe("c", EVENTS)
            refused = await first.next()
            assert refused["id"] == "c" and refused["payload"]["errors"][0]["extensions"]["code"] == (
                "TOO_MANY_SUBSCRIPTIONS"
            )
            assert "per connection" in refused["payload"]["errors"][0]["message"]
            await second.subscribe("d", EVENTS)
            await wait_until(lambda: hub.subscriptions_of("alice") == 3, "alice's third subscription")
            await second.subscribe("e", EVENTS)
            refused = await second.next()
            assert refused["id"] == "e" and "per user" in refused["payload"]["errors"][0]["message"]
            await first.send({"id": "a", "type": "complete"})
            await wait_until(lambda: hub.subscriptions_of("alice") == 2, "a completed subscription to be freed")


async def test_keep_alives_on_both_protocols(settings: Settings, clock: ManualClock) -> None:
    async with started_app(settings, clock, ws_keepalive_seconds=0.01) as app:
        token = issue_token(settings, "alice")
        async with AsgiSocket(app, token, LEGACY_WS) as legacy:
            assert (await legacy.next()) == {"type": "ka"}
        async with AsgiSocket(app, token, TRANSPORT_WS) as modern:
            await modern.send({"type": "ping"})
            assert (await modern.next()) == {"type": "pong"}


# -- the npm graphql-ws client -------------------------------------------------------------------

NODE_CLIENT = """
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [url, token, query, variables, want] = process.argv.slice(2);
const client = createClient({ url, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${token}` } });
let count = 0;
const unsubscribe = client.subscribe({ query, variables: JSON.parse(variables) }, {
  next: (value) => {
    console.log(JSON.stringify(value));
    if (++count >= Number(want)) { unsubscribe(); client.dispose(); }
  },
  error: (error) => { console.error(JSON.stringify(error)); process.exit(1); },
  complete: () => {},
});
"""


@pytest.fixture(scope="session")
def node_client() -> Path:
    """``client.mjs`` next to an npm-installed ``graphql-ws`` and ``ws`` (cached across runs)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node/npm are not installed: the npm graphql-ws client test needs them")
    home = Path(tempfile.gettempdir()) / "stepwise-tests-graphql-ws"
    if not (home / "node_modules" / "graphql-ws" / "package.json").exists():
        home.mkdir(exist_ok=True)
        install = subprocess.run(
            [npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(home), "graphql-ws@6", "ws@8"],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        if install.returncode != 0:
            pytest.skip(f"`npm install graphql-ws ws` failed (offline?): {install.stderr.strip()[:300]}")
    script = home / "client.mjs"
    script.write_text(NODE_CLIENT)
    return script


@pytest.mark.timeout(300)  # the first run on a machine may npm-install the client (node_client allows 180 s)
async def test_the_npm_graphql_ws_client(
    app_engine: Engine, live_url: str, settings: Settings, node_client: Path
) -> None:
    variables = {"after": await cursor_now(app_engine)}
    process = await asyncio.create_subprocess_exec(
        "node", str(node_client), live_url, issue_token(settings, "alice"), EVENTS, json.dumps(variables), "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        instance = await app_engine.start("expense_approval", {"entityName": "Lunch"}, "alice")
        await app_engine.cancel(instance.id, "alice", "changed my mind")
        stdout, stderr = await asyncio.wait_for(process.communicate(), 15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    events = [json.loads(line)["data"]["taskEvents"] for line in stdout.decode().splitlines()]
    assert kinds(events) == ["CREATED", "CANCELLED"]


# -- two server processes on one PostgreSQL ------------------------------------------------------

START = """mutation($input: JSON) { startWorkflow(input: {definitionKey: "expense_approval", input: $input}) {
  ... on StartWorkflowSuccess { workflowInstance { id tasks { id } } } } }"""
SAVE = """mutation($id: ID!, $values: JSON!) { saveTaskProgress(input: {taskId: $id, values: $values}) {
  __typename } }"""


@pytest.mark.postgres_only
async def test_a_change_through_one_process_reaches_a_subscriber_on_another(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    await load_demo(engine)
    secret = "two-processes-secret-of-at-least-thirty-two-bytes"
    env = {"STEPWISE_DATABASE_URL": database_url, "STEPWISE_SECRET_KEY": secret, "STEPWISE_EMBEDDED_WORKER": "false",
           "STEPWISE_FILES_DIR": str(tmp_path / "files"),
           "STEPWISE_EVENTS_POLL_SECONDS": "3600"}  # fmt: skip  # only NOTIFY can wake the hub in time
    token = issue_token(replace(Settings(), secret_key=secret), "alice")
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        server_processes(2, env, tmp_path) as (a, b),
        httpx.AsyncClient(base_url=a, headers=headers) as http,
    ):
        ws_b = b.replace("http://", "ws://") + "/graphql"
        async with Feed(ws_b, token, TRANSPORT_WS, EVENTS, {"after": await cursor_now(engine)}) as on_b:
            started = (await http.post("/graphql", json={"query": START, "variables": {"input": {}}})).json()
            task_id = started["data"]["startWorkflow"]["workflowInstance"]["tasks"][0]["id"]
            [created] = await on_b.events(1)
            assert created["kind"] == "CREATED" and created["task"]["id"] == task_id
            saved = await http.post("/graphql", json={"query": SAVE, "variables": {"id": task_id, "values": {}}})
            assert saved.json()["data"]["saveTaskProgress"]["__typename"] == "TaskSuccess"
            assert kinds(await on_b.events(2)) == ["CLAIMED", "PROGRESS_SAVED"]
