"""Real time in the browser: two people on one server and a third on a second server process see one
person's change without a reload (a toast for the others, none for the actor); and a page whose server
restarts says it is reconnecting, then shows everything that committed while it was away."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from engine.transitions.engine import Engine
from tests.web.conftest import APPROVAL, Server, Servers, graphql, start
from tests.web.test_task_types import first_task

DECIDE = """mutation($id: ID!, $c: String) { %s(input: {taskId: $id, comment: $c}) { __typename } }"""


async def test_one_acts_and_the_others_see_it_live_across_two_server_processes(
    servers: Servers, sign_in: Any, engine: Engine
) -> None:
    one, two = await servers.start(), await servers.start()
    task = await first_task(one, await start(engine, APPROVAL, "the conference"))
    step = f"/app/steps/{task['step']['id']}"
    alice, bob, carol = await sign_in("alice", one), await sign_in("bob", one), await sign_in("carol", two)
    await alice.goto(step)
    await carol.goto(step)
    for watcher in (alice, carol):
        # A To Do task is in Total only: Active counts the tasks in progress, and its card says so.
        total, active = watcher.page.get_by_test_id("metric-total"), watcher.page.get_by_test_id("metric-active")
        await expect(total.locator(".metric-value")).to_have_text("1")
        await expect(active.locator(".metric-value")).to_have_text("0")
        await expect(active.locator(".metric-counts")).to_have_text("in progress")
        await expect(watcher.page.get_by_test_id("status")).to_have_text("To Do")

    await bob.page.get_by_role("link", name="Decide on the conference").click()
    decision = bob.page.get_by_role("dialog")
    await decision.get_by_role("button", name="Assign to me").click()
    await expect(decision.get_by_test_id("modal-assignee")).to_have_text("Assigned to you")
    for watcher in (alice, carol):
        await expect(watcher.page.get_by_test_id("status")).to_have_text("In Progress")
        await expect(watcher.page.get_by_test_id("assignee")).to_have_text("Bob Brown")
        await expect(watcher.page.get_by_test_id("metric-active").locator(".metric-value")).to_have_text("1")
    await decision.get_by_role("button", name="Approve").click()
    await expect(decision.get_by_test_id("readonly")).to_be_visible()

    for watcher in (alice, carol):
        await expect(watcher.page.get_by_test_id("status")).to_have_text("Completed")
        await expect(watcher.page.get_by_test_id("metric-completed")).to_contain_text("1")
        await expect(watcher.page.get_by_test_id("metric-active")).to_contain_text("0")
        toast = watcher.page.get_by_test_id("toast").filter(has_text="Bob Brown completed “Decide on the conference”")
        await expect(toast.first).to_be_visible()
    await carol.shot("live-second-process")
    assert [t for t in await alice.toasts() if "Bob Brown claimed" in t]
    assert not [t for t in await bob.toasts() if t.startswith("Bob Brown")]  # never of his own actions


async def test_after_a_restart_the_page_shows_what_happened_while_it_was_away(
    servers: Servers, sign_in: Any, engine: Engine
) -> None:
    one, two = await servers.start(), await servers.start()
    first = await first_task(one, await start(engine, APPROVAL, "the first"))
    second = await first_task(one, await start(engine, APPROVAL, "the second"))
    alice = await sign_in("alice", one)
    await alice.goto("/app/")
    rows = alice.page.get_by_test_id("task-row")
    await expect(rows).to_have_count(2)

    await one.stop()
    await expect(alice.page.get_by_test_id("live")).to_have_attribute("data-state", "reconnecting")
    await alice.shot("reconnecting")
    # Meanwhile, through the other server: one approved, a message on it, the other rejected.
    for task, decide in ((first, "approveTask"), (second, "rejectTask")):
        body = await graphql(two, "bob", DECIDE % decide, id=task["id"], c="while you were away")
        assert body[decide]["__typename"] == "TaskSuccess", body
    post = 'mutation($id: ID!) { postTaskMessage(input: {taskId: $id, body: "noted"}) { __typename } }'
    await graphql(two, "bob", post, id=first["id"])

    await one.start()
    await expect(alice.page.get_by_test_id("live")).to_have_attribute("data-state", "live", timeout=20_000)
    # alice's inbox shows open tasks: both are done now, and she was told of each.
    await expect(rows).to_have_count(0)
    for title in ("the first", "the second"):
        toast = alice.page.get_by_test_id("toast").filter(has_text=f"Bob Brown completed “Decide on {title}”")
        await expect(toast.first).to_be_visible()
    await expect(alice.page.get_by_test_id("toast").filter(has_text="posted a message").first).to_be_visible()
    await alice.page.get_by_label("Status").select_option("COMPLETED")
    await expect(rows).to_have_count(2)
    await expect(rows.get_by_test_id("status")).to_have_text(["Completed", "Completed"])


async def test_a_stream_the_server_ends_is_subscribed_again_and_misses_nothing(
    server: Server, sign_in: Any, engine: Engine
) -> None:
    # The server ends a subscription it cannot go on with by a `next` with only errors, then `complete`; the
    # connection stays up and the header says "Live" all along, so the page itself must subscribe again.
    first = await first_task(server, await start(engine, APPROVAL, "the first"))
    bob = await sign_in("bob", server)
    rows = bob.page.get_by_test_id("task-row")
    await expect(rows).to_have_count(1)
    await bob.gate.end_streams()
    await start(engine, APPROVAL, "the second")  # after the stream ended, before any new one
    await expect(bob.page.get_by_role("link", name="Decide on the second")).to_be_visible()
    await expect(rows).to_have_count(2)
    await expect(bob.page.get_by_test_id("live")).to_have_attribute("data-state", "live")

    # Again, with a change made right after: it is not lost either, and the new stream goes on delivering.
    await bob.gate.end_streams()
    body = await graphql(server, "bob", DECIDE % "approveTask", id=first["id"], c="from elsewhere")
    assert body["approveTask"]["__typename"] == "TaskSuccess", body
    await expect(rows).to_have_count(1)
    await start(engine, APPROVAL, "the third")
    await expect(bob.page.get_by_role("link", name="Decide on the third")).to_be_visible()
    await expect(rows).to_have_count(2)
