"""Approval policies, separation of duties and delegation: the rules, as pure functions of a task
(docs/approvals.md, docs/permissions.md).

A node with ``approval`` gets **one task per node visit** that every approver of the current level
decides on, not one task per approver. The engine keeps one task per token (its idempotent creation,
the remembered state and the last statement's checks all rest on it); one shared row is where the
decisions accumulate, and the revision check every task update already carries serializes them: two
decisions racing for the last required approval both read the task at one revision, one writes,
the other's statement fails and runs again under the instance's row lock, where it finds the
outcome settled (``INVALID_STATE``). Nothing has to be cancelled when the outcome is reached, and
an approver's inbox shows the task like any task of their role.

The task's ``policy`` (a :class:`~engine.tasks.policy_state.TaskPolicy`) holds what
:func:`engine.tasks.approvals.setup` resolved when the task was created, and the decisions since.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from engine.definitions.approval import REJECT_ANY, REJECT_MAJORITY
from engine.definitions.model import DECIDED_SCHEMA_TYPES
from engine.errors import SeparationOfDutiesError
from engine.state import Task, TaskKind, TaskStatus, User
from engine.tasks.policy_state import PolicyDecision, PolicyLevel, TaskPolicy

APPROVED, REJECTED = "approved", "rejected"


def excluded_by(task: Task, user_id: str) -> str | None:
    """The ``excludes`` rule that shuts ``user_id`` out of ``task``, or None."""
    return task.policy.excluded.get(user_id) if task.policy is not None else None


def check_not_excluded(task: Task, user_id: str, doing: str) -> None:
    """Raise :class:`SeparationOfDutiesError` if ``user_id`` may not ``doing`` (a verb phrase) ``task``."""
    rule = excluded_by(task, user_id)
    if rule is not None:
        raise SeparationOfDutiesError(
            f"separation of duties: {user_id} may not {doing} this task (excluded as {_rule_words(rule)})", rule
        )


def _rule_words(rule: str) -> str:
    if rule == "starter":
        return "the workflow's starter"
    if rule == "previousApprovers":
        return "an earlier approver"
    return f"who completed {rule.partition(':')[2]!r}"


def has_approval_policy(task: Task) -> bool:
    return task.policy is not None and task.policy.has_levels


def levels(task: Task) -> Sequence[PolicyLevel]:
    return (task.policy.levels or ()) if task.policy is not None else ()


def current_level(task: Task) -> int:
    return task.policy.level if task.policy is not None else 0


def decisions(task: Task) -> Sequence[PolicyDecision]:
    """Every decision recorded on the task so far (an approval policy's; a settled task's are in its output too)."""
    return task.policy.decisions if task.policy is not None else ()


def outcome(task: Task) -> str | None:
    """``approved`` or ``rejected`` once an approval task is completed, else None."""
    if task.status is not TaskStatus.COMPLETED or task.schema_type not in DECIDED_SCHEMA_TYPES:
        return None
    if not isinstance(task.output, Mapping):
        return None
    value = task.output.get("outcome", task.output.get("decision"))
    return value if isinstance(value, str) else None


def has_decided(task: Task, user_id: str) -> bool:
    """``user_id`` decided the current level already (a second decision would count twice)."""
    level_index = current_level(task)
    return any(d.by == user_id and d.level == level_index for d in decisions(task))


def is_level_approver(user: User, level: PolicyLevel) -> bool:
    of = level.approvers
    if of.role is not None:
        return of.role in user.roles
    if of.group is not None:
        return of.group in user.groups
    return user.id in (of.users or ())


@dataclass(frozen=True)
class Eligibility:
    eligible: bool
    reason: str | None = None


def decision_eligibility(user: User, task: Task) -> Eligibility:
    """May ``user`` approve or reject ``task`` now, and if not, why (the API's ``eligibleToDecide``)."""
    if task.kind is not TaskKind.USER or task.schema_type not in DECIDED_SCHEMA_TYPES:
        return Eligibility(False, "not an approval task")
    if not task.status.is_open:
        return Eligibility(False, f"the task is {task.status.value.lower()}")
    rule = excluded_by(task, user.id)
    if rule is not None:
        return Eligibility(False, f"separation of duties: excluded as {_rule_words(rule)}")
    if task.delegated_to is not None:
        if task.delegated_to == user.id:
            return Eligibility(False, "delegated to you: resolve it back to its owner, who decides")
        return Eligibility(False, f"delegated to {task.delegated_to}; decided once they resolve it")
    if has_approval_policy(task):
        level_index = current_level(task)
        level = levels(task)[level_index]
        if not is_level_approver(user, level):
            return Eligibility(False, f"not an approver of level {level_index + 1}")
        if has_decided(task, user.id):
            return Eligibility(False, "you have already decided")
        return Eligibility(True)
    if task.assigned_user_id is not None:
        return Eligibility(task.assigned_user_id == user.id, None if task.assigned_user_id == user.id
                           else f"assigned to {task.assigned_user_id}")  # fmt: skip
    if is_task_candidate(user, task):
        return Eligibility(True)
    return Eligibility(False, "not a candidate: the task's role or group is not yours")


def is_task_candidate(user: User, task: Task) -> bool:
    """Holds the task's role, is in its group, or is one of its named approvers."""
    return (
        (task.assigned_role is not None and task.assigned_role in user.roles)
        or (task.assigned_group is not None and task.assigned_group in user.groups)
        or user.id in task.candidate_users
    )


@dataclass(frozen=True)
class Settled:
    """What a decision made of an approval policy: the policy after it, and either the outcome
    (``approved``/``rejected``) or the next level to decide, or neither (more decisions needed)."""

    policy: TaskPolicy
    outcome: str | None = None
    next_level: int | None = None


def record_decision(task: Task, user_id: str, decision: str, comment: str | None, at: str,
                    values: Mapping[str, Any] | None = None) -> Settled:  # fmt: skip
    """Add ``user_id``'s decision at the current level and settle what it settles. The caller checked
    :func:`decision_eligibility` (so this is the user's first decision at this level)."""
    assert task.policy is not None
    level_index = current_level(task)
    level = levels(task)[level_index]
    entry = PolicyDecision(user_id, decision, comment, at, level_index, dict(values) if values else None)
    recorded = (*decisions(task), entry)
    policy = replace(task.policy, decisions=recorded)
    at_level = [d for d in recorded if d.level == level_index]
    approvals = len({d.by for d in at_level if d.decision == APPROVED})
    rejections = len({d.by for d in at_level if d.decision == REJECTED})
    if approvals >= level.required:
        if level_index + 1 < len(levels(task)):
            return Settled(replace(policy, level=level_index + 1), next_level=level_index + 1)
        return Settled(policy, outcome=APPROVED)
    if _rejected(level, approvals, rejections):
        return Settled(policy, outcome=REJECTED)
    return Settled(policy)


def _rejected(level: PolicyLevel, approvals: int, rejections: int) -> bool:
    """The level's ``rejectWhen`` is met, or too few eligible approvers are left to reach ``required``
    (eligible as counted when the level began, or more if more have decided since: the role grew)."""
    eligible = max(level.eligible or 0, approvals + rejections)
    rule = level.reject_when
    if rejections and rule == REJECT_ANY:
        return True
    if rule == REJECT_MAJORITY and rejections * 2 > eligible:
        return True
    if isinstance(rule, int) and rejections >= rule:
        return True
    return eligible - rejections < level.required


def settled_output(policy: TaskPolicy, result: str, at: str) -> dict[str, Any]:
    """What ``storeAs`` receives: the outcome and every individual decision. ``decision`` repeats the
    outcome, so conditions written for a plain approval (``approval.decision == 'approved'``) hold."""
    shown = [d.to_json() for d in policy.decisions]
    return {"outcome": result, "decision": result, "decidedBy": "policy", "decisions": shown, "decidedAt": at}
