"""Who may do what (docs/design.md §5). Services enforce these; the API's ``viewerCan*`` flags show them.

Each rule is a pure function of the actor, the task and the instance's starter, so the GraphQL
schema, the CLI and the tests all get the same answers.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.state import Task, TaskKind, TaskStatus, User, WorkflowInstance


def is_supervisor(user: User) -> bool:
    """``admin`` and ``manager`` see every task and may (re)assign any."""
    return user.is_admin or user.is_manager


def is_candidate(user: User, task: Task) -> bool:
    """Holds the task's role or is in its group."""
    return (task.assigned_role is not None and task.assigned_role in user.roles) or (
        task.assigned_group is not None and task.assigned_group in user.groups
    )


def can_see_task(user: User, task: Task, started_by: str) -> bool:
    return is_supervisor(user) or task.assigned_user_id == user.id or is_candidate(user, task) or started_by == user.id


def can_see_instance(user: User, instance: WorkflowInstance, tasks: Iterable[Task]) -> bool:
    """The starter, a supervisor, or whoever may see one of its tasks (``tasks``: the instance's)."""
    if is_supervisor(user) or instance.started_by == user.id:
        return True
    return any(can_see_task(user, task, instance.started_by) for task in tasks)


def _is_open_user_task(task: Task) -> bool:
    return task.kind is TaskKind.USER and task.status in (TaskStatus.PENDING, TaskStatus.CLAIMED)


def can_claim(user: User, task: Task) -> bool:
    """Self-assign: a candidate while nobody holds it, or a supervisor (who may take it over)."""
    if not _is_open_user_task(task) or task.assigned_user_id == user.id:
        return False
    if is_supervisor(user):
        return True
    return task.assigned_user_id is None and is_candidate(user, task)


def can_assign(user: User, task: Task) -> bool:
    return is_supervisor(user) and _is_open_user_task(task)


def can_complete(user: User, task: Task) -> bool:
    """Save, submit, approve, reject: the assignee, or a candidate on an unassigned task."""
    if not _is_open_user_task(task):
        return False
    if task.assigned_user_id is not None:
        return task.assigned_user_id == user.id
    return is_candidate(user, task)


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
