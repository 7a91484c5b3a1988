"""An AI agent's request in the approver's inbox: a bad edit is refused with its path, a good
one approves the action with the edited arguments, and the record says so."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from engine import ApprovalRequest, ApprovalRequestService, VisibilityService
from engine.transitions.engine import Engine
from server.demo import DEMO_REQUEST
from tests.web.conftest import Server, graphql


async def test_an_agents_request_is_edited_and_approved_in_the_browser(
    server: Server, sign_in: Any, engine: Engine
) -> None:
    service = ApprovalRequestService(engine, VisibilityService(engine))
    await service.ensure_definition()
    alice = await engine.user("alice")
    assert alice is not None
    request = ApprovalRequest(**{**DEMO_REQUEST.__dict__, "idempotency_key": None})
    task_id = (await service.request(alice, request)).task.id
    found = await graphql(server, "bob", "query($id: ID!) { task(id: $id) { step { id } } }", id=task_id)
    bob = await sign_in("bob", server)
    await bob.goto(f"/app/steps/{found['task']['step']['id']}?task={task_id}")
    dialog = bob.page.get_by_role("dialog")
    await expect(dialog.get_by_test_id("requested-by")).to_have_text("alice")
    arguments = dialog.get_by_label("Arguments (edit to approve with changes)")
    await arguments.fill('{"orderId": "A-1042", "amount": 900}')
    await dialog.get_by_role("button", name="Approve with edits").click()
    await expect(dialog).to_contain_text("arguments.amount")
    await arguments.fill('{"orderId": "A-1042", "amount": 90}')
    await dialog.get_by_role("button", name="Approve with edits").click()
    await expect(dialog.get_by_test_id("readonly")).to_contain_text("Completed by Bob Brown")
    await expect(dialog.get_by_test_id("readonly")).to_contain_text("edited")
    decided = await graphql(server, "alice", "query($id: ID!) { task(id: $id) { output } }", id=task_id)
    assert decided["task"]["output"]["arguments"] == {"orderId": "A-1042", "amount": 90}
