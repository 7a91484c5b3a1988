"""The checks every action on a user task shares (:class:`~engine.tasks.service.TaskService` and its
decisions in :mod:`engine.tasks.decisions`): the task is open and a user task, at the expected revision,
not held by an approval policy or a delegation, and the user may work on it."""

from __future__ import annotations

from engine.definitions.forms import MAX_TEXT_LENGTH
from engine.errors import ConflictError, FieldError, ForbiddenError, InvalidStateError, ValidationError
from engine.state import Task, TaskEventKind, TaskKind, TaskStatus, User
from engine.tasks import permissions, policies
from engine.transitions.transition import Transition


async def prepare(
    transition: Transition, task: Task, user: User, expected_revision: int | None, *, completing: bool = True
) -> Task:
    """Check a save (``completing`` False), submit or decision may go ahead; a candidate on an
    unassigned task claims it. While a task is delegated only the delegate works on it, and only
    to save: they resolve it back, and its owner completes it."""
    require_open_user_task(task)
    if task.delegated_to is not None:
        if task.delegated_to == user.id:
            if completing:
                raise ForbiddenError("a delegate resolves the task back to its owner (resolveTask), who completes it")
            return at_revision(task, expected_revision)
        if task.assigned_user_id == user.id:
            raise InvalidStateError(f"the task is delegated to {task.delegated_to}; you complete it once they "
                                    "resolve it")  # fmt: skip
    policies.check_not_excluded(task, user.id, "work on")
    if not permissions.can_complete(user, task):
        raise ForbiddenError("only the assignee (or a candidate, on an unassigned task) may work on it")
    return at_revision(task, expected_revision)


async def claim_if_unassigned(transition: Transition, task: Task, user: User) -> Task:
    if task.assigned_user_id is not None:
        return task
    return await transition.update_task(task, TaskEventKind.CLAIMED, assigned_user_id=user.id,
                                        status=TaskStatus.CLAIMED)  # fmt: skip


def require_not_held_by_rules(task: Task) -> None:
    if policies.has_approval_policy(task):
        raise InvalidStateError("a task with an approval policy is decided by each of its approvers; it is not "
                                "claimed or assigned")  # fmt: skip
    if task.delegated_to is not None:
        raise InvalidStateError(f"the task is delegated to {task.delegated_to} until they resolve it")


def at_revision(task: Task, expected_revision: int | None) -> Task:
    if expected_revision is not None and expected_revision != task.revision:
        raise ConflictError(f"task is at revision {task.revision}, not {expected_revision}; reload it")
    return task


def check_comment(comment: str | None) -> None:
    if comment is not None and len(comment) > MAX_TEXT_LENGTH:
        problem = FieldError("comment", f"at most {MAX_TEXT_LENGTH} characters", "TOO_LONG")
        raise ValidationError("comment is too long", [problem])


def require_open_user_task(task: Task) -> None:
    if task.kind is not TaskKind.USER:
        raise InvalidStateError("system tasks run by themselves; only user tasks are worked on")
    if task.status is TaskStatus.COMPLETED:
        raise ConflictError("the task is already completed")
    if not task.status.is_open:
        raise InvalidStateError(f"the task is {task.status.value}")
