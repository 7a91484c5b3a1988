"""The issue's done-when story, through the pages only: alice starts `expense_approval`, fills the form
(a validation error, a saved draft brought back), uploads the receipt; bob, in a second window, sees the
approval arrive live with a toast, approves it; alice sees that live. Nobody is told of their own actions."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from tests.web.conftest import Person, Server

PDF = b"%PDF-1.4\n1 0 obj\n<< >>\nendobj\n%%EOF\n"


async def start_expense(alice: Person, name: str) -> None:
    page = alice.page
    await page.get_by_role("link", name="Start a workflow").click()
    await page.get_by_label("Workflow", exact=True).select_option("expense_approval")
    await page.get_by_label("Input (JSON object)").fill(f'{{"entityName": "{name}", "entityType": "expense"}}')
    await page.get_by_role("button", name="Start").click()
    await expect(page.get_by_test_id("instance-status")).to_have_text("Waiting for tasks")


async def test_expense_approval_end_to_end(server: Server, sign_in: Any) -> None:
    alice = await sign_in("alice", server)
    bob = await sign_in("bob", server)
    page = alice.page
    await expect(page.locator("[data-state=empty]")).to_be_visible()
    await alice.shot("inbox-empty")
    await expect(bob.page.locator("[data-state=empty]")).to_be_visible()

    await start_expense(alice, "Team lunch")
    await expect(page.get_by_test_id("milestone").first).to_have_attribute("data-state", "current")
    await alice.shot("instance")
    await page.get_by_role("link", name="Request").click()
    await expect(page.get_by_test_id("metric-total")).to_contain_text("1")
    await alice.shot("step")

    # The form: Submit with nothing filled in shows each required field's error next to it.
    await page.get_by_role("link", name="Submit expense for Team lunch").click()
    dialog = page.get_by_role("dialog")
    await dialog.get_by_role("button", name="Submit").click()
    await expect(dialog.locator("[data-field=amount] .field-error")).to_contain_text("Amount is required")
    await expect(dialog.locator("[data-field=description] .field-error")).to_contain_text("Description is required")
    await expect(dialog.get_by_label("Amount")).to_have_attribute("aria-invalid", "true")
    await alice.shot("form-errors")

    # The currency mask formats while typing; Save Progress keeps a draft that comes back on reopening.
    amount = dialog.get_by_label("Amount")
    await amount.press_sequentially("1234.5")
    await expect(amount).to_have_value("1,234.5")
    await dialog.get_by_label("Description").fill("Lunch with the client")
    await dialog.get_by_role("button", name="Save Progress").click()
    await expect(dialog.get_by_text("Progress saved.")).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await page.get_by_role("link", name="Submit expense for Team lunch").click()
    await expect(dialog.get_by_test_id("draft-restored")).to_be_visible()
    await expect(dialog.get_by_label("Amount")).to_have_value("1,234.50")
    await expect(dialog.get_by_label("Description")).to_have_value("Lunch with the client")
    await dialog.get_by_label("Date").fill("2026-11-30")
    await dialog.get_by_label("Category").select_option("meals")
    await dialog.get_by_label("client").check()
    await dialog.get_by_label("Urgent").check()
    await alice.shot("form-filled")
    await dialog.get_by_role("button", name="Submit").click()
    await expect(dialog.get_by_test_id("readonly")).to_contain_text("Completed by Alice Adams")
    await expect(dialog.get_by_test_id("readonly")).to_contain_text("1234.5")
    await dialog.get_by_role("button", name="Close").click()

    # The receipt task appeared in the step's list without a reload.
    await page.get_by_role("link", name="Upload the receipt").click()
    await expect(dialog.get_by_test_id("requirements-met")).to_have_text("0/1 requirements met")
    files = dialog.get_by_label("Files for Receipt")
    await files.set_input_files(files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}])
    await expect(dialog.get_by_text("notes.txt: not an accepted type")).to_be_visible()
    await files.set_input_files(files=[{"name": "receipt.pdf", "mimeType": "application/pdf", "buffer": PDF}])
    await expect(dialog.get_by_test_id("requirements-met")).to_have_text("1/1 requirements met")
    await expect(dialog.get_by_test_id("document")).to_contain_text("receipt.pdf")
    await alice.shot("upload")
    await dialog.get_by_role("button", name="Submit").click()
    await expect(dialog.get_by_test_id("readonly")).to_contain_text("receipt.pdf")
    await dialog.get_by_role("button", name="Close").click()

    # bob's inbox, open all along, shows the approval as it is created, with a toast naming alice.
    approval = bob.page.get_by_role("link", name="Approve expense: Team lunch")
    await expect(approval).to_be_visible()
    await expect(bob.page.get_by_test_id("toast").filter(has_text="Alice Adams").first).to_be_visible()
    await expect(bob.page.get_by_test_id("priority").first).to_have_text("high")
    await bob.shot("inbox-live")
    await approval.click()
    decision = bob.page.get_by_role("dialog")
    await expect(decision.locator(".description")).to_contain_text("Alice Adams spent 1234.5 EUR on meals")
    await expect(decision).to_contain_text("receipt.pdf")
    await decision.get_by_label("Comment (optional)").fill("Enjoy")
    await bob.shot("approval")
    await decision.get_by_role("button", name="Approve").click()
    await expect(decision.get_by_test_id("readonly")).to_contain_text("Completed by Bob Brown")

    # alice hears of bob's approval; the instance completes once the worker has run notify and mail.
    await expect(page.get_by_test_id("toast").filter(has_text="Bob Brown").first).to_be_visible()
    await page.get_by_role("link", name="expense_approval").click()
    await expect(page.get_by_test_id("instance-status")).to_have_text("Completed")
    await expect(page.get_by_test_id("milestone").last).to_have_attribute("data-state", "done")
    await alice.shot("instance-completed")

    assert not [t for t in await alice.toasts() if t.startswith("Alice Adams")]
    assert not [t for t in await bob.toasts() if t.startswith("Bob Brown")]
