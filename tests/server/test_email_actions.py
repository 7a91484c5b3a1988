"""Approve by email end to end: the worker's notifier mails a real aiosmtpd server on loopback, the test reads
the link out of the message and follows it with httpx against the real server (uvicorn on loopback). A used,
expired, altered or someone else's link is refused with a page that says so, and the database is unchanged."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from aiosmtpd.controller import Controller
from sqlalchemy import func, select
from starlette.applications import Starlette

from engine import DefinitionError, EmailNotifier, Engine, TaskStatus
from engine.clock import ManualClock
from engine.storage.models import email_action_uses, task_events
from engine.storage.tasks import TaskRepository
from engine.tasks.service import TaskService
from engine.workers.executor import SystemTaskContext
from server.app import create_app
from server.auth import issue_token
from server.demo import load_demo
from server.settings import Settings
from tests.support import free_port
from tests.workers.support import Mailbox, _Inbox


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    inbox, port = _Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield Mailbox(f"smtp://127.0.0.1:{port}", inbox)
    finally:
        controller.stop()


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def settings(settings: Settings, mailbox: Mailbox, port: int) -> Settings:
    return replace(settings, smtp_url=mailbox.url, public_url=f"http://127.0.0.1:{port}")


@pytest.fixture
async def server(app: Starlette, port: int) -> AsyncIterator[str]:
    """The app served by uvicorn on loopback (its lifespan is the ``app`` fixture's)."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    served = uvicorn.Server(config)
    running = asyncio.create_task(served.serve())
    for _ in range(500):
        if served.started or running.done():
            break
        await asyncio.sleep(0.01)
    assert served.started, running.exception() if running.done() else "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        served.should_exit = True
        await asyncio.wait_for(running, 10)


def approval(key: str, *, notify: dict[str, bool] | None = None, **assignee: str) -> dict[str, Any]:
    node = {"id": "decide", "type": "userTask", "schemaType": "userTask.approval", "title": "Approve order {{ n }}",
            "notify": notify or {"email": True}, **(assignee or {"assignToUser": "bob"})}  # fmt: skip
    return {"key": key, "start": "decide", "nodes": [node]}


@dataclass
class Scene:
    engine: Engine
    settings: Settings
    mailbox: Mailbox
    http: httpx.AsyncClient
    clock: ManualClock

    async def start(self, definition: dict[str, Any], n: int = 1) -> str:
        await self.engine.deploy(definition, deployed_by="dana")
        instance = await self.engine.start(definition["key"], {"n": n}, "alice")
        await self.engine.sequencer.idle()
        async with SystemTaskContext(clock=self.clock, smtp_url=self.settings.smtp_url) as context:
            notifier = EmailNotifier(
                self.engine, context, self.settings.email_tokens(self.engine), self.settings.public_url
            )
            await notifier.run_once()
        [token] = instance.tokens
        assert token.task_id is not None
        return token.task_id

    def links(self, to: str) -> dict[str, str]:
        """The links of the last message to ``to``, read from its plain-text part."""
        message = [m for m in self.mailbox.messages() if m["To"] == to][-1]
        plain = message.get_body(preferencelist=("plain",))
        assert plain is not None
        lines = plain.get_content().splitlines()
        found = (re.fullmatch(r"(Approve|Reject|Open): (\S+)", line) for line in lines)
        return {match.group(1): match.group(2) for match in found if match is not None}

    async def state(self, task_id: str) -> tuple[TaskStatus, int, int]:
        """The task's status, the events in the log, the links used: what a refusal must not change."""
        async with self.engine.db.read() as session:
            task = await TaskRepository(session).get_by_id(task_id)
            events = await session.scalar(select(func.count()).select_from(task_events))
            used = await session.scalar(select(func.count()).select_from(email_action_uses))
        assert task is not None
        return task.status, int(events or 0), int(used or 0)

    async def confirm(self, link: str, **headers: str) -> httpx.Response:
        """Follow the link (GET), then post its form back as a browser would."""
        page = await self.http.get(link, headers=headers)
        assert page.status_code == 200, page.text
        token = re.search(r'name="token" value="([^"]+)"', page.text)
        action = re.search(r'formaction="(/email-actions/\w+)"', page.text)
        assert token is not None and action is not None, page.text
        return await self.http.post(action.group(1), data={"token": token.group(1)}, headers=headers)


@pytest.fixture
async def scene(
    app_engine: Engine, settings: Settings, mailbox: Mailbox, server: str, clock: ManualClock
) -> AsyncIterator[Scene]:
    async with httpx.AsyncClient(base_url=server) as http:
        yield Scene(app_engine, settings, mailbox, http, clock)


async def test_the_approve_link_in_the_message_decides_the_task_as_its_user_once(scene: Scene) -> None:
    task_id = await scene.start(approval("mail_approve"))

    message = scene.mailbox.messages()[-1]
    assert message["To"] == "bob@example.com" and message["Subject"] == "Waiting for you: Approve order 1"
    links = scene.links("bob@example.com")
    assert set(links) == {"Approve", "Reject", "Open"}
    assert all(link.startswith(scene.settings.public_url + "/email-actions/") for link in links.values())
    page = await scene.http.get(links["Approve"])
    assert page.status_code == 200 and "Approve as Bob Brown" in page.text and "Reject as" not in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
    assert (await scene.http.get("/email-actions/assets/style.css")).status_code == 200
    before = await scene.state(task_id)
    assert before[0] is TaskStatus.PENDING, "the page changed nothing"

    done = await scene.confirm(links["Approve"])

    assert done.status_code == 200 and "Approved" in done.text, done.text
    async with scene.engine.db.read() as session:
        task = await TaskRepository(session).get_by_id(task_id)
    assert task is not None and task.status is TaskStatus.COMPLETED
    assert task.output["decision"] == "approved" and task.output["decidedBy"] == "bob" and task.completed_by == "bob"

    after = await scene.state(task_id)
    token = re.search(r"token=(\S+)", links["Approve"])
    assert token is not None
    again = await scene.http.post("/email-actions/approve", data={"token": token.group(1)})
    assert again.status_code == 410 and "used already" in again.text
    assert await scene.state(task_id) == after, "the reused link changed nothing"


async def test_the_reject_link_rejects(scene: Scene) -> None:
    task_id = await scene.start(approval("mail_reject"))

    done = await scene.confirm(scene.links("bob@example.com")["Reject"])

    assert done.status_code == 200 and "Rejected" in done.text
    async with scene.engine.db.read() as session:
        task = await TaskRepository(session).get_by_id(task_id)
    assert task is not None and task.output["decision"] == "rejected"


async def test_an_expired_link_is_refused_and_changes_nothing(scene: Scene) -> None:
    task_id = await scene.start(approval("mail_expired"))
    link = scene.links("bob@example.com")["Approve"]
    token = link.partition("token=")[2]
    before = await scene.state(task_id)

    scene.clock.advance(timedelta(hours=72, seconds=1))

    page = await scene.http.get(link)
    posted = await scene.http.post("/email-actions/approve", data={"token": token})
    assert page.status_code == posted.status_code == 410
    assert "expired" in page.text and "expired" in posted.text
    assert await scene.state(task_id) == before


@pytest.mark.parametrize("tamper", ["signature", "claims", "cut"])
async def test_an_altered_link_is_refused_and_changes_nothing(scene: Scene, tamper: str) -> None:
    task_id = await scene.start(approval(f"mail_tampered_{tamper}"))
    token = scene.links("bob@example.com")["Approve"].partition("token=")[2]
    header, claims, signature = token.split(".")
    altered = {
        "signature": f"{header}.{claims}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}",
        "claims": f"{header}.{claims[:-3]}xyz.{signature}",
        "cut": f"{header}.{claims}",
    }[tamper]
    before = await scene.state(task_id)

    page = await scene.http.get("/email-actions/approve", params={"token": altered})
    posted = await scene.http.post("/email-actions/approve", data={"token": altered})

    assert page.status_code == posted.status_code == 400 and "not valid" in posted.text
    assert await scene.state(task_id) == before


async def test_a_link_followed_by_someone_signed_in_as_another_user_is_refused(scene: Scene) -> None:
    task_id = await scene.start(approval("mail_other_user"))
    link = scene.links("bob@example.com")["Approve"]
    carol = {"Authorization": f"Bearer {issue_token(scene.settings, 'carol')}"}
    before = await scene.state(task_id)

    page = await scene.http.get(link, headers=carol)
    posted = await scene.http.post("/email-actions/approve", data={"token": link.partition("token=")[2]}, headers=carol)

    assert page.status_code == posted.status_code == 403 and "someone else" in posted.text
    assert await scene.state(task_id) == before
    bob = {"Authorization": f"Bearer {issue_token(scene.settings, 'bob')}"}
    assert (await scene.confirm(link, **bob)).status_code == 200, "as the user it was sent to, it works"


async def test_candidates_each_get_a_link_and_the_first_decision_wins(scene: Scene) -> None:
    definition = approval("mail_candidates", notify={"email": True, "candidates": True},
                          assignToRole="purchase_approver")  # fmt: skip
    task_id = await scene.start(definition)
    grace, henry = scene.links("grace@example.com"), scene.links("henry@example.com")
    assert scene.links("ivan@example.com")

    assert (await scene.confirm(grace["Approve"])).status_code == 200
    after = await scene.state(task_id)
    late = await scene.http.post("/email-actions/reject", data={"token": henry["Reject"].partition("token=")[2]})

    assert late.status_code == 409, late.text
    assert await scene.state(task_id) == after, "the late link left nothing behind, not even its use"


async def test_without_notify_nobody_is_mailed_and_notify_is_checked_at_deploy(scene: Scene) -> None:
    quiet = approval("mail_quiet")
    del quiet["nodes"][0]["notify"]
    await scene.start(quiet)
    assert scene.mailbox.messages() == []

    for node, field in (
        ({"id": "n", "type": "echo", "notify": {"email": True}}, "notify"),
        ({"id": "n", "type": "userTask", "notify": {"email": True, "sms": True}}, "nodes.n.notify.sms"),
        ({"id": "n", "type": "userTask", "notify": {"candidates": True}}, "notify.candidates"),
    ):
        with pytest.raises(DefinitionError) as refused:
            await scene.engine.deploy({"key": "bad_notify", "start": "n", "nodes": [node]})
        assert any(problem.field.endswith(field) for problem in refused.value.field_errors), refused.value.field_errors


async def test_the_servers_worker_sends_the_message_on_its_own(
    settings: Settings, mailbox: Mailbox, clock: ManualClock
) -> None:
    """``stepwise serve``'s embedded worker (``server.workers.running_worker``) runs the notifier."""
    app = create_app(replace(settings, embedded_worker=True, worker_poll_seconds=0.05), clock=clock)
    async with app.router.lifespan_context(app):
        await load_demo(app.state.engine)
        await app.state.engine.deploy(approval("mail_embedded"), deployed_by="dana")
        await app.state.engine.start("mail_embedded", {"n": 7}, "alice")
        for _ in range(400):
            if mailbox.messages():
                break
            await asyncio.sleep(0.025)
    [message] = mailbox.messages()
    assert message["To"] == "bob@example.com" and message["Subject"] == "Waiting for you: Approve order 7"


async def test_a_decision_that_breaks_off_untyped_leaves_the_link_unused(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lost connection or a cancellation is no StepwiseError: the link's use must still not outlive it."""
    task_id = await scene.start(approval("mail_broken"))
    link = scene.links("bob@example.com")["Approve"]
    decide = TaskService.decide

    async def lost(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionResetError("the database went away")

    monkeypatch.setattr(TaskService, "decide", lost)
    broken = await scene.confirm(link)
    assert broken.status_code == 500
    assert (await scene.state(task_id))[0] is TaskStatus.PENDING
    monkeypatch.setattr(TaskService, "decide", decide)

    done = await scene.confirm(link)

    assert done.status_code == 200 and "Approved" in done.text, done.text
    assert (await scene.state(task_id))[::2] == (TaskStatus.COMPLETED, 1)


async def test_a_policy_of_named_users_mails_them_but_not_one_excluded(scene: Scene) -> None:
    node = {"id": "decide", "type": "userTask", "schemaType": "userTask.approval", "title": "Approve order {{ n }}",
            "notify": {"email": True, "candidates": True}, "excludes": ["starter"],
            "approval": {"required": 1, "of": {"users": ["alice", "grace", "henry"]}}}  # fmt: skip
    await scene.start({"key": "mail_named", "start": "decide", "nodes": [node]})

    mailed = {message["To"] for message in scene.mailbox.messages()}

    assert mailed == {"grace@example.com", "henry@example.com"}  # alice started it: no link for her
