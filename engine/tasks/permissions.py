"""Who may do what (docs/design.md §5). Services enforce these; the API's ``viewerCan*`` flags show them.

Each rule is a pure function of the actor, the task and the instance's starter, so the GraphQL
schema, the CLI and the tests all get the same answers.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.state import Task, TaskKind, TaskStatus, User, WorkflowInstance
from engine.tasks import policies


def is_supervisor(user: User) -> bool:
    """``admin`` and ``manager`` see every task and may (re)assign any."""
    return user.is_admin or user.is_manager


def is_candidate(user: User, task: Task) -> bool:
    """Holds the task's role, is in its group, or is one of its approvers named by id."""
    return policies.is_task_candidate(user, task)


def is_assigned_to(user: User, task: Task) -> bool:
    """What "assigned to me" means: the task's assignee, who stays its owner while it is delegated (they
    complete it once it is resolved back), or its delegate, who works on it meanwhile."""
    return task.assigned_user_id == user.id or task.delegated_to == user.id


def can_see_task(user: User, task: Task, started_by: str) -> bool:
    return is_supervisor(user) or is_assigned_to(user, task) or is_candidate(user, task) or started_by == user.id


def can_see_instance(user: User, instance: WorkflowInstance, tasks: Iterable[Task]) -> bool:
    """The starter, a supervisor, or whoever may see one of its tasks (``tasks``: the instance's)."""
    if is_supervisor(user) or instance.started_by == user.id:
        return True
    return any(can_see_task(user, task, instance.started_by) for task in tasks)


def _is_open_user_task(task: Task) -> bool:
    return task.kind is TaskKind.USER and task.status in (TaskStatus.PENDING, TaskStatus.CLAIMED)


def _held_by_rules(task: Task) -> bool:
    """Decided by its approval policy's approvers, or delegated: no one claims or assigns it meanwhile."""
    return policies.has_approval_policy(task) or task.delegated_to is not None


def can_claim(user: User, task: Task) -> bool:
    """Self-assign: a candidate while nobody holds it, or a supervisor (who may take it over); never
    someone its ``excludes`` shut out (admins neither)."""
    if not _is_open_user_task(task) or task.assigned_user_id == user.id or _held_by_rules(task):
        return False
    if policies.excluded_by(task, user.id) is not None:
        return False
    if is_supervisor(user):
        return True
    return task.assigned_user_id is None and is_candidate(user, task)


def can_assign(user: User, task: Task) -> bool:
    return is_supervisor(user) and _is_open_user_task(task) and not _held_by_rules(task)


def can_complete(user: User, task: Task) -> bool:
    """Save, submit, approve, reject: the assignee, or a candidate on an unassigned task; for a task
    with an approval policy, an approver of its current level who has not decided yet. Never someone
    its ``excludes`` shut out, and no one while it is delegated (the delegate resolves it back)."""
    if not _is_open_user_task(task) or task.delegated_to is not None:
        return False
    if policies.excluded_by(task, user.id) is not None:
        return False
    if policies.has_approval_policy(task):
        return policies.decision_eligibility(user, task).eligible
    if task.assigned_user_id is not None:
        return task.assigned_user_id == user.id
    return is_candidate(user, task)


def can_delegate(user: User, task: Task) -> bool:
    """The assignee hands the task to someone else for a while (delegation)."""
    return _is_open_user_task(task) and not _held_by_rules(task) and task.assigned_user_id == user.id


def can_resolve(user: User, task: Task) -> bool:
    """The delegate hands it back to its owner."""
    return _is_open_user_task(task) and task.delegated_to == user.id


def can_retry(user: User, task: Task) -> bool:
    return user.is_admin and task.kind is TaskKind.SYSTEM and task.status is TaskStatus.FAILED


def can_start(user: User, start_roles: tuple[str, ...]) -> bool:
    return not start_roles or user.is_admin or bool(user.roles.intersection(start_roles))


def can_administer(user: User) -> bool:
    """Deploy definitions and send raw signals."""
    return user.is_admin


def can_manage_webhooks(user: User) -> bool:
    """Register, change, delete webhooks, rotate their secrets, read their delivery logs and redeliver."""
    return user.is_admin
