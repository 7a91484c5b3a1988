"""One story per task type through the pages: an approval rejected while the starter follows its
discussion live; a form whose draft someone else changed meanwhile (the revision conflict); a manager
assigning, and a refusal shown; an admin retrying a failed system task, its secret redacted."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from playwright.async_api import Route, expect

from engine.transitions.engine import Engine
from tests.web.conftest import APPROVAL, FAILING, FORM, PARTNER_KEY, UPLOADS, Server, graphql, start


async def first_task(server: Server, instance_id: str, user: str = "dana") -> dict[str, Any]:
    query = "query($id: ID!) { workflowInstance(id: $id) { tasks { id revision step { id } } } }"
    data = await graphql(server, user, query, id=instance_id)
    task: dict[str, Any] = data["workflowInstance"]["tasks"][0]
    return task


async def test_approval_rejected_with_a_live_discussion(server: Server, sign_in: Any, engine: Engine) -> None:
    task = await first_task(server, await start(engine, APPROVAL, "the offsite"))
    path = f"/app/steps/{task['step']['id']}?task={task['id']}"
    bob, alice = await sign_in("bob", server), await sign_in("alice", server)
    await bob.goto(path)
    await alice.goto(path)
    decision, watching = bob.page.get_by_role("dialog"), alice.page.get_by_role("dialog")
    await expect(decision.get_by_role("button", name="Reject")).to_be_visible()
    # alice started it: she sees it, not the buttons to decide it.
    await expect(watching).to_contain_text("You can see this task but not work on it")
    await expect(watching.get_by_role("button", name="Approve")).to_have_count(0)

    for person in (alice, bob):
        await person.page.get_by_role("tab", name="Discussion").click()
    await bob.page.get_by_label("Message", exact=True).fill("Which budget is this from?")
    await bob.page.get_by_role("button", name="Post").click()
    await expect(alice.page.get_by_test_id("message")).to_contain_text("Which budget is this from?")
    await expect(alice.page.get_by_test_id("message")).to_contain_text("Bob Brown")
    await alice.page.get_by_label("Message", exact=True).fill("Team budget")
    await alice.page.get_by_role("button", name="Post").click()
    await expect(bob.page.get_by_test_id("message").nth(1)).to_contain_text("Team budget")
    await bob.shot("discussion")

    await bob.page.get_by_role("tab", name="Details").click()
    await decision.get_by_label("Comment (optional)").fill("Not this quarter")
    await decision.get_by_role("button", name="Reject").click()
    await expect(decision.get_by_test_id("readonly")).to_contain_text("Completed by Bob Brown")
    await expect(decision.get_by_test_id("readonly")).to_contain_text("rejected")
    await alice.page.get_by_role("tab", name="Details").click()
    await expect(watching.get_by_test_id("readonly")).to_contain_text("Not this quarter")
    await expect(alice.page.get_by_test_id("toast").filter(has_text="Bob Brown completed").first).to_be_visible()
    await expect(alice.page.get_by_test_id("metric-completed")).to_contain_text("1")


async def test_a_form_saved_elsewhere_meanwhile_is_a_conflict_with_a_reload(
    server: Server, sign_in: Any, engine: Engine
) -> None:
    task = await first_task(server, await start(engine, FORM, "the inventory"))
    alice = await sign_in("alice", server)
    await alice.goto(f"/app/steps/{task['step']['id']}?task={task['id']}")
    dialog = alice.page.get_by_role("dialog")
    await dialog.get_by_label("Note").fill("typed here")
    await dialog.get_by_label("Count").press_sequentially("12a3")
    await expect(dialog.get_by_label("Count")).to_have_value("123")  # the integer mask keeps digits only

    # alice, on another device, saves a draft of the same task.
    save = """mutation($id: ID!) { saveTaskProgress(input: {taskId: $id, values: {note: "from the phone"}}) {
      __typename } }"""
    assert (await graphql(server, "alice", save, id=task["id"]))["saveTaskProgress"]["__typename"] == "TaskSuccess"
    await dialog.get_by_role("button", name="Save Progress").click()
    await expect(dialog.get_by_test_id("conflict")).to_contain_text("Someone else changed this task")
    await alice.shot("conflict")
    await dialog.get_by_test_id("conflict").get_by_role("button", name="Reload").click()
    await expect(dialog.get_by_label("Note")).to_have_value("from the phone")
    await dialog.get_by_label("Note").fill("")
    await dialog.get_by_role("button", name="Submit").click()
    await expect(dialog.locator("[data-field=note] .field-error")).to_contain_text("Note is required")
    await dialog.get_by_label("Note").fill("counted")
    await dialog.get_by_role("button", name="Submit").click()
    await expect(dialog.get_by_test_id("readonly")).to_contain_text("counted")


async def test_a_manager_assigns_and_a_refusal_is_shown(server: Server, sign_in: Any, engine: Engine) -> None:
    first = await first_task(server, await start(engine, FORM, "the first"))
    second = await first_task(server, await start(engine, FORM, "the second"))
    carol, alice = await sign_in("carol", server), await sign_in("alice", server)
    await carol.goto(f"/app/steps/{first['step']['id']}?task={first['id']}")
    dialog = carol.page.get_by_role("dialog")
    await expect(dialog.get_by_test_id("modal-assignee")).to_have_text("Role: requester")
    await dialog.get_by_label("Assignee", exact=True).select_option("alice")
    await dialog.get_by_role("button", name="Assign", exact=True).click()
    await expect(dialog.get_by_test_id("modal-assignee")).to_have_text("Alice Adams")
    await carol.shot("assigned")
    row = alice.page.locator(f"[data-task-id='{first['id']}']")
    await expect(row.get_by_test_id("assignee")).to_have_text("Alice Adams")  # her inbox, live
    await expect(alice.page.get_by_test_id("toast").filter(has_text="Carol Clark assigned").first).to_be_visible()

    # alice may claim the second task, but carol takes it before alice's page hears of it: refused, and said so.
    # Held meanwhile, with the events: the page's own re-reads of the task (it re-reads once live, having
    # been read before the cursor), or it may hear of carol's claim after all.
    reads_flow = asyncio.Event()
    reads_flow.set()

    async def task_reads(route: Route) -> None:
        if "query Task(" in (route.request.post_data or ""):
            await reads_flow.wait()
        await route.continue_()

    await alice.page.route("**/graphql", task_reads)
    await alice.goto(f"/app/steps/{second['step']['id']}?task={second['id']}")
    mine = alice.page.get_by_role("dialog")
    claim = mine.get_by_role("button", name="Assign to me")
    await expect(claim).to_be_visible()
    await expect(mine.get_by_label("Assignee", exact=True)).to_have_count(0)  # not a manager: no picker
    reads_flow.clear()
    alice.gate.hold()
    taken = "mutation($id: ID!) { claimTask(input: {taskId: $id}) { __typename } }"
    assert (await graphql(server, "carol", taken, id=second["id"]))["claimTask"]["__typename"] == "TaskSuccess"
    await claim.click()
    await expect(mine.get_by_role("alert")).to_be_visible()
    await alice.shot("refused")
    reads_flow.set()
    alice.gate.release()
    await expect(mine.get_by_test_id("modal-assignee")).to_have_text("Carol Clark")
    await expect(claim).to_have_count(0)


async def test_an_admin_retries_a_failed_system_task(server: Server, sign_in: Any, engine: Engine) -> None:
    instance_id = await start(engine, FAILING, "the partner")
    carol, dana = await sign_in("carol", server), await sign_in("dana", server)
    await carol.goto(f"/app/instances/{instance_id}")
    await expect(carol.page.get_by_test_id("instance-status")).to_have_text("Failed")
    await carol.page.get_by_role("link", name="Work", exact=True).click()
    await expect(carol.page.get_by_test_id("status")).to_have_text("Failed")
    await expect(carol.page.get_by_role("img", name="HTTP request")).to_be_visible()
    await carol.page.get_by_role("link", name="Call the partner").click()
    details = carol.page.get_by_test_id("system-details")
    await expect(details.get_by_test_id("attempt")).to_have_count(1)
    await expect(details.get_by_test_id("system-error")).to_be_visible()
    await expect(details.get_by_role("button", name="Retry")).to_have_count(0)  # managers may not retry
    assert PARTNER_KEY not in await details.inner_text()
    await expect(details).to_contain_text("X-Api-Key")

    await dana.goto(carol.page.url.removeprefix(carol.server.url))
    retry = dana.page.get_by_test_id("system-details").get_by_role("button", name="Retry")
    await dana.shot("failed-system-task")
    await retry.click()
    # The worker runs it again (and it fails again): both pages show the second attempt without a reload.
    for person in (dana, carol):
        await expect(person.page.get_by_test_id("system-details").get_by_test_id("attempt")).to_have_count(2)
    await expect(carol.page.get_by_test_id("toast").filter(has_text="Dana Diaz retried").first).to_be_visible()


PDF = b"%PDF-1.4\n1 0 obj\n<< >>\nendobj\n%%EOF\n"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + b"\0" * 32

DROP = """async ([selector, files]) => {
  const transfer = new DataTransfer();
  for (const [name, type, base64] of files) {
    transfer.items.add(new File([Uint8Array.from(atob(base64), (c) => c.charCodeAt(0))], name, {type}));
  }
  document.querySelector(selector).dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
}"""


async def test_documents_dropped_checked_before_and_after_upload(server: Server, sign_in: Any, engine: Engine) -> None:
    task = await first_task(server, await start(engine, UPLOADS, "the flat"))
    alice = await sign_in("alice", server)
    await alice.goto(f"/app/steps/{task['step']['id']}?task={task['id']}")
    dialog = alice.page.get_by_role("dialog")
    met = dialog.get_by_test_id("requirements-met")
    await expect(met).to_have_text("0/2 requirements met")

    def files(*items: tuple[str, str, bytes]) -> list[list[str]]:
        return [[name, kind, base64.b64encode(body).decode()] for name, kind, body in items]

    # Refused in the page, before any upload: too large, and not an accepted type.
    big = ("scan.pdf", "application/pdf", PDF + b"\0" * 4096)
    await alice.page.evaluate(DROP, ["[data-testid=dropzone-contract]", files(big)])
    await expect(dialog.get_by_text("scan.pdf: larger than 2.0 KB")).to_be_visible()
    await alice.page.evaluate(DROP, ["[data-testid=dropzone-photos]", files(("notes.txt", "text/plain", b"hi"))])
    await expect(dialog.get_by_text("notes.txt: not an accepted type")).to_be_visible()
    # Refused by the server after the upload: it looks at the bytes, not at the name or the declared type.
    await alice.page.evaluate(DROP, ["[data-testid=dropzone-contract]", files(("fake.pdf", "application/pdf", b"hi"))])
    await expect(dialog.get_by_role("alert").filter(has_text="fake.pdf")).to_contain_text("accepts")
    await expect(met).to_have_text("0/2 requirements met")

    await alice.page.evaluate(
        DROP, ["[data-testid=dropzone-contract]", files(("contract.pdf", "application/pdf", PDF))]
    )
    await expect(met).to_have_text("1/2 requirements met")
    await alice.page.evaluate(DROP, ["[data-testid=dropzone-photos]", files(("a.png", "image/png", PNG))])
    await expect(met).to_have_text("2/2 requirements met")
    await expect(dialog.locator("[data-requirement=photos] progress")).to_have_attribute("value", "1")
    await alice.shot("documents")
    await dialog.get_by_role("button", name="Submit").click()
    await expect(dialog.get_by_test_id("readonly")).to_contain_text("contract.pdf")
    await expect(dialog.get_by_test_id("readonly")).to_contain_text("a.png")
