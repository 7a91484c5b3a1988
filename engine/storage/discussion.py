"""What hangs off a task besides its state: messages, uploaded documents and system-task attempts."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import Table, func, select

from engine.state import Document, TaskAttempt, TaskMessage
from engine.storage.database import Executor
from engine.storage.deferred import TransitionConnection
from engine.storage.lists import any_of
from engine.storage.models import documents, task_attempts, task_messages

# Batches of the task pages' DataLoaders; "ids" is the batch's keys, bound as one list.
_MESSAGES_OF = (
    select(task_messages)
    .where(any_of(task_messages.c.task_id, "ids"))
    .order_by(task_messages.c.posted_at, task_messages.c.id)
)
_MESSAGES = select(task_messages).where(any_of(task_messages.c.id, "ids"))
_DOCUMENTS_OF = (
    select(documents).where(any_of(documents.c.task_id, "ids")).order_by(documents.c.uploaded_at, documents.c.id)
)
_ATTEMPTS_OF = (
    select(task_attempts)
    .where(any_of(task_attempts.c.task_id, "ids"))
    .order_by(task_attempts.c.task_id, task_attempts.c.number)
)


class TaskDetailsRepository:
    def __init__(self, session: Executor) -> None:
        self.session = session

    async def _insert(self, table: Table, row: dict[str, Any]) -> None:
        """On a transition's connection the row waits for its next or last statement, like the
        transition's own rows (an autocommit transition then needs no transaction for it); elsewhere
        it is written now."""
        if isinstance(self.session, TransitionConnection):
            self.session.defer_insert(table, row)
        else:
            await self.session.execute(table.insert().values(**row))

    async def add_message(self, message: TaskMessage) -> None:
        await self._insert(task_messages, {
            "id": message.id, "task_id": message.task_id, "author_id": message.author_id, "body": message.body,
            "posted_at": message.posted_at,
        })  # fmt: skip

    async def messages_of(self, task_ids: Collection[str]) -> dict[str, list[TaskMessage]]:
        found: dict[str, list[TaskMessage]] = {task_id: [] for task_id in task_ids}
        for row in await self.session.execute(_MESSAGES_OF, {"ids": list(task_ids)}):
            found[row.task_id].append(TaskMessage(row.id, row.task_id, row.author_id, row.body, row.posted_at))
        return found

    async def get_messages(self, message_ids: Collection[str]) -> dict[str, TaskMessage]:
        return {
            row.id: TaskMessage(row.id, row.task_id, row.author_id, row.body, row.posted_at)
            for row in await self.session.execute(_MESSAGES, {"ids": list(message_ids)})
        }

    async def add_document(self, document: Document) -> None:
        await self._insert(documents, _document_values(document))

    async def documents_of(self, task_ids: Collection[str]) -> dict[str, list[Document]]:
        found: dict[str, list[Document]] = {task_id: [] for task_id in task_ids}
        for row in await self.session.execute(_DOCUMENTS_OF, {"ids": list(task_ids)}):
            found[row.task_id].append(_document(row))
        return found

    async def get_document(self, document_id: str) -> Document | None:
        row = (await self.session.execute(select(documents).where(documents.c.id == document_id))).first()
        return _document(row) if row else None

    async def add_attempt(self, attempt: TaskAttempt) -> None:
        await self._insert(task_attempts, {
            "task_id": attempt.task_id, "number": attempt.number, "started_at": attempt.started_at,
            "finished_at": attempt.finished_at, "request": attempt.request, "response": attempt.response,
            "error": attempt.error,
        })  # fmt: skip

    async def next_attempt_number(self, task_id: str) -> int:
        current = await self.session.scalar(
            select(func.max(task_attempts.c.number)).where(task_attempts.c.task_id == task_id)
        )
        return int(current or 0) + 1

    async def attempts_of(self, task_ids: Collection[str]) -> dict[str, list[TaskAttempt]]:
        found: dict[str, list[TaskAttempt]] = {task_id: [] for task_id in task_ids}
        for row in await self.session.execute(_ATTEMPTS_OF, {"ids": list(task_ids)}):
            found[row.task_id].append(
                TaskAttempt(
                    row.task_id, row.number, row.started_at, row.finished_at, row.request, row.response, row.error
                )  # fmt: skip
            )
        return found


def _document_values(document: Document) -> dict[str, Any]:
    return {
        "id": document.id, "task_id": document.task_id, "requirement_key": document.requirement_key,
        "filename": document.filename, "content_type": document.content_type, "size": document.size,
        "sha256": document.sha256, "uploaded_by": document.uploaded_by, "uploaded_at": document.uploaded_at,
    }  # fmt: skip


def _document(row: Any) -> Document:
    return Document(
        id=row.id, task_id=row.task_id, requirement_key=row.requirement_key, filename=row.filename,
        content_type=row.content_type, size=row.size, sha256=row.sha256, uploaded_by=row.uploaded_by,
        uploaded_at=row.uploaded_at,
    )  # fmt: skip
