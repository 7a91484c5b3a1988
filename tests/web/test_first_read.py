"""The step page's first read (web/src/first-read.js): it leaves before the app's modules have run, is asked
once, comes with the first render when it is in already, and answers only for the token it was sent with."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from playwright.async_api import Browser, Request, Route, expect

from engine.transitions.engine import Engine
from tests.web.conftest import APPROVAL, Server, start, token
from tests.web.test_task_types import first_task

# Whether "Loading the step…" was ever in the document (test-side: injected by Playwright, not the app's code).
RECORD_LOADING = """
window.__loadingShown = false;
new MutationObserver(() => {
  if (document.body?.textContent.includes("Loading the step")) window.__loadingShown = true;
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


def is_step_read(request: Request) -> bool:
    return request.url.endswith("/graphql") and request.method == "POST" and "query Step(" in (request.post_data or "")


async def test_the_step_read_leaves_before_the_app_runs_and_is_asked_once(
    server: Server, sign_in: Any, engine: Engine
) -> None:
    task = await first_task(server, await start(engine, APPROVAL, "the early read"))
    bob = await sign_in("bob", server)
    page = bob.page
    await page.context.add_init_script(script=RECORD_LOADING)
    step_reads: list[Request] = []
    answered = asyncio.Event()
    page.on("request", lambda r: step_reads.append(r) if is_step_read(r) else None)
    page.on("requestfinished", lambda r: answered.set() if is_step_read(r) else None)
    held: list[str] = []

    # The app's entry module is kept back until the step page's read has been answered: the read cannot
    # be waiting for it, and the answer is in before the app's first render.
    async def hold_the_app(route: Route) -> None:
        try:
            await asyncio.wait_for(answered.wait(), 10)
        except TimeoutError:
            held.append("the step read never left while the app's modules were held")
        await asyncio.sleep(0.2)  # the answer's JSON read, in the page
        await route.continue_()

    await page.route("**/src/main.js", hold_the_app)
    await page.goto(f"{server.url}/app/steps/{task['step']['id']}")
    await expect(page.get_by_test_id("task-row").filter(has_text="Decide on the early read")).to_be_visible()
    assert held == []
    assert await page.evaluate("window.__loadingShown") is False  # the first render had the tasks
    await expect(page.get_by_test_id("live")).to_have_attribute("data-state", "live")
    await page.wait_for_timeout(500)  # the re-read once live (onResync), debounced
    # The first read once, and one re-read once live: the first answer was not asked for again.
    assert len(step_reads) == 2, [r.post_data for r in step_reads]

    # Toggling asks anew, with the toggle's variables.
    await page.get_by_role("switch", name="Assigned to me").check()
    await expect(page.locator("[data-state=empty]")).to_contain_text("None of this step's tasks is assigned to you")
    assert len(step_reads) == 3
    assert json.loads(step_reads[-1].post_data or "{}")["variables"] == {"id": task["step"]["id"], "mine": True,
                                                                        "completed": True}  # fmt: skip


async def test_a_first_read_answers_only_for_the_token_it_was_sent_with(
    server: Server, browser: Browser, contexts: Any, engine: Engine
) -> None:
    task = await first_task(server, await start(engine, APPROVAL, "another token"))
    opened, watch = contexts
    context = await browser.new_context()
    opened.append(context)
    page = watch.page(await context.new_page())
    await page.goto(server.url + "/app/")
    await page.evaluate("sessionStorage.setItem('stepwise.token', 'not-a-token')")
    # The page opens with a refused token: its first reads are refused, and it asks to sign in again.
    await page.goto(f"{server.url}/app/steps/{task['step']['id']}")
    await expect(page.get_by_role("status").filter(has_text="Signed out:")).to_be_visible()
    await page.get_by_label("Bearer token").fill(token("bob"))
    await page.get_by_role("button", name="Sign in with token").click()
    # Signed in anew, the step page reads with the new token (not the refused first answer, which would sign
    # bob out again).
    await expect(page.get_by_test_id("task-row").filter(has_text="Decide on another token")).to_be_visible()
    await expect(page.get_by_test_id("me")).to_have_text("Bob Brown")
