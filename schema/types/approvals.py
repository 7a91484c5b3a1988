"""What a task's approval policy requires, the decisions on it, and whether the viewer may decide
(docs/approvals.md)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from engine import PolicyLevel, policies, state
from schema.context import Info
from schema.sharing import same_for_every_viewer
from schema.types.user import User, load_user


@strawberry.type(description="One level of an approval policy: who decides, and how many must agree.")
class ApprovalLevel:
    required: int
    reject_when: str = strawberry.field(description="`any`, `majority`, or a number of rejections.")
    role: str | None
    group: str | None
    users: list[strawberry.ID] | None = strawberry.field(description="Approvers named by id (templates resolved).")
    eligible: int | None = strawberry.field(
        description="How many approvers separation of duties left eligible, counted when the level began."
    )

    @classmethod
    def of(cls, level: PolicyLevel) -> ApprovalLevel:
        who = level.approvers
        users = who.users if who.role is None and who.group is None else None
        return cls(
            required=level.required, reject_when=str(level.reject_when), role=who.role, group=who.group,
            users=[strawberry.ID(u) for u in users] if users is not None else None, eligible=level.eligible,
        )  # fmt: skip


@strawberry.type(description="What a task requires: its levels (one for a quorum, several for a chain) and exclusions.")
class ApprovalPolicy:
    levels: list[ApprovalLevel]
    chain: bool
    current_level: int = strawberry.field(description="The level being decided, from 0.")
    excludes: list[str] = strawberry.field(description="The node's separation-of-duties rules.")


@strawberry.type(description="One approver's decision.")
class ApprovalDecision:
    by_id: strawberry.Private[str]
    decision: str
    comment: str | None
    at: datetime
    level: int
    values: JSON | None

    @strawberry.field
    @same_for_every_viewer
    async def by(self, info: Info) -> User:
        user = await load_user(info, self.by_id)
        assert user is not None
        return user


@strawberry.type(description="Whether the viewer may approve or reject the task now; `reason` says why not.")
class Eligibility:
    eligible: bool
    reason: str | None


def approval_policy(task: state.Task) -> ApprovalPolicy | None:
    if task.policy is None:
        return None
    return ApprovalPolicy(
        levels=[ApprovalLevel.of(level) for level in policies.levels(task)],
        chain=task.policy.chain,
        current_level=policies.current_level(task),
        excludes=list(task.policy.excludes),
    )


def decisions(task: state.Task) -> list[ApprovalDecision]:
    """A policy's decisions; a plain approval task's one decision once it is made."""
    output = task.output if isinstance(task.output, Mapping) else {}
    if task.policy is None or not policies.has_approval_policy(task):
        if policies.outcome(task) is None or not task.completed_by or task.completed_at is None:
            return []
        return [ApprovalDecision(by_id=task.completed_by, decision=str(output.get("decision")),
                                 comment=output.get("comment"), at=task.completed_at, level=0,
                                 values=output.get("values") or None)]  # fmt: skip
    return [
        ApprovalDecision(
            by_id=d.by,
            decision=d.decision,
            comment=d.comment,
            at=datetime.fromisoformat(d.at),
            level=d.level,
            values=JSON(dict(d.values)) if d.values is not None else None,
        )  # fmt: skip
        for d in policies.decisions(task)
    ]


def eligibility(user: state.User, task: state.Task) -> Eligibility:
    found = policies.decision_eligibility(user, task)
    return Eligibility(eligible=found.eligible, reason=found.reason)
