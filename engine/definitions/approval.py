"""Approval policies and separation of duties, as a definition states them
(docs/approvals.md).

``"approval": {"required": 2, "of": {"role": "approver"}, "rejectWhen": "any"}`` is a policy of one
level; ``"approval": {"chain": [{"role": "manager"}, {"group": "finance"}]}`` one of several levels,
decided in order. ``"excludes": ["starter", "previousApprovers", "completedBy:<nodeId>"]`` names who
may not work on a user task. The engine enforces both: :mod:`engine.tasks.policies`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REJECT_ANY = "any"
REJECT_MAJORITY = "majority"
EXCLUDE_STARTER = "starter"
EXCLUDE_PREVIOUS_APPROVERS = "previousApprovers"
EXCLUDE_COMPLETED_BY = "completedBy:"


@dataclass(frozen=True)
class Approvers:
    """Who decides at one level: holders of a role, members of a group, or named users (a list, or a
    template that renders to a list of user ids, e.g. ``"{{ request.reviewers }}"``)."""

    role: str | None = None
    group: str | None = None
    users: tuple[str, ...] | None = None
    users_template: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.role is not None:
            return {"role": self.role}
        if self.group is not None:
            return {"group": self.group}
        if self.users_template is not None:
            return {"users": self.users_template}
        return {"users": list(self.users or ())}


@dataclass(frozen=True)
class ApprovalLevel:
    """``required`` distinct approvals settle the level as approved; ``reject_when`` rejections
    (``"any"``: one, ``"majority"``: more than half of those eligible, or a number) settle it as
    rejected, as does a count of rejections that leaves ``required`` out of reach."""

    approvers: Approvers
    required: int = 1
    reject_when: str | int = REJECT_ANY

    def to_json(self) -> dict[str, Any]:
        return {"of": self.approvers.to_json(), "required": self.required, "rejectWhen": self.reject_when}


@dataclass(frozen=True)
class ApprovalPolicy:
    levels: tuple[ApprovalLevel, ...]
    chain: bool = False

    def to_json(self) -> dict[str, Any]:
        if self.chain:
            return {"chain": [{**level.approvers.to_json(), "required": level.required,
                               "rejectWhen": level.reject_when} for level in self.levels]}  # fmt: skip
        [level] = self.levels
        return level.to_json()


def exclusion_problems(rule: str) -> str | None:
    """Why ``rule`` is not an ``excludes`` entry, or None."""
    if rule in (EXCLUDE_STARTER, EXCLUDE_PREVIOUS_APPROVERS):
        return None
    if rule.startswith(EXCLUDE_COMPLETED_BY) and rule[len(EXCLUDE_COMPLETED_BY) :]:
        return None
    return f"{rule!r} is not a rule (starter, previousApprovers or completedBy:<nodeId>)"
