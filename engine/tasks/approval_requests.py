"""Asking without a workflow (docs/approvals.md): ``requestApproval`` starts a one-node instance of a built-in
definition holding an action approval, and ``awaitDecision`` waits for its outcome.

An automated caller that crashes and asks again with the same idempotency key gets the same request:
the key (with the caller's id) is the instance's correlation key, so there is never a second task,
however long after. Waiting reads the event hub, not the database in a loop: the hub's position is
taken before the task is read, and the stream replays from it, so a decision committed between the
read and the wait is not missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from engine.definitions.durations import parse_span
from engine.definitions.forms import MAX_TEXT_LENGTH
from engine.definitions.model import ACTION_APPROVAL_SCHEMA_TYPE, Priority
from engine.definitions.registry import Assignment, NodeContext
from engine.definitions.validation import check_json_size
from engine.errors import FieldError, InvalidStateError, ValidationError
from engine.events.hub import EventFilter, EventHub
from engine.signing import new_signing_secret
from engine.state import Task, TaskStatus, User
from engine.storage.callbacks import ensure_callback
from engine.storage.directory import DirectoryRepository
from engine.storage.tasks import TaskRepository
from engine.tasks.action_approvals import MAX_ACTION_LENGTH, check_arguments, is_action_approval, schema_problems
from engine.tasks.visibility import VisibilityService
from engine.transitions.engine import MAX_CORRELATION_KEY, Engine
from engine.webhooks.service import check_url
from engine.workers.hostpolicy import HostPolicy

REQUEST_DEFINITION_KEY = "stepwise.actionApproval"
MAX_WAIT_SECONDS = 60

REQUEST_ASSIGNER = "approvalRequest"

REQUEST_DEFINITION: dict[str, Any] = {
    "key": REQUEST_DEFINITION_KEY,
    "title": "Action approval request",
    # requestApproval starts it for any caller; as a workflow to start by hand it is an admin's only.
    "startRoles": ["admin"],
    "milestones": [{"key": "decide", "title": "Decide", "steps": [
        {"key": "decide", "title": "Decide", "nodes": ["decide"]},
    ]}],
    "start": "decide",
    "nodes": [{
        "id": "decide", "type": "userTask", "schemaType": ACTION_APPROVAL_SCHEMA_TYPE, "storeAs": "decision",
        "assignWith": REQUEST_ASSIGNER, "dueAt": "{{ request.dueAt or '' }}",
        "config": {"action": "{{ request.action }}", "summary": "{{ request.summary or '' }}",
                   "argumentsFrom": "request.arguments", "argumentsSchemaFrom": "request.argumentsSchema",
                   "priority": "{{ request.priority }}"},
    }],
    "edges": [],
}  # fmt: skip
"""The definition ``requestApproval`` starts: the request's own fields fill in the node's."""


@dataclass(frozen=True)
class RequestAssigner:
    """``assignWith: approvalRequest``: the role, user or group the request's ``assignTo`` names."""

    name: str = REQUEST_ASSIGNER

    async def assign(self, context: NodeContext) -> Assignment:
        request = context.variables.get("request")
        chosen = request.get("assignTo") if isinstance(request, Mapping) else None
        if not isinstance(chosen, Mapping):
            return Assignment()
        return Assignment(role=chosen.get("role"), user_id=chosen.get("user"), group=chosen.get("group"))


@dataclass(frozen=True)
class ApprovalRequest:
    action: str
    arguments: Any
    arguments_schema: Any = None
    summary: str | None = None
    assign_role: str | None = None
    assign_user: str | None = None
    assign_group: str | None = None
    priority: Priority = Priority.NORMAL
    due_in: str | None = None
    idempotency_key: str | None = None
    callback_url: str | None = None


@dataclass(frozen=True)
class RequestedApproval:
    task: Task
    callback_secret: str | None
    """What signs the decision sent to ``callbackUrl`` (none without one): the same for every repeat."""


@dataclass(frozen=True)
class AwaitedDecision:
    """What ``awaitDecision`` answers: the task as it is, and whether its wait is over."""

    task: Task
    pending: bool


class ApprovalRequestService:
    def __init__(self, engine: Engine, visibility: VisibilityService, host_policy: HostPolicy | None = None) -> None:
        """``host_policy``: where a ``callbackUrl`` may point (the webhooks' and HTTP tasks' policy)."""
        self.engine = engine
        self.visibility = visibility
        self.host_policy = host_policy or HostPolicy()
        self._deployed = False

    async def ensure_definition(self) -> None:
        """Deploy the built-in definition, once per process (a deploy of the same document again changes
        nothing). Called outside the request's idempotency key: the key guards the start, not this."""
        if not self._deployed:
            await self.engine.deploy(REQUEST_DEFINITION, "system")
            self._deployed = True

    async def request(self, user: User, request: ApprovalRequest) -> RequestedApproval:
        """Start the request (or find the one its key started): its task, and its callback's secret."""
        data = await self._checked(request)
        correlation = f"{user.id}:{request.idempotency_key}" if request.idempotency_key else None
        instance = await self.engine.start(REQUEST_DEFINITION_KEY, {"request": data}, user.id, correlation)
        async with self.engine.db.read() as session:
            tasks = await TaskRepository(session).find_by_instance(instance.id)
        task = next(task for task in tasks if is_action_approval(task))
        if request.callback_url is None:
            return RequestedApproval(task, None)
        async with self.engine.db.transaction() as session:
            secret = await ensure_callback(session, task.id, request.callback_url, new_signing_secret(),
                                           self.engine.clock.now())  # fmt: skip
        return RequestedApproval(task, secret)

    async def _checked(self, request: ApprovalRequest) -> dict[str, Any]:
        problems: list[FieldError] = []
        if not request.action.strip() or len(request.action) > MAX_ACTION_LENGTH:
            problems.append(FieldError("action", f"must be 1 to {MAX_ACTION_LENGTH} characters", "INVALID_LENGTH"))
        if request.summary is not None and len(request.summary) > MAX_TEXT_LENGTH:
            problems.append(FieldError("summary", f"at most {MAX_TEXT_LENGTH} characters", "TOO_LONG"))
        check_json_size(request.arguments, "arguments", self.engine.max_json_bytes)
        check_json_size(request.arguments_schema, "argumentsSchema", self.engine.max_json_bytes)
        schema = request.arguments_schema if request.arguments_schema is not None else {}
        schema_errors = schema_problems(schema, "argumentsSchema")
        problems.extend(schema_errors)
        if not isinstance(request.arguments, Mapping):
            problems.append(FieldError("arguments", "must be a JSON object", "NOT_AN_OBJECT"))
        if not schema_errors and not problems:
            try:
                check_arguments(schema, request.arguments)
            except ValidationError as exc:
                problems.extend(exc.field_errors)
        assignees = [a for a in (request.assign_role, request.assign_user, request.assign_group) if a]
        if len(assignees) != 1:
            problems.append(FieldError("assignTo", "name exactly one of role, user or group", "ONE_ASSIGNEE"))
        elif request.assign_user is not None:
            async with self.engine.db.read() as session:
                if await DirectoryRepository(session).get_user(request.assign_user) is None:
                    problems.append(FieldError("assignTo.user", "no such user", "UNKNOWN_USER"))
        due_at = None
        if request.due_in is not None:
            try:
                due_at = self.engine.calendars.after(self.engine.clock.now(), parse_span(request.due_in)).isoformat()
            except ValueError as exc:
                problems.append(FieldError("dueIn", str(exc), "INVALID_DURATION"))
        if request.callback_url is not None:
            try:
                await check_url(request.callback_url, self.host_policy, "callbackUrl")
            except ValidationError as exc:
                problems.extend(exc.field_errors)
        if request.idempotency_key is not None and len(f"x:{request.idempotency_key}") > MAX_CORRELATION_KEY:
            problems.append(FieldError("idempotencyKey", "is too long", "INVALID_LENGTH"))
        if problems:
            raise ValidationError("the approval request is invalid", problems)
        return {
            "action": request.action, "arguments": request.arguments, "argumentsSchema": schema,
            "summary": request.summary, "priority": request.priority.value, "dueAt": due_at,
            "assignTo": {"role": request.assign_role, "user": request.assign_user, "group": request.assign_group},
            "callbackUrl": request.callback_url,
        }  # fmt: skip

    async def await_decision(
        self, user: User, hub: EventHub, task_id: str, timeout_seconds: float, answer_within: float | None = None
    ) -> AwaitedDecision:
        """The action approval ``task_id`` once it is no longer open (decided, or cancelled or expired), or as
        it is after ``timeout_seconds`` (at most :data:`MAX_WAIT_SECONDS`) with ``pending``. ``answer_within``
        is what the caller's own deadline leaves (a request timeout): the wait ends in time to answer
        ``pending`` rather than be cut off."""
        if not 0 <= timeout_seconds <= MAX_WAIT_SECONDS:
            problem = FieldError("timeoutSeconds", f"must be 0 to {MAX_WAIT_SECONDS}", "OUT_OF_RANGE")
            raise ValidationError(f"timeoutSeconds must be 0 to {MAX_WAIT_SECONDS}", [problem])
        start = hub.cursor  # before the read: what commits after the read is replayed from here
        task = await self.visibility.task(user, task_id)
        if not is_action_approval(task):
            raise InvalidStateError("only an action approval's decision is awaited")
        if not task.status.is_open:
            return AwaitedDecision(task, pending=False)
        try:
            wait = timeout_seconds if answer_within is None else max(0.0, min(timeout_seconds, answer_within))
            async with asyncio.timeout(wait):
                async with aclosing(hub.stream(user, EventFilter(task_id=task_id), start)) as deliveries:
                    async for delivery in deliveries:
                        if not delivery.task.status.is_open:
                            return AwaitedDecision(delivery.task, pending=False)
        except TimeoutError:
            pass
        return AwaitedDecision(task, pending=task.status is not TaskStatus.COMPLETED)
