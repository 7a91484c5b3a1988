"""What people do with tasks: claim, assign, save progress, submit, approve or reject, delegate, discuss.

Each operation runs as one engine transition, so the rule checks, the task change, its events and
whatever the workflow does next commit together. Checks come in a fixed order: visibility
(``NotFound``, so existence does not leak), state, permission, revision, then the values — except
their size, refused before anything is read (it says nothing about the task, and costs every reader).
Decisions (approve, reject, action approvals, approval policies) are in :mod:`engine.tasks.decisions`; the
checks both share in :mod:`engine.tasks.task_checks`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from engine.definitions.forms import validate_values
from engine.definitions.model import APPROVAL_SCHEMA_TYPE, DOCUMENT_UPLOAD_SCHEMA_TYPE
from engine.definitions.validation import check_json_size
from engine.errors import (
    FieldError,
    ForbiddenError,
    InvalidStateError,
    NotFoundError,
    ValidationError,
)
from engine.state import Task, TaskEventKind, TaskKind, TaskMessage, TaskStatus, User, new_id
from engine.storage.directory import DirectoryRepository
from engine.storage.discussion import TaskDetailsRepository
from engine.storage.tasks import TaskRepository
from engine.tasks import action_approvals, permissions, policies
from engine.tasks.decisions import TaskDecisions
from engine.tasks.patches import CONFIG_PATCH, checked_patch, merge_patch
from engine.tasks.task_checks import (
    claim_if_unassigned,
    prepare,
    require_not_held_by_rules,
    require_open_user_task,
)
from engine.transitions.engine import Engine
from engine.transitions.transition import Transition

MAX_MESSAGE_LENGTH = 10_000


class _Rehearsed(Exception):  # noqa: N818  (not an error: a dry run's way out of its transition)
    """Raised at the end of a rehearsed action, so its transition writes nothing; carries the outcome."""

    def __init__(self, outcome: tuple[Any, Task]) -> None:
        super().__init__("rehearsed")
        self.outcome = outcome


class TaskService(TaskDecisions):
    """What people do with tasks; each method is one transition of the task's instance (module docstring)."""

    def __init__(self, engine: Engine, secrets: Mapping[str, str] | None = None, *, rehearse: bool = False) -> None:
        """``secrets``: the workers' (``STEPWISE_SECRETS``), which a retry's patch may not carry."""
        self.engine = engine
        self.secrets: Mapping[str, str] = secrets or {}
        self._rehearse = rehearse

    def rehearsal(self) -> TaskService:
        """The same service whose actions run every check and change in their transition, then roll it
        back: each returns what it would have (a bulk action's dry run), and nothing is written."""
        return TaskService(self.engine, self.secrets, rehearse=True)

    async def _instance_id(self, task_id: str) -> str:
        """The task's instance: as this process knows it (``engine.task_homes``), else read."""
        instance_id = self.engine.task_homes.get(task_id)
        if instance_id is None:
            async with self.engine.db.read() as session:
                found = await TaskRepository(session).get_by_id(task_id)
            if found is None:
                raise NotFoundError(f"no task {task_id}")
            instance_id = found.workflow_instance_id
            self.engine.task_homes.note([task_id], instance_id)
        return instance_id

    async def _on_task(
        self, user: User, task_id: str, action: Callable[[Transition, Task], Awaitable[Any]]
    ) -> tuple[Any, Task]:
        """Run ``action`` on the task, locked, inside its instance's transition; returns the task after."""
        instance_id = await self._instance_id(task_id)

        async def run(transition: Transition) -> tuple[Any, Task]:
            task = await transition.task_by_id(task_id)
            if (
                task is None
                or task.workflow_instance_id != transition.instance.id
                or not permissions.can_see_task(user, task, transition.instance.started_by)
            ):
                raise NotFoundError(f"no task {task_id}")
            # Not read back: a read after the action's deferred writes would need a transaction
            # (engine.storage.deferred), and the transition knows what it made of the task.
            outcome = await action(transition, task), transition.as_left(task)
            if self._rehearse:
                raise _Rehearsed(outcome)
            return outcome

        try:
            (result, after), _ = await self.engine.transition(instance_id, user.id, run)
        except _Rehearsed as rehearsed:
            result, after = rehearsed.outcome
        return result, after

    # -- ownership -------------------------------------------------------------------------

    async def claim(self, user: User, task_id: str) -> Task:
        async def claim(transition: Transition, task: Task) -> None:
            require_open_user_task(task)
            require_not_held_by_rules(task)
            if task.assigned_user_id == user.id:
                raise InvalidStateError("you already hold this task")
            policies.check_not_excluded(task, user.id, "claim")
            if not permissions.can_claim(user, task):
                raise ForbiddenError("only a candidate (its role or group) may claim an unassigned task")
            await transition.update_task(task, TaskEventKind.CLAIMED, assigned_user_id=user.id,
                                         status=TaskStatus.CLAIMED)  # fmt: skip

        return (await self._on_task(user, task_id, claim))[1]

    async def assign(self, user: User, task_id: str, assignee_id: str | None) -> Task:
        async def assign(transition: Transition, task: Task) -> None:
            require_open_user_task(task)
            require_not_held_by_rules(task)
            if not permissions.can_assign(user, task):
                raise ForbiddenError("only a manager or an admin may assign tasks to others")
            if (
                assignee_id is not None
                and await DirectoryRepository(transition.connection).get_user(assignee_id) is None
            ):
                raise ValidationError(
                    f"no user {assignee_id!r}", [FieldError("userId", "no such user", "UNKNOWN_USER")]
                )
            if assignee_id is not None:
                policies.check_not_excluded(task, assignee_id, "be assigned")
            if assignee_id == task.assigned_user_id:
                return
            status = TaskStatus.CLAIMED if assignee_id is not None else TaskStatus.PENDING
            # An eligible assignee is what a task blocked by separation of duties waited for.
            unblocked = {"blocked_reason": None} if assignee_id is not None and task.blocked_reason else {}
            await transition.update_task(task, TaskEventKind.ASSIGNED, assigned_user_id=assignee_id, status=status,
                                         **unblocked)  # fmt: skip

        return (await self._on_task(user, task_id, assign))[1]

    # -- completing ------------------------------------------------------------------------

    async def save_progress(self, user: User, task_id: str, values: Any, expected_revision: int | None) -> Task:
        check_json_size(values, "values", self.engine.max_json_bytes)

        async def save(transition: Transition, task: Task) -> None:
            task = await prepare(transition, task, user, expected_revision, completing=False)
            node = transition.definition.node(task.node_id)
            draft = validate_values(node.form, values, partial=True)
            if task.delegated_to is None:
                task = await claim_if_unassigned(transition, task, user)
            await transition.update_task(task, TaskEventKind.PROGRESS_SAVED, draft=draft)

        return (await self._on_task(user, task_id, save))[1]

    async def submit(self, user: User, task_id: str, values: Any, expected_revision: int | None) -> Task:
        check_json_size(values, "values", self.engine.max_json_bytes)

        async def submit(transition: Transition, task: Task) -> None:
            task = await prepare(transition, task, user, expected_revision)
            if task.schema_type == APPROVAL_SCHEMA_TYPE:
                raise InvalidStateError("an approval task is completed with approveTask or rejectTask")
            if action_approvals.is_action_approval(task):
                raise InvalidStateError("an action approval is completed with decideActionApproval")
            node = transition.definition.node(task.node_id)
            if task.schema_type == DOCUMENT_UPLOAD_SCHEMA_TYPE:
                output = await self._documents_output(transition, task)
                output_values = validate_values(node.form, values, partial=False) if node.form else {}
                if output_values:
                    output["values"] = output_values
            else:
                submitted = values if values is not None else (task.draft or {})
                output = validate_values(node.form, submitted, partial=False)
            task = await claim_if_unassigned(transition, task, user)
            await transition.complete(task, output, draft=task.draft)

        return (await self._on_task(user, task_id, submit))[1]

    # -- delegation ------------------------------------------------------------------------

    async def delegate(self, user: User, task_id: str, to: str) -> Task:
        """The assignee hands the task to ``to``, who works on it and resolves it back (Flowable's delegate)."""

        async def delegate(transition: Transition, task: Task) -> None:
            require_open_user_task(task)
            if policies.has_approval_policy(task):
                raise InvalidStateError("a task with an approval policy has no assignee to delegate it: each "
                                        "approver decides for themselves")  # fmt: skip
            if task.delegated_to is not None:
                raise InvalidStateError(f"the task is already delegated to {task.delegated_to}")
            if not permissions.can_delegate(user, task):
                raise ForbiddenError("only the task's assignee may delegate it")
            if to == user.id:
                raise ValidationError("delegate to someone else", [FieldError("to", "is you", "SELF")])
            if await DirectoryRepository(transition.connection).get_user(to) is None:
                raise ValidationError(f"no user {to!r}", [FieldError("to", "no such user", "UNKNOWN_USER")])
            policies.check_not_excluded(task, to, "be delegated")
            await transition.update_task(task, TaskEventKind.DELEGATED, delegated_to=to)

        return (await self._on_task(user, task_id, delegate))[1]

    async def resolve(self, user: User, task_id: str, values: Any) -> Task:
        """The delegate hands the task back to its owner, with ``values`` (if given) as its saved draft."""
        check_json_size(values, "values", self.engine.max_json_bytes)

        async def resolve(transition: Transition, task: Task) -> None:
            require_open_user_task(task)
            if task.delegated_to is None:
                raise InvalidStateError("the task is not delegated")
            if not permissions.can_resolve(user, task):
                raise ForbiddenError("only the delegate resolves a delegated task")
            node = transition.definition.node(task.node_id)
            draft = validate_values(node.form, values, partial=True) if values is not None else task.draft
            await transition.update_task(task, TaskEventKind.RESOLVED, delegated_to=None, draft=draft)

        return (await self._on_task(user, task_id, resolve))[1]

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

    async def retry(self, user: User, task_id: str, patch: Any = None) -> Task:
        """Admin only: re-queue a ``FAILED`` system task; its instance runs again and, on success, goes on.

        ``patch`` (engine.tasks.patches) fixes its config or the instance data first; the ``RETRIED``
        event records it, and the admin as its actor."""
        fixes = None
        if patch is not None:
            check_json_size(patch, "patch", self.engine.max_json_bytes)
            fixes = checked_patch(patch, self.secrets)

        async def retry(transition: Transition, task: Task) -> None:
            if not user.is_admin:
                raise ForbiddenError("only an admin may retry a task")
            if task.kind is not TaskKind.SYSTEM:
                raise InvalidStateError("only system tasks are retried; user tasks are completed by people")
            if task.status is not TaskStatus.FAILED:
                raise InvalidStateError(f"only a FAILED task can be retried; this one is {task.status.value}")
            transition.reopen()
            changes: dict[str, Any] = {}
            if fixes is not None and fixes.data is not None:
                patched = merge_patch(transition.data, fixes.data)
                transition.data.clear()
                transition.data.update(patched)
            if fixes is not None and fixes.config is not None:
                config = merge_patch(task.input.get(CONFIG_PATCH), fixes.config)
                changes["input"] = {**task.input, CONFIG_PATCH: config}
            await transition.update_task(
                task, TaskEventKind.RETRIED, event_data={"patch": patch} if patch is not None else None,
                status=TaskStatus.PENDING, next_run_at=transition.now, attempt_count=0, error=None, **changes,
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
