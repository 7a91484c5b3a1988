"""``userTask.actionApproval`` (docs/approvals.md): a person approves, edits, rejects or answers an action an
automated caller proposes: an AI agent's tool call, a deployment script's step.

The node's ``config`` names the action and where its arguments come from::

    {"action": "refund", "summary": "Refund {{ order.id }}", "argumentsFrom": "proposal",
     "argumentsSchema": {"type": "object", "properties": {"amount": {"type": "number", "maximum": 500}}}}

``arguments`` / ``argumentsSchema`` are literal JSON; ``argumentsFrom`` / ``argumentsSchemaFrom`` are data
paths into the instance data; ``priority`` may be a template. The task's ``input`` holds the proposal
(``action``, ``arguments``, ``argumentsSchema``, ``summary``, ``requestedBy``); its output, stored under
``storeAs``, is the :func:`outcome`. Everything else (assignment, due dates, escalation, notify) is the
node's, as for any user task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.exceptions import ValidationError as SchemaViolation

from engine.definitions.datapaths import path_problem, segments_of
from engine.definitions.forms import MAX_TEXT_LENGTH
from engine.definitions.model import ACTION_APPROVAL_SCHEMA_TYPE, Node, Priority
from engine.definitions.registry import NodeContext, UserTaskConfig
from engine.definitions.templates import render_text
from engine.errors import FieldError, ValidationError
from engine.state import Task
from engine.tasks.usertasks import static_assignment

MAX_ACTION_LENGTH = 200
MAX_FIELD_ERRORS = 50
"""A wildly wrong edit is reported by its first violations, not by thousands of them."""


class ActionDecision(StrEnum):
    APPROVED = "approved"
    """Run the action with the arguments as proposed."""
    EDITED = "edited"
    """Run it with the arguments the person edited (checked against the schema)."""
    REJECTED = "rejected"
    """Do not run it; ``feedback`` may say why."""
    RESPONDED = "responded"
    """Neither: ``feedback`` is an answer for the caller (a question back, an instruction)."""


def is_action_approval(task: Task) -> bool:
    return task.schema_type == ACTION_APPROVAL_SCHEMA_TYPE


def schema_problems(schema: Any, field: str) -> list[FieldError]:
    """Why ``schema`` is not a JSON Schema (draft 2020-12) object; empty when it is one."""
    if not isinstance(schema, Mapping):
        return [FieldError(field, "must be a JSON Schema object", "NOT_AN_OBJECT")]
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = ".".join(str(part) for part in exc.absolute_path)
        return [FieldError(field + (f".{where}" if where else ""), exc.message, "INVALID_SCHEMA")]
    return []


def argument_problems(schema: Mapping[str, Any], arguments: Any, field: str = "arguments") -> list[FieldError]:
    """Each way ``arguments`` breaks ``schema``, at its path (``arguments.amount``; a missing required
    property is reported at the property's own path), in document order."""
    problems: list[FieldError] = []
    violations = sorted(Draft202012Validator(schema).iter_errors(arguments), key=lambda e: list(map(str, e.path)))
    for violation in violations[:MAX_FIELD_ERRORS]:
        problems.extend(_field_errors(violation, arguments, field))
    return problems


def _field_errors(violation: SchemaViolation, arguments: Any, field: str) -> list[FieldError]:
    path = [field, *(str(part) for part in violation.absolute_path)]
    code = f"SCHEMA_{str(violation.validator).upper()}"
    if violation.validator == "required" and isinstance(violation.instance, Mapping):
        required = violation.validator_value if isinstance(violation.validator_value, list) else []
        missing = [key for key in required if key not in violation.instance]
        return [FieldError(".".join([*path, key]), "is required", code) for key in missing]
    return [FieldError(".".join(path), violation.message, code)]


def check_arguments(schema: Mapping[str, Any], arguments: Any, field: str = "arguments") -> None:
    problems = argument_problems(schema, arguments, field)
    if problems:
        raise ValidationError(f"{field} do not match the action's schema", problems)


def outcome(
    task: Task, decision: ActionDecision, arguments: Any, feedback: str | None, decided_by: str, at: datetime
) -> dict[str, Any]:
    """The task's output for ``decision``, or :class:`ValidationError` (nothing is written then).

    Arguments are sent only with ``edited``, and checked against the task's schema; ``responded`` needs
    ``feedback``. A rejected or answered action carries no arguments, so no caller can run it by mistake."""
    if feedback is not None and len(feedback) > MAX_TEXT_LENGTH:
        problem = FieldError("feedback", f"at most {MAX_TEXT_LENGTH} characters", "TOO_LONG")
        raise ValidationError("feedback is too long", [problem])
    if decision is ActionDecision.EDITED:
        if arguments is None:
            raise ValidationError("an edit sends the edited arguments",
                                  [FieldError("arguments", "is required to edit", "REQUIRED")])  # fmt: skip
        check_arguments(task.input.get("argumentsSchema") or {}, arguments)
    elif arguments is not None:
        raise ValidationError(f"arguments are sent only to edit, not when {decision.value}",
                              [FieldError("arguments", "only with decision EDITED", "NOT_ALLOWED")])  # fmt: skip
    if decision is ActionDecision.RESPONDED and not (feedback or "").strip():
        raise ValidationError("a response is the feedback", [FieldError("feedback", "is required", "REQUIRED")])
    approved_arguments = {
        ActionDecision.APPROVED: task.input.get("arguments"),
        ActionDecision.EDITED: arguments,
    }.get(decision)
    return {"decision": decision.value, "arguments": approved_arguments, "feedback": feedback,
            "decidedBy": decided_by, "decidedAt": at.isoformat()}  # fmt: skip


def settled_by_policy(task: Task, output: Mapping[str, Any]) -> dict[str, Any]:
    """An approval policy's settled output with what a caller reads of any outcome: the arguments to run
    (as proposed, when approved) and the feedback (none: each approver's comment is in ``decisions``)."""
    approved = output.get("decision") == ActionDecision.APPROVED.value
    return {**output, "arguments": task.input.get("arguments") if approved else None, "feedback": None}


@dataclass(frozen=True)
class ActionApprovalTask:
    """The user-task executor of ``userTask.actionApproval``."""

    schema_type: str = ACTION_APPROVAL_SCHEMA_TYPE
    name: str = "Action approval"
    task_type: str = "ACTION_APPROVAL"

    def validate(self, node: Node) -> list[str]:
        config = node.config
        problems: list[str] = []
        action = config.get("action")
        if not isinstance(action, str) or not action.strip():
            problems.append("an action approval needs config.action (the action's name)")
        for literal, path in (("arguments", "argumentsFrom"), ("argumentsSchema", "argumentsSchemaFrom")):
            if literal in config and path in config:
                problems.append(f"use config.{literal} or config.{path}, not both")
            if literal in config and not isinstance(config[literal], Mapping):
                problems.append(f"config.{literal} must be a JSON object")
            if path in config:
                problem = path_problem(config[path]) if isinstance(config[path], str) else "must be a data path"
                if problem:
                    problems.append(f"config.{path}: {problem}")
        if isinstance(config.get("argumentsSchema"), Mapping):
            bad = schema_problems(config["argumentsSchema"], "argumentsSchema")
            problems.extend(f"config.{problem.field}: {problem.message}" for problem in bad)
        for text in ("summary", "priority"):
            if text in config and not isinstance(config[text], str):
                problems.append(f"config.{text} must be a string")
        if node.form is not None:
            problems.append("an action approval has no form: its arguments are what is edited")
        return problems

    async def configure(self, context: NodeContext) -> UserTaskConfig:
        node, variables, config = context.node, context.variables, context.node.config
        action = render_text(config.get("action"), variables)
        summary = render_text(config.get("summary"), variables) or None
        arguments = _value(config, "arguments", variables)
        schema = _value(config, "argumentsSchema", variables)
        priority = render_text(config.get("priority"), variables)
        requester = variables.get("startedBy")
        return UserTaskConfig(
            title=render_text(node.title, variables) or f"Approve: {action}",
            description=render_text(node.description, variables) or summary,
            assignment=static_assignment(node, variables),
            priority=Priority(priority) if priority in Priority._value2member_map_ else node.priority,
            input={
                "action": action, "arguments": arguments if arguments is not None else {},
                "argumentsSchema": schema if isinstance(schema, Mapping) else {}, "summary": summary,
                "requestedBy": requester.get("id") if isinstance(requester, Mapping) else None,
            },
        )  # fmt: skip


def _value(config: Mapping[str, Any], name: str, variables: Mapping[str, Any]) -> Any:
    """``config[name]`` as written, or the instance data at ``config[name + "From"]`` (None if absent)."""
    if name in config:
        return config[name]
    path = config.get(name + "From")
    if not isinstance(path, str) or path_problem(path):
        return None
    found: Any = variables
    for segment in segments_of(path):
        if not isinstance(found, Mapping) or segment not in found:
            return None
        found = found[segment]
    return found


ACTION_APPROVAL_TASK = ActionApprovalTask()
