"""What people do with tasks: claim, assign, save progress, submit, approve or reject, discuss.

Each operation runs as one engine transition, so the rule checks, the task change, its events and
whatever the workflow does next commit together. Checks come in a fixed order: visibility
(``NotFound``, so existence does not leak), state, permission, revision, then the values — except
their size, refused before anything is read (it says nothing about the task, and costs every reader).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from engine.definitions.forms import MAX_TEXT_LENGTH, validate_values
from engine.definitions.model import APPROVAL_SCHEMA_TYPE, DOCUMENT_UPLOAD_SCHEMA_TYPE
from engine.definitions.validation import check_json_size
from engine.errors import ConflictError, FieldError, ForbiddenError, InvalidStateError, NotFoundError, ValidationError
from engine.state import Task, TaskEventKind, TaskKind, TaskMessage, TaskStatus, User, new_id
from engine.storage.directory import DirectoryRepository
from engine.storage.discussion import TaskDetailsRepository
from engine.storage.tasks import TaskRepository
from engine.tasks import permissions
from engine.transitions.engine import Engine
from engine.transitions.transition import Transition

MAX_MESSAGE_LENGTH = 10_000


class TaskService:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def _on_task(
        self, user: User, task_id: str, action: Callable[[Transition, Task], Awaitable[Any]]
    ) -> tuple[Any, Task]:
        """Run ``action`` on the task, locked, inside its instance's transition; returns the task after."""
        async with self.engine.db.read() as session:
            found = await TaskRepository(session).get_by_id(task_id)
        if found is None:
            raise NotFoundError(f"no task {task_id}")

        async def run(transition: Transition) -> tuple[Any, Task]:
            task = await transition.tasks.get_by_id(task_id)
            if task is None or not permissions.can_see_task(user, task, transition.instance.started_by):
                raise NotFoundError(f"no task {task_id}")
            # Not read back: a read after the action's deferred writes would need a transaction
            # (engine.storage.deferred), and the transition knows what it made of the task.
            return await action(transition, task), transition.as_left(task)

        (result, after), _ = await self.engine.transition(found.workflow_instance_id, user.id, run)
        return result, after

    # -- ownership -------------------------------------------------------------------------

    async def claim(self, user: User, task_id: str) -> Task:
        async def claim(transition: Transition, task: Task) -> None:
            _require_open_user_task(task)
            if task.assigned_user_id == user.id:
                raise InvalidStateError("you already hold this task")
            if not permissions.can_claim(user, task):
                raise ForbiddenError("only a candidate (its role or group) may claim an unassigned task")
            await transition.update_task(task, TaskEventKind.CLAIMED, assigned_user_id=user.id,
                                         status=TaskStatus.CLAIMED)  # fmt: skip

        return (await self._on_task(user, task_id, claim))[1]

    async def assign(self, user: User, task_id: str, assignee_id: str | None) -> Task:
        async def assign(transition: Transition, task: Task) -> None:
            _require_open_user_task(task)
            if not permissions.can_assign(user, task):
                raise ForbiddenError("only a manager or an admin may assign tasks to others")
            if (
                assignee_id is not None
                and await DirectoryRepository(transition.connection).get_user(assignee_id) is None
            ):
                raise ValidationError(
                    f"no user {assignee_id!r}", [FieldError("userId", "no such user", "UNKNOWN_USER")]
                )
            if assignee_id == task.assigned_user_id:
                return
            status = TaskStatus.CLAIMED if assignee_id is not None else TaskStatus.PENDING
            await transition.update_task(task, TaskEventKind.ASSIGNED, assigned_user_id=assignee_id, status=status)

        return (await self._on_task(user, task_id, assign))[1]

    # -- completing ------------------------------------------------------------------------

    async def _prepare(self, transition: Transition, task: Task, user: User, expected_revision: int | None) -> Task:
        """Check a save/submit/decision may go ahead; a candidate on an unassigned task claims it."""
        _require_open_user_task(task)
        if not permissions.can_complete(user, task):
            raise ForbiddenError("only the assignee (or a candidate, on an unassigned task) may work on it")
        if expected_revision is not None and expected_revision != task.revision:
            raise ConflictError(f"task is at revision {task.revision}, not {expected_revision}; reload it")
        return task

    async def _claim_if_unassigned(self, transition: Transition, task: Task, user: User) -> Task:
        if task.assigned_user_id is not None:
            return task
        return await transition.update_task(task, TaskEventKind.CLAIMED, assigned_user_id=user.id,
                                            status=TaskStatus.CLAIMED)  # fmt: skip

    async def save_progress(self, user: User, task_id: str, values: Any, expected_revision: int | None) -> Task:
        check_json_size(values, "values", self.engine.max_json_bytes)

        async def save(transition: Transition, task: Task) -> None:
            task = await self._prepare(transition, task, user, expected_revision)
            node = transition.definition.node(task.node_id)
            draft = validate_values(node.form, values, partial=True)
            task = await self._claim_if_unassigned(transition, task, user)
            await transition.update_task(task, TaskEventKind.PROGRESS_SAVED, draft=draft)

        return (await self._on_task(user, task_id, save))[1]

    async def submit(self, user: User, task_id: str, values: Any, expected_revision: int | None) -> Task:
        check_json_size(values, "values", self.engine.max_json_bytes)

        async def submit(transition: Transition, task: Task) -> None:
            task = await self._prepare(transition, task, user, expected_revision)
            if task.schema_type == APPROVAL_SCHEMA_TYPE:
                raise InvalidStateError("an approval task is completed with approveTask or rejectTask")
            node = transition.definition.node(task.node_id)
            if task.schema_type == DOCUMENT_UPLOAD_SCHEMA_TYPE:
                output = await self._documents_output(transition, task)
                output_values = validate_values(node.form, values, partial=False) if node.form else {}
                if output_values:
                    output["values"] = output_values
            else:
                submitted = values if values is not None else (task.draft or {})
                output = validate_values(node.form, submitted, partial=False)
            task = await self._claim_if_unassigned(transition, task, user)
            await transition.complete(task, output, draft=task.draft)

        return (await self._on_task(user, task_id, submit))[1]

    async def decide(
        self, user: User, task_id: str, decision: str, comment: str | None, values: Any, expected_revision: int | None
    ) -> Task:
        check_json_size(values, "values", self.engine.max_json_bytes)

        async def decide(transition: Transition, task: Task) -> None:
            task = await self._prepare(transition, task, user, expected_revision)
            if task.schema_type != APPROVAL_SCHEMA_TYPE:
                raise InvalidStateError("only approval tasks are approved or rejected; use submitTask")
            if comment is not None and len(comment) > MAX_TEXT_LENGTH:
                problem = FieldError("comment", f"at most {MAX_TEXT_LENGTH} characters", "TOO_LONG")
                raise ValidationError("comment is too long", [problem])
            node = transition.definition.node(task.node_id)
            clean = validate_values(node.form, values, partial=False)
            task = await self._claim_if_unassigned(transition, task, user)
            output = {"decision": decision, "comment": comment, "values": clean, "decidedBy": user.id,
                      "decidedAt": transition.now.isoformat()}  # fmt: skip
            await transition.complete(task, output)

        return (await self._on_task(user, task_id, decide))[1]

    async def _documents_output(self, transition: Transition, task: Task) -> dict[str, Any]:
        node = transition.definition.node(task.node_id)
        uploaded = (await TaskDetailsRepository(transition.connection).documents_of([task.id]))[task.id]
        errors = []
        for requirement in node.documents:
            count = sum(1 for d in uploaded if d.requirement_key == requirement.key)
            if count < requirement.min_files:
                errors.append(FieldError(f"documents.{requirement.key}",
                                         f"{requirement.label} needs at least {requirement.min_files} file(s); "
                                         f"{count} uploaded", "MISSING_DOCUMENT"))  # fmt: skip
        if errors:
            raise ValidationError("required documents are missing", errors)
        return {"documents": [
            {"id": d.id, "requirementKey": d.requirement_key, "filename": d.filename, "contentType": d.content_type,
             "size": d.size, "sha256": d.sha256} for d in uploaded
        ]}  # fmt: skip

    async def retry(self, user: User, task_id: str) -> Task:
        """Admin only: re-queue a ``FAILED`` system task; its instance runs again and, on success, goes on."""

        async def retry(transition: Transition, task: Task) -> None:
            if not user.is_admin:
                raise ForbiddenError("only an admin may retry a task")
            if task.kind is not TaskKind.SYSTEM:
                raise InvalidStateError("only system tasks are retried; user tasks are completed by people")
            if task.status is not TaskStatus.FAILED:
                raise InvalidStateError(f"only a FAILED task can be retried; this one is {task.status.value}")
            transition.reopen()
            await transition.update_task(
                task, TaskEventKind.RETRIED, status=TaskStatus.PENDING, next_run_at=transition.now, attempt_count=0,
                error=None,
            )  # fmt: skip

        return (await self._on_task(user, task_id, retry))[1]

    # -- discussion ------------------------------------------------------------------------

    async def post_message(self, user: User, task_id: str, body: str) -> tuple[TaskMessage, Task]:
        if not body.strip() or len(body) > MAX_MESSAGE_LENGTH:
            raise ValidationError("body must be 1 to 10,000 characters",
                                  [FieldError("body", "must be 1 to 10,000 characters", "INVALID_LENGTH")])  # fmt: skip

        async def post(transition: Transition, task: Task) -> TaskMessage:
            message = TaskMessage(new_id(), task.id, user.id, body, transition.now)
            await TaskDetailsRepository(transition.connection).add_message(message)
            await transition.record(TaskEventKind.MESSAGE_POSTED, task, {"messageId": message.id})
            return message

        message, task = await self._on_task(user, task_id, post)
        return message, task


def _require_open_user_task(task: Task) -> None:
    if task.kind is not TaskKind.USER:
        raise InvalidStateError("system tasks run by themselves; only user tasks are worked on")
    if task.status is TaskStatus.COMPLETED:
        raise ConflictError("the task is already completed")
    if not task.status.is_open:
        raise InvalidStateError(f"the task is {task.status.value}")
