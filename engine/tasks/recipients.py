"""Who a task is for now: the one both the approve-by-email notifier and escalation reminders tell."""

from __future__ import annotations

from engine.state import Task, User
from engine.storage.directory import DirectoryRepository
from engine.tasks import policies

MAX_RECIPIENTS = 100
"""At most this many candidates are told (in order of id): a role held by thousands is no mailing list."""


async def task_recipients(directory: DirectoryRepository, task: Task) -> list[User]:
    """The assignee; or else the candidates (named users, the role's holders, the group's members), less
    those separation of duties keeps from deciding it, in order of id."""
    if task.assigned_user_id is not None:
        assignee = await directory.get_user(task.assigned_user_id)
        return [assignee] if assignee is not None else []
    candidates: set[str] = set(task.candidate_users)
    if task.assigned_role is not None:
        candidates.update(await directory.members(role=task.assigned_role))
    if task.assigned_group is not None:
        candidates.update(await directory.members(group=task.assigned_group))
    allowed = sorted(user for user in candidates if policies.excluded_by(task, user) is None)
    found = await directory.get_users(allowed[:MAX_RECIPIENTS])
    return [found[user_id] for user_id in sorted(found)]
