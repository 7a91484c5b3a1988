"""The email notifier: tells people about user tasks whose node says ``"notify": {"email": true}``.

It reads the event log after the position it stored (``event_cursors``, one row for every worker), and
for each task created or assigned to someone it sends whoever the task is for now (its assignee; with
``candidates``, the members of its role or group while nobody holds it) one message through the email
executor: the task, and Approve / Reject / Open links (:mod:`engine.tasks.email_actions`) that act as
that person. A task that is no longer open by the time its event is read is left alone.

At-least-once: the position moves on after the messages went; a worker that dies between the two sends
them again with the same ``Message-ID`` (the task's and the person's), which mail systems drop. An SMTP
server that fails for now holds the notifier at that event until it answers.
"""

from __future__ import annotations

import html
import logging
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import urlencode

from sqlalchemy import insert, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError

from engine.definitions.model import APPROVAL_SCHEMA_TYPE, Node
from engine.errors import ExecutionFailedError
from engine.state import Task, TaskEvent, TaskEventKind, User
from engine.storage.directory import DirectoryRepository
from engine.storage.instances import InstanceRepository
from engine.storage.models import event_cursors
from engine.storage.task_events import TaskEventRepository
from engine.storage.tasks import TaskRepository
from engine.tasks.email_actions import EmailAction, EmailActionTokens
from engine.tasks.recipients import task_recipients
from engine.transitions.engine import Engine
from engine.workers.email import EmailExecutor
from engine.workers.executor import ExecutionRequest, SystemTaskContext

log = logging.getLogger(__name__)

CURSOR = "email-notifications"
BATCH = 200
RETRY_AFTER = timedelta(seconds=30)
_NOTIFIED = frozenset({TaskEventKind.CREATED, TaskEventKind.ASSIGNED})
_EMAIL = EmailExecutor()


class EmailNotifier:
    """One worker's notifier; :meth:`run_once` reads one batch of the log."""

    def __init__(self, engine: Engine, context: SystemTaskContext, tokens: EmailActionTokens, public_url: str) -> None:
        self.engine, self.context, self.tokens = engine, context, tokens
        self.public_url = public_url.rstrip("/")
        self._paused_until: datetime | None = None

    async def run_once(self) -> int:
        """Send the messages the next events call for; how many were sent."""
        now = self.engine.clock.now()
        if self._paused_until is not None and now < self._paused_until:
            return 0
        cursor = await self._cursor()
        async with self.engine.db.read() as session:
            events = await TaskEventRepository(session).after(cursor, BATCH)
        sent, read_through = 0, cursor
        for event in events:
            try:
                sent += await self._notify(event)
            except ExecutionFailedError as exc:
                if not exc.non_retryable:
                    log.warning("email notifications: held at event %s until the SMTP server answers: %s",
                                event.position, exc.message)  # fmt: skip
                    self._paused_until = now + RETRY_AFTER
                    break
                log.warning("email notifications: event %s not sent, for good: %s", event.position, exc.message)
            assert event.position is not None
            read_through = event.position
        if read_through != cursor:
            await self._advance(cursor, read_through)
        return sent

    async def _cursor(self) -> int:
        async with self.engine.db.read() as session:
            position = await session.scalar(select(event_cursors.c.position).where(event_cursors.c.name == CURSOR))
        return int(position or 0)

    async def _advance(self, read_from: int, read_through: int) -> None:
        """Move the stored position on, unless another worker moved it first (then its messages went too)."""
        try:
            async with self.engine.db.transaction() as session:
                result = await session.execute(
                    update(event_cursors)
                    .where(event_cursors.c.name == CURSOR, event_cursors.c.position == read_from)
                    .values(position=read_through)
                )
                if cast(CursorResult[Any], result).rowcount == 0 and read_from == 0:  # an UPDATE's result
                    await session.execute(insert(event_cursors).values(name=CURSOR, position=read_through))
        except IntegrityError:
            pass  # another worker stored the first position at the same moment

    async def _notify(self, event: TaskEvent) -> int:
        if event.kind not in _NOTIFIED:
            return 0
        async with self.engine.db.read() as session:
            task = await TaskRepository(session).get_by_id(event.task_id)
            instance = await InstanceRepository(session).get(event.workflow_instance_id, summary=True)
            if task is None or instance is None or not task.status.is_open:
                return 0
            definition = await self.engine.definition(
                instance.definition_key, instance.definition_version, executor=session
            )
            node = definition.node(task.node_id)
            if node.notify is None or not node.notify.email:
                return 0
            if event.kind is TaskEventKind.ASSIGNED and task.assigned_user_id is None:
                return 0  # unassigned: the candidates were told when it was created
            recipients = await _recipients(DirectoryRepository(session), task, node)
        for user in recipients:
            await self._send(task, user)
        return len(recipients)

    async def _send(self, task: Task, user: User) -> None:
        assert user.email is not None
        token = self.tokens.issue(user.id, task.id)
        actions = [EmailAction.APPROVE, EmailAction.REJECT] if task.schema_type == APPROVAL_SCHEMA_TYPE else []
        links = [(action, f"{self.public_url}/email-actions/{action.value}?{urlencode({'token': token})}")
                 for action in [*actions, EmailAction.OPEN]]  # fmt: skip
        lines = [f"{action.value.capitalize()}: {url}" for action, url in links]
        body = (f"Hello {user.name},\n\n“{task.title}” is waiting for you in Stepwise.\n\n" + "\n".join(lines)
                + "\n\nEach link asks you to confirm first, works once, and only for you.\n")  # fmt: skip
        buttons = " ".join(f'<a href="{html.escape(url)}">{action.value.capitalize()}</a>' for action, url in links)
        page = (f"<p>Hello {html.escape(user.name)},</p><p>“{html.escape(task.title)}” is waiting for you in "
                f"Stepwise.</p><p>{buttons}</p><p>Each link asks you to confirm first, works once, and only for "
                "you.</p>")  # fmt: skip
        config = {"to": [user.email], "subject": f"Waiting for you: {task.title}", "body": body, "html": page}
        request = ExecutionRequest(
            task_id=f"{task.id}.{user.id}", workflow_instance_id=task.workflow_instance_id,
            node=Node(id=task.node_id, type="email", config=config), attempt=1, config=config,
            task_created_at=task.created_at,
        )  # fmt: skip
        await _EMAIL.execute(request, self.context)


async def _recipients(directory: DirectoryRepository, task: Task, node: Node) -> list[User]:
    """Who the task is for now, those of them with an email address; candidates only if ``notify`` asks."""
    assert node.notify is not None
    if task.assigned_user_id is None and not node.notify.candidates:
        return []
    return [user for user in await task_recipients(directory, task) if user.email]
