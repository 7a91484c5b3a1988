"""Fanning one event out to many subscribers: the per-event work is done once, and what each
subscriber sees is still right — the event's users as the directory has them, nested fields as of
that event, and only what that viewer may see."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from typing import Any

from starlette.applications import Starlette

from engine import encode_event_cursor
from engine.clock import ManualClock
from engine.events.hub import EventHub
from engine.state import Task
from engine.storage.directory import DirectoryRepository
from engine.storage.task_events import TaskEventRepository
from engine.storage.tasks import TaskRepository
from engine.tasks.service import TaskService
from engine.transitions.engine import Engine
from server.app import create_app
from server.auth import issue_token
from server.demo import load_demo
from server.settings import Settings
from tests.server.live import TRANSPORT_WS, Feed, serving, wait_until
from tests.server.test_query_counts import counting
from tests.server.test_subscriptions import person

NESTED = """subscription($filter: TaskEventFilter, $after: String) {
  taskEvents(filter: $filter, after: $after) {
    cursor kind actor { id name roles }
    task { id status revision assignee { id name } completedBy { id }
           step { key metrics { total active } } workflowInstance { id startedBy { id name } } } } }"""


@asynccontextmanager
async def quiet_app(settings: Settings, clock: ManualClock) -> AsyncIterator[tuple[Starlette, str]]:
    """The demo app served over real WebSockets; the hub never polls during a test (SQLite would)."""
    application = create_app(replace(settings, events_poll_seconds=3600.0), clock=clock)
    async with application.router.lifespan_context(application), serving(application) as url:
        await load_demo(application.state.engine)
        yield application, url


@asynccontextmanager
async def feeds(url: str, settings: Settings, users: list[str], **variables: Any) -> AsyncIterator[list[Feed]]:
    async with AsyncExitStack() as stack:
        opened = []
        for user in users:
            feed = Feed(url, issue_token(settings, user), TRANSPORT_WS, NESTED, variables)
            opened.append(await stack.enter_async_context(feed))
        yield opened


async def latest_event(engine: Engine) -> int:
    await engine.sequencer.idle()  # what this process committed is numbered
    async with engine.db.read() as session:
        return await TaskEventRepository(session).latest_position()


async def cursor_now(engine: Engine) -> str:
    return encode_event_cursor(await latest_event(engine))


async def form_task(engine: Engine, starter: str) -> Task:
    instance = await engine.start("expense_approval", {"entityName": "Lunch"}, starter)
    async with engine.db.read() as session:
        tasks = await TaskRepository(session).find_by_instance(instance.id)
    return next(t for t in tasks if t.node_id == "expense_form")


async def test_an_events_users_and_nested_fields_are_as_of_that_event(settings: Settings, clock: ManualClock) -> None:
    async with quiet_app(settings, clock) as (app, url):
        engine: Engine = app.state.engine
        alice, tasks = await person(engine, "alice"), TaskService(engine)
        form = await form_task(engine, "alice")
        only_this = {"workflowInstanceId": form.workflow_instance_id}
        async with feeds(url, settings, ["alice", "dana"], filter=only_this, after=await cursor_now(engine)) as fs:
            await tasks.save_progress(alice, form.id, {"amount": 1}, None)  # claims it first
            seen = [await f.events(2) for f in fs]
            async with engine.db.transaction() as session:  # renamed after those events were delivered
                await DirectoryRepository(session).save_user(
                    "alice", "Alice Renamed", None, ("requester",), (), clock.now()
                )
            await tasks.save_progress(alice, form.id, {"amount": 2}, None)
            later = [await f.events(1) for f in fs]
    for events, [after_rename] in zip(seen, later, strict=True):
        assert seen[0] == events  # the supervisor sees exactly what the starter sees
        claimed, saved = events
        assert [claimed["kind"], saved["kind"]] == ["CLAIMED", "PROGRESS_SAVED"]
        assert claimed["actor"] == {"id": "alice", "name": "Alice Adams", "roles": ["requester"]}
        assert saved["task"]["assignee"] == {"id": "alice", "name": "Alice Adams"}
        assert saved["task"]["completedBy"] is None
        assert saved["task"]["step"]["metrics"] == {"total": 1, "active": 1}
        assert saved["task"]["workflowInstance"]["startedBy"] == {"id": "alice", "name": "Alice Adams"}
        # A later event shows the directory as of that event, not what an earlier one cached.
        assert after_rename["actor"]["name"] == "Alice Renamed"
        assert after_rename["task"]["assignee"] == {"id": "alice", "name": "Alice Renamed"}
        assert after_rename["task"]["workflowInstance"]["startedBy"]["name"] == "Alice Renamed"
        assert after_rename["task"]["revision"] > saved["task"]["revision"]


async def test_subscribers_of_one_event_share_its_reads(settings: Settings, clock: ManualClock) -> None:
    """The SQL one change costs, delivery included, is the same for 1 subscriber as for 4 (it was
    about 5 statements more per subscriber when each looked up the event's nested fields itself)."""
    async with quiet_app(settings, clock) as (app, url):
        engine: Engine = app.state.engine
        hub: EventHub = app.state.events
        alice, tasks = await person(engine, "alice"), TaskService(engine)
        form = await form_task(engine, "alice")
        only_this = {"workflowInstanceId": form.workflow_instance_id}
        await tasks.save_progress(alice, form.id, {"amount": 0}, None)  # claimed: later saves are alike

        async def one_change(users: list[str], amount: int) -> list[str]:
            # Live subscriptions, joining once the hub has fanned out everything before (else they
            # would get earlier events too), counted by the hub before the change.
            latest = await latest_event(engine)
            await wait_until(lambda: hub.cursor >= latest, "the hub to catch up")
            async with feeds(url, settings, users, filter=only_this) as fs:
                for user in set(users):

                    def subscribed(user: str = user) -> bool:
                        return hub.subscriptions_of(user) == users.count(user)

                    await wait_until(subscribed, "the subscriptions")
                with counting(engine) as statements:
                    await tasks.save_progress(alice, form.id, {"amount": amount}, None)
                    for f in fs:
                        [got] = await f.events(1)
                        assert got["task"]["assignee"] == {"id": "alice", "name": "Alice Adams"}, got
                # The hub may be woken twice for one commit (this process's commit listener and
                # NOTIFY); an extra read of "events after my cursor" finds nothing and is timing.
                return [s for s in statements if "WHERE task_events.position >" not in s]

        await one_change(["alice"], 1)  # warms the engine's caches (the definition)
        alone = await one_change(["alice"], 2)
        together = await one_change(["alice", "dana", "alice", "dana"], 3)
    assert len(together) == len(alone), "\n".join(together + ["-- alone:"] + alone)


VIEWER_FIELDS = """subscription($filter: TaskEventFilter, $after: String) {
  taskEvents(filter: $filter, after: $after) { kind ...on TaskEvent { task { id viewerCanClaim viewerCanComplete } } }
}"""


USERS = ("alice", "dana", "alice", "dana")


async def test_what_depends_on_the_viewer_is_shown_per_viewer(settings: Settings, clock: ManualClock) -> None:
    """Same document, same variables, same event: alice (the assignee) and dana (a supervisor) may
    still not see it alike, so their results are not shared."""
    async with quiet_app(settings, clock) as (app, url):
        engine: Engine = app.state.engine
        alice, tasks = await person(engine, "alice"), TaskService(engine)
        form = await form_task(engine, "alice")
        variables = {"filter": {"taskId": form.id}, "after": await cursor_now(engine)}
        async with AsyncExitStack() as stack:
            opened = [Feed(url, issue_token(settings, u), TRANSPORT_WS, VIEWER_FIELDS, variables) for u in USERS]
            fs = [await stack.enter_async_context(f) for f in opened]
            await tasks.save_progress(alice, form.id, {"amount": 1}, None)
            seen = [[e["task"] for e in await f.events(2)] for f in fs]
    mine = {"id": form.id, "viewerCanClaim": False, "viewerCanComplete": True}
    supervisors = {"id": form.id, "viewerCanClaim": True, "viewerCanComplete": False}
    assert seen == [[mine, mine], [supervisors, supervisors]] * 2
