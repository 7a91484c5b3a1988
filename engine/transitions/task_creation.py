"""How a :class:`~engine.transitions.transition.Transition` builds the task a token waits at: the step
instance it belongs to, a user task's assignment and approval policy, a system task's first run.

A base class of ``Transition`` (the attributes it declares are the transition's), so that creating a task
stays one method call on the transition, with no object in between on a transition's path.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from engine.calendars import Calendars
from engine.definitions.approval import EXCLUDE_STARTER
from engine.definitions.model import Node, OnDue, WorkflowDefinition
from engine.definitions.registry import Assignment, NodeContext, Registry
from engine.definitions.templates import render_text
from engine.state import StepInstance, Task, TaskKind, Token, WorkflowInstance, new_id
from engine.storage.deferred import TransitionConnection
from engine.storage.directory import GROUP_MEMBERS, ROLE_MEMBERS
from engine.storage.instances import step_values
from engine.storage.models import step_instances
from engine.storage.tasks import TaskRepository
from engine.tasks import approvals
from engine.tasks.policy_state import TaskPolicy
from engine.transitions.new_tasks import due_time, new_task
from engine.transitions.remembered import RememberedMembers


class TaskCreation:
    """The task-building half of a transition."""

    connection: TransitionConnection
    instance: WorkflowInstance
    definition: WorkflowDefinition
    registry: Registry
    now: datetime
    calendars: Calendars
    tasks: TaskRepository
    _steps: dict[str, StepInstance]
    variables: Callable[[], dict[str, Any]]
    _members_known: RememberedMembers | None
    assumed_members: dict[tuple[str, str], tuple[str, ...]]
    """Memberships counted as remembered, for the last statement to check: (kind, key) → members."""

    def _step_instance(self, node: Node) -> StepInstance:
        """The instance's step ``node`` is in: the one it has (all were read with the instance, which
        is locked), or a new one."""
        place = self.definition.step_of(node.id)
        assert place is not None, "validation guarantees every node is in a step"
        milestone, step = place
        known = self._steps.get(step.key)
        if known is None:
            known = StepInstance(new_id(), self.instance.id, milestone.key, step.key, self.now)
            self.connection.defer_insert(step_instances, step_values(known))
            self._steps[step.key] = known
        return known

    async def _user_task(self, node: Node, token: Token) -> Task:
        context = NodeContext(node=node, workflow_instance_id=self.instance.id, variables=self.variables())
        due_at = due_time(node, self.now, self.calendars, self.variables)
        executor = self.registry.user_task_executor(node)
        config = await executor.configure(context)
        assignment = config.assignment
        if node.assign_with is not None:
            assignment = await self.registry.assigners[node.assign_with].assign(context)
        policy: dict[str, Any] = {}  # the task's policy columns, if it has a policy
        if approvals.needs_setup(node):
            setup = await self._policy_setup(node, assignment)
            assignment = setup.assignment
            policy = {"policy": setup.policy, "candidate_users": setup.candidate_users,
                      "blocked_reason": setup.blocked_reason}  # fmt: skip
        return new_task(
            self.instance.id, node, token, self._step_instance(node).id, self.now,
            kind=TaskKind.USER, type=executor.task_type, schema_type=executor.schema_type,
            title=config.title, description=config.description, signal_name=node.signal_name,
            assigned_role=assignment.role, assigned_user_id=assignment.user_id, assigned_group=assignment.group,
            priority=config.priority, input=dict(config.input), due_at=due_at,
            expires_at=due_at if node.on_due is OnDue.EXPIRE else None, **policy,
        )  # fmt: skip

    async def _policy_setup(self, node: Node, assignment: Assignment) -> approvals.PolicySetup:
        """``node``'s approval policy and ``excludes`` for its new task. The directory is read past this
        transition's deferred writes (none of which can change it), so that a policy does not make a
        transition write early; the instance's earlier tasks are read only for ``excludes`` that look
        back at them."""
        looks_back = any(rule != EXCLUDE_STARTER for rule in node.excludes)
        earlier = await self.tasks.find_by_instance(self.instance.id) if looks_back else []
        return await approvals.setup(node, self.variables(), self.instance.started_by, assignment, earlier,
                                     self._members)  # fmt: skip

    async def policy_level(self, policy: TaskPolicy, index: int) -> approvals.PolicySetup:
        """A chain's next level made current (its approvers, eligible count, blocked or not)."""
        return await approvals.activate_level(policy, index, self._members)

    async def _members(self, *, role: str | None = None, group: str | None = None) -> list[str]:
        """A role's holders or a group's members, sorted: as this process remembers them, which the
        transition's last statement then checks (:class:`~engine.transitions.remembered.RememberedMembers`),
        else read."""
        kind, key, statement = ("role", role, ROLE_MEMBERS) if role is not None else ("group", group, GROUP_MEMBERS)
        assert key is not None, "a role or a group"
        if self._members_known is not None:
            known = self._members_known.get(kind, key)
            if known is not None:
                self.assumed_members[(kind, key)] = known
                return list(known)
        members = sorted(row.user_id for row in await self.connection.read_unaffected(statement, {"key": key}))
        if self._members_known is not None:
            self._members_known.keep(kind, key, members)
        return members

    async def _system_task(self, node: Node, token: Token) -> Task:
        return new_task(
            self.instance.id, node, token, self._step_instance(node).id, self.now,
            kind=TaskKind.SYSTEM, type=self.registry.task_type(node), schema_type=node.type,
            title=render_text(node.title, self.variables()) or node.display_name, description=None,
            signal_name=None, assigned_role=None, assigned_user_id=None, assigned_group=None,
            priority=node.priority, input={}, due_at=None, next_run_at=self.now,
        )  # fmt: skip
