"""Decisions on tasks: approve or reject an approval task, decide an action approval
(:mod:`engine.tasks.action_approvals`), and one approver's decision under an approval policy
(:mod:`engine.tasks.policies`), which completes the task when it settles the outcome.

A base class of :class:`~engine.tasks.service.TaskService`, whose ``_on_task`` runs each decision inside
the task's instance transition.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from engine.definitions.forms import validate_values
from engine.definitions.model import APPROVAL_SCHEMA_TYPE
from engine.definitions.validation import check_json_size
from engine.errors import ForbiddenError, InvalidStateError, ServiceAccountError
from engine.state import Task, TaskEventKind, TaskStatus, User
from engine.tasks import action_approvals, policies
from engine.tasks.action_approvals import ActionDecision
from engine.tasks.task_checks import at_revision, check_comment, claim_if_unassigned, prepare, require_open_user_task
from engine.transitions.engine import Engine
from engine.transitions.transition import Transition


class TaskDecisions:
    """Approve, reject and decide: the decision half of :class:`~engine.tasks.service.TaskService`."""

    engine: Engine
    _on_task: Callable[[User, str, Callable[[Transition, Task], Awaitable[Any]]], Awaitable[tuple[Any, Task]]]

    async def decide(
        self, user: User, task_id: str, decision: str, comment: str | None, values: Any, expected_revision: int | None
    ) -> Task:
        check_json_size(values, "values", self.engine.max_json_bytes)

        async def decide(transition: Transition, task: Task) -> None:
            if action_approvals.is_action_approval(task):  # its arguments and the service-account rule
                raise InvalidStateError("an action approval is decided with decideActionApproval")
            if policies.has_approval_policy(task):
                await self._decide_by_policy(transition, task, user, decision, comment, values, expected_revision)
                return
            task = await prepare(transition, task, user, expected_revision)
            if task.schema_type != APPROVAL_SCHEMA_TYPE:
                raise InvalidStateError("only approval tasks are approved or rejected; use submitTask")
            check_comment(comment)
            node = transition.definition.node(task.node_id)
            clean = validate_values(node.form, values, partial=False)
            task = await claim_if_unassigned(transition, task, user)
            output = {"decision": decision, "comment": comment, "values": clean, "decidedBy": user.id,
                      "decidedAt": transition.now.isoformat()}  # fmt: skip
            await transition.complete(task, output)

        return (await self._on_task(user, task_id, decide))[1]

    async def decide_action(
        self, user: User, task_id: str, decision: ActionDecision, arguments: Any, feedback: str | None,
        expected_revision: int | None = None,
    ) -> Task:  # fmt: skip
        """A person's decision on an action approval (engine.tasks.action_approvals): its outcome, with
        edited arguments checked against the action's schema, completes the task."""
        check_json_size(arguments, "arguments", self.engine.max_json_bytes)

        async def decide(transition: Transition, task: Task) -> None:
            if not action_approvals.is_action_approval(task):
                raise InvalidStateError("only action approvals are decided with decideActionApproval")
            require_open_user_task(task)
            if user.is_service:
                raise ServiceAccountError("a service account asks for approvals; only a person decides them")
            if policies.has_approval_policy(task):
                await self._decide_action_by_policy(transition, task, user, decision, arguments, feedback,
                                                    expected_revision)  # fmt: skip
                return
            task = await prepare(transition, task, user, expected_revision)
            output = action_approvals.outcome(task, decision, arguments, feedback, user.id, transition.now)
            task = await claim_if_unassigned(transition, task, user)
            await transition.complete(task, output)

        return (await self._on_task(user, task_id, decide))[1]

    async def _decide_action_by_policy(
        self, transition: Transition, task: Task, user: User, decision: ActionDecision, arguments: Any,
        feedback: str | None, expected_revision: int | None,
    ) -> None:  # fmt: skip
        """Under an approval policy each approver approves or rejects the action as proposed: the policy
        counts their decisions, so no single one of them may change what the others approved."""
        if decision not in (ActionDecision.APPROVED, ActionDecision.REJECTED):
            raise InvalidStateError(f"under an approval policy an action is approved or rejected as proposed, "
                                    f"not {decision.value}")  # fmt: skip
        action_approvals.outcome(task, decision, arguments, feedback, user.id, transition.now)  # its checks
        await self._decide_by_policy(transition, task, user, decision.value, feedback, None, expected_revision)

    async def _decide_by_policy(
        self, transition: Transition, task: Task, user: User, decision: str, comment: str | None, values: Any,
        expected_revision: int | None,
    ) -> None:  # fmt: skip
        """One approver's decision on a task with an approval policy (:mod:`engine.tasks.policies`): it
        is recorded, and completes the task when it settles the outcome, or moves a chain on a level."""
        if task.status is TaskStatus.COMPLETED:
            raise InvalidStateError(f"the outcome is already settled ({policies.outcome(task)}); no more decisions "
                                    "are taken")  # fmt: skip
        require_open_user_task(task)
        policies.check_not_excluded(task, user.id, "decide")
        if policies.has_decided(task, user.id):
            raise InvalidStateError("you have already decided this task; a decision counts once")
        eligibility = policies.decision_eligibility(user, task)
        if not eligibility.eligible:
            raise ForbiddenError(f"you may not decide this task: {eligibility.reason}")
        at_revision(task, expected_revision)
        check_comment(comment)
        clean = validate_values(transition.definition.node(task.node_id).form, values, partial=False)
        at = transition.now.isoformat()
        settled = policies.record_decision(task, user.id, decision, comment, at, clean)
        if settled.outcome is not None:
            output = policies.settled_output(settled.policy, settled.outcome, at)
            if action_approvals.is_action_approval(task):
                output = action_approvals.settled_by_policy(task, output)
            await transition.complete(task, output, policy=settled.policy)
        elif settled.next_level is not None:
            level = await transition.policy_level(settled.policy, settled.next_level)
            await transition.update_task(
                task, TaskEventKind.DECIDED, policy=level.policy, assigned_role=level.assignment.role,
                assigned_group=level.assignment.group, candidate_users=level.candidate_users,
                blocked_reason=level.blocked_reason,
            )  # fmt: skip
        else:
            await transition.update_task(task, TaskEventKind.DECIDED, policy=settled.policy)
