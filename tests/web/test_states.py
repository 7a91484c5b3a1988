"""Every state a person can meet, and the inbox's tools: a refused token, an empty inbox, not found,
the server down; filters, sort, paging and totals; the keyboard (focus kept in the modal, Escape); phone width."""

from __future__ import annotations

import asyncio
from typing import Any

from playwright.async_api import Browser, expect

from engine.transitions.engine import Engine
from tests.web.conftest import APPROVAL, FORM, Server, start, step_of, token
from tests.web.test_task_types import first_task

URGENT = step_of(
    {"id": "hurry", "type": "userTask", "schemaType": "userTask.form", "name": "Hurry",
     "title": "Hurry: {{ entityName }}", "assignToRole": "requester", "priority": "urgent", "dueIn": "PT1S",
     "form": {"fields": [{"key": "done", "type": "checkbox", "label": "Done"}]}},
    key="web_urgent",
)  # fmt: skip


async def test_a_refused_token_brings_back_the_sign_in_with_a_message(
    server: Server, browser: Browser, contexts: Any
) -> None:
    opened, watch = contexts
    context = await browser.new_context()
    opened.append(context)
    page = watch.page(await context.new_page())
    await page.goto(server.url + "/app/")
    await page.get_by_label("Bearer token").fill("Bearer not-a-token")
    await page.get_by_role("button", name="Sign in with token").click()
    await expect(page.get_by_role("heading", name="Sign in to Stepwise")).to_be_visible()
    await expect(page.get_by_role("status").filter(has_text="Signed out:")).to_contain_text("bearer token")
    erin = token("erin")
    await page.get_by_label("Bearer token").fill(erin)
    await page.get_by_role("button", name="Sign in with token").click()
    await expect(page.get_by_test_id("me")).to_have_text("Erin Evans")
    assert await page.evaluate("sessionStorage.getItem('stepwise.token')") == erin
    await expect(page.locator("[data-state=empty]")).to_be_visible()  # erin has nothing to do
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in to Stepwise")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('stepwise.token')") is None


async def test_not_found_and_server_down(server: Server, sign_in: Any, engine: Engine) -> None:
    hidden = await start(engine, FORM, "a requester's")  # bob (approver) may not see it
    bob = await sign_in("bob", server)
    await bob.goto(f"/app/instances/{hidden}")
    await expect(bob.page.locator("[data-state=not-found]")).to_contain_text("does not exist, or you may not see it")
    await bob.goto("/app/steps/no-such-step")
    await expect(bob.page.locator("[data-state=not-found]")).to_be_visible()
    await bob.goto("/app/tasks/no-such-task")
    await expect(bob.page.locator("[data-state=not-found]")).to_be_visible()
    await bob.goto("/app/no/such/page")
    await expect(bob.page.locator("[data-state=not-found]")).to_be_visible()
    await bob.shot("not-found")

    await bob.goto("/app/start")
    await server.stop()
    await expect(bob.page.get_by_test_id("live")).to_have_attribute("data-state", "reconnecting")
    await bob.page.get_by_role("link", name="Inbox").click()
    await expect(bob.page.locator("[data-state=server-down]")).to_contain_text("The server is not answering")
    await bob.shot("server-down")
    await server.start()
    await bob.page.get_by_role("button", name="Try again").click()
    await expect(bob.page.locator("[data-state=empty]")).to_be_visible()
    await expect(bob.page.get_by_test_id("live")).to_have_attribute("data-state", "live", timeout=20_000)


async def test_inbox_filters_sort_paging_and_totals(server: Server, sign_in: Any, engine: Engine) -> None:
    for n in range(27):
        await start(engine, APPROVAL, f"request {n:02}")
    await start(engine, FORM, "a form")
    carol = await sign_in("carol", server)  # a manager sees every task
    page = carol.page
    rows = page.get_by_test_id("task-row")
    await expect(page.get_by_test_id("total-count")).to_have_text("28")
    await expect(rows).to_have_count(25)
    await expect(rows.first).to_contain_text("Fill a form")  # newest first
    await page.get_by_role("button", name="Load more").click()
    await expect(rows).to_have_count(28)
    await expect(page.get_by_role("button", name="Load more")).to_have_count(0)
    await carol.shot("inbox")

    await page.get_by_label("Sort").select_option("CREATED_AT:ASC")
    await expect(rows.first).to_contain_text("Decide on request 00")
    await page.get_by_label("Priority").select_option("HIGH")
    await expect(page.get_by_test_id("total-count")).to_have_text("27")
    await expect(rows.first.get_by_test_id("priority")).to_have_text("high")
    await page.get_by_label("Priority").select_option("")
    await page.get_by_label("Kind").select_option("SYSTEM")
    await expect(page.locator("[data-state=empty]")).to_be_visible()
    await page.get_by_label("Kind").select_option("")
    await page.get_by_label("Type").select_option("FORM")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("Fill a form")
    await page.get_by_label("Type").select_option("")
    await page.get_by_label("Due").select_option("overdue")
    await expect(page.locator("[data-state=empty]")).to_be_visible()  # none is overdue yet
    await start(engine, URGENT, "the deadline")  # due one second after it is created
    await page.get_by_label("Due").select_option("week")
    late = page.get_by_test_id("task-row").filter(has_text="Hurry: the deadline")
    await expect(late.get_by_test_id("priority")).to_have_text("urgent")
    await asyncio.sleep(1.5)
    await page.get_by_label("Due").select_option("overdue")
    await expect(rows).to_have_count(1)
    await expect(late.get_by_test_id("overdue")).to_contain_text("Overdue")
    await carol.shot("overdue")
    await page.get_by_label("Due").select_option("")
    await page.get_by_label("Assigned to me").check()
    await expect(page.locator("[data-state=empty]")).to_be_visible()


async def test_keyboard_and_phone_width(server: Server, sign_in: Any, engine: Engine) -> None:
    await start(engine, FORM, "the keyboard")
    alice = await sign_in("alice", server, width=390, height=844)
    page = alice.page
    link = page.get_by_role("link", name="Fill the keyboard")
    await link.focus()
    await page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Fill the keyboard")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_label("Note")).to_have_attribute("aria-required", "true")
    for _ in range(25):  # Tab never leaves the dialog
        await page.keyboard.press("Tab")
        assert await dialog.evaluate("(d) => d.contains(document.activeElement)")
    await page.keyboard.press("Shift+Tab")
    assert await dialog.evaluate("(d) => d.contains(document.activeElement)")
    await alice.shot("phone-modal")
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(page.get_by_test_id("metric-total")).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await alice.shot("phone-step")


REQUESTS_ONLY = {**FORM, "key": "web_requests_only", "title": "Requests only", "startRoles": ["requester"]}
REQUESTS_OR_MANAGERS = {**FORM, "key": "web_requests_or_managers", "title": "Requests or managers",
                        "startRoles": ["requester", "manager"]}  # fmt: skip


async def test_forbidden_and_not_found_for_what_exists_but_is_not_yours(
    server: Server, sign_in: Any, engine: Engine
) -> None:
    hidden = await first_task(server, await start(engine, FORM, "a requester's"))  # bob (approver) may not see it
    await engine.deploy(REQUESTS_ONLY, deployed_by="dana")
    await engine.deploy(REQUESTS_OR_MANAGERS, deployed_by="dana")
    bob = await sign_in("bob", server)
    # A task, its step and the step page opened on it exist, but not for bob: the API does not say they exist.
    for path in (f"/app/tasks/{hidden['id']}", f"/app/steps/{hidden['step']['id']}"):
        await bob.goto(path)
        await expect(bob.page.locator("[data-state=not-found]")).to_contain_text("or you may not see it")
    await bob.goto(f"/app/steps/{hidden['step']['id']}?task={hidden['id']}")
    await expect(bob.page.locator("[data-state=not-found]").first).to_be_visible()
    await expect(bob.page.get_by_role("link", name="Fill a requester's")).to_have_count(0)

    # A link to start a workflow bob may see but not start: the forbidden screen, saying why.
    await bob.goto("/app/start/web_requests_only")
    forbidden = bob.page.locator("[data-state=forbidden]")
    await expect(forbidden).to_contain_text("You may not start “Requests only”: it needs the requester role.")
    await expect(forbidden.get_by_role("link", name="Back to the inbox")).to_be_visible()
    await bob.shot("forbidden")
    await bob.goto("/app/start/web_requests_or_managers")
    await expect(forbidden).to_contain_text("it needs the requester or manager role.")
    await bob.goto("/app/start")  # the list offers only what bob may start
    await expect(
        bob.page.get_by_label("Workflow", exact=True).locator("option", has_text="Requests only")
    ).to_have_count(0)
    await bob.goto("/app/start/no_such_workflow")
    await expect(bob.page.locator("[data-state=not-found]")).to_contain_text("This workflow does not exist")

    alice = await sign_in("alice", server)  # who holds the role starts it from the same link
    await alice.goto("/app/start/web_requests_only")
    await expect(alice.page.get_by_label("Workflow", exact=True)).to_have_value("web_requests_only")
    await alice.page.get_by_role("button", name="Start").click()
    await expect(alice.page.get_by_test_id("instance-status")).to_be_visible()
