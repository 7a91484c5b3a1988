"""What a task's approval policy and ``excludes`` resolve to when it is created, or when a chain moves
to its next level: who is shut out, who decides, how many of them may, and whether anyone can
(:mod:`engine.tasks.policies` has the rules that read it).

Exclusions are resolved once, when the task is created: the starter, whoever decided an earlier
approval task of the instance, whoever completed a named node. A rule that leaves no one eligible
cannot be known at deploy time, so the task is created ``blocked`` with the reason, for an admin to
act on (assigning it to an eligible user clears it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Protocol

from engine.definitions.approval import (
    EXCLUDE_COMPLETED_BY,
    EXCLUDE_PREVIOUS_APPROVERS,
    EXCLUDE_STARTER,
    ApprovalLevel,
    Approvers,
)
from engine.definitions.model import DECIDED_SCHEMA_TYPES, Node
from engine.definitions.registry import Assignment
from engine.definitions.templates import render_value
from engine.state import Task, TaskStatus
from engine.tasks import policies
from engine.tasks.policy_state import PolicyLevel, TaskPolicy


class Members(Protocol):
    """The ids of a role's holders or a group's members (``DirectoryRepository.members``'s signature)."""

    async def __call__(self, *, role: str | None = None, group: str | None = None) -> list[str]: ...


@dataclass(frozen=True)
class PolicySetup:
    """The task's ``policy``, its assignment (the current level's role or group, for a policy), its
    named approvers, and why it is blocked (or None)."""

    policy: TaskPolicy
    assignment: Assignment
    candidate_users: tuple[str, ...]
    blocked_reason: str | None


def needs_setup(node: Node) -> bool:
    return node.approval is not None or bool(node.excludes)


def excluded_users(node: Node, started_by: str, instance_tasks: Sequence[Task]) -> dict[str, str]:
    """user id → the first of the node's ``excludes`` rules that shuts them out."""
    excluded: dict[str, str] = {}
    completed = [t for t in instance_tasks if t.status is TaskStatus.COMPLETED]
    for rule in node.excludes:
        if rule == EXCLUDE_STARTER:
            users = [started_by]
        elif rule == EXCLUDE_PREVIOUS_APPROVERS:
            users = [user for t in completed if t.schema_type in DECIDED_SCHEMA_TYPES for user in _deciders(t)]
        else:
            node_id = rule[len(EXCLUDE_COMPLETED_BY) :]
            users = [t.completed_by for t in completed if t.node_id == node_id and t.completed_by]
        for user in users:
            excluded.setdefault(user, rule)
    return excluded


def _deciders(task: Task) -> list[str]:
    """Who decided an approval task: each decision of its policy, or whoever completed it."""
    deciders = [d.by for d in policies.decisions(task)]
    return deciders or ([task.completed_by] if task.completed_by else [])


def _resolved_users(approvers: Approvers, variables: Mapping[str, Any]) -> tuple[str, ...] | None:
    """A level's named users, its template rendered (a list of ids, or one comma-separated string)."""
    if approvers.users is not None:
        return approvers.users
    if approvers.users_template is None:
        return None
    rendered = render_value(approvers.users_template, variables)
    items = rendered.split(",") if isinstance(rendered, str) else rendered if isinstance(rendered, list) else []
    return tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))


def _resolved_level(level: ApprovalLevel, variables: Mapping[str, Any]) -> PolicyLevel:
    users = _resolved_users(level.approvers, variables)
    approvers = Approvers(users=users) if users is not None else level.approvers
    return PolicyLevel(approvers, level.required, level.reject_when)


async def setup(
    node: Node,
    variables: Mapping[str, Any],
    started_by: str,
    assignment: Assignment,
    instance_tasks: Sequence[Task],
    members: Members,
) -> PolicySetup:
    """Resolve ``node``'s policy for a new task (``instance_tasks``: the instance's tasks so far,
    read only if the node's ``excludes`` look back at them)."""
    excluded = excluded_users(node, started_by, instance_tasks)
    policy = TaskPolicy(excluded=MappingProxyType(excluded), excludes=tuple(node.excludes))
    if node.approval is None:
        return PolicySetup(policy, assignment, (), await _blocked(assignment, (), excluded, 1, members))
    policy = replace(policy, levels=tuple(_resolved_level(level, variables) for level in node.approval.levels),
                     chain=node.approval.chain)  # fmt: skip
    return await activate_level(policy, 0, members)


async def activate_level(policy: TaskPolicy, index: int, members: Members) -> PolicySetup:
    """Make level ``index`` the current one: its approvers, how many are eligible, blocked or not."""
    assert policy.levels is not None, "only a policy with levels has a level to activate"
    level = policy.levels[index]
    of = level.approvers
    assignment = Assignment(role=of.role, group=of.group)
    users = tuple(of.users or ()) if of.role is None and of.group is None else ()
    eligible = await _eligible(assignment, users, policy.excluded, members)
    levels = list(policy.levels)
    levels[index] = replace(level, eligible=len(eligible))
    activated = replace(policy, levels=tuple(levels), level=index)
    blocked = None
    if len(eligible) < level.required:
        blocked = _blocked_reason(level.required, len(eligible), policy.excluded, index if policy.chain else None)
    return PolicySetup(activated, assignment, users, blocked)


async def _eligible(
    assignment: Assignment, users: Sequence[str], excluded: Mapping[str, str], members: Members
) -> list[str]:
    if assignment.user_id is not None:
        candidates = [assignment.user_id]
    elif assignment.role is not None:
        candidates = await members(role=assignment.role)
    elif assignment.group is not None:
        candidates = await members(group=assignment.group)
    else:
        candidates = list(users)
    return [user for user in candidates if user not in excluded]


async def _blocked(
    assignment: Assignment, users: Sequence[str], excluded: Mapping[str, str], required: int,
    members: Members,
) -> str | None:  # fmt: skip
    """A task with ``excludes`` only: blocked if they shut out its assignee, or every candidate."""
    if not excluded or (assignment.role is None and assignment.group is None and assignment.user_id is None):
        return None
    eligible = await _eligible(assignment, users, excluded, members)
    return None if len(eligible) >= required else _blocked_reason(required, len(eligible), excluded, None)


def _blocked_reason(required: int, eligible: int, excluded: Mapping[str, str], level: int | None) -> str:
    shut_out = ", ".join(f"{user} ({rule})" for user, rule in sorted(excluded.items())) or "no one"
    where = f" at level {level + 1}" if level is not None else ""
    needed = "approval" if required == 1 else "approvals"
    return (f"separation of duties leaves {eligible} eligible user(s){where} for {required} {needed} "
            f"required; excluded: {shut_out}")  # fmt: skip
