"""Deploy-time validation of a whole definition against what the registry knows.

Every message names the node (or edge, or step) it is about, and every problem is reported at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import orjson

from engine.definitions.approval import EXCLUDE_COMPLETED_BY, exclusion_problems
from engine.definitions.datapaths import path_problem
from engine.definitions.durations import BusinessDuration
from engine.definitions.escalations import EscalationAction
from engine.definitions.forms import validate_values
from engine.definitions.model import APPROVAL_SCHEMA_TYPE, DECIDED_SCHEMA_TYPES, Node, NodeType, WorkflowDefinition
from engine.definitions.registry import Registry, default_schema_type
from engine.definitions.templates import TemplateSyntaxError, check_template, compile_condition, variables_named
from engine.errors import DefinitionError, FieldError, ValidationError

# The largest JSON value a client may send (``input``, ``values``, ``payload``) or a system task may store
# (``output``), and the largest response body an HTTP or GraphQL task reads: the server's
# STEPWISE_MAX_JSON_BYTES. Every value stored lands in rows that pages and transitions read back.
DEFAULT_MAX_JSON_BYTES = 256 * 1024


def json_size(value: Any) -> int:
    """``value``'s size as compact UTF-8 JSON, as it is stored."""
    try:
        return len(orjson.dumps(value))
    except TypeError:  # what orjson does not take (integers beyond 64 bits): the standard library's spelling
        return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())


def check_json_size(value: Any, field: str, limit: int) -> None:
    """Refuse ``value`` with a ``VALIDATION_FAILED`` naming ``field`` when it is larger than ``limit`` bytes."""
    size = json_size(value)
    if size > limit:
        message = f"{field} is {size} bytes as JSON; at most {limit} are accepted"
        raise ValidationError(message, [FieldError(field, message, "TOO_LARGE")])


MAX_SEARCHABLE = 16
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,127}$")
_STORE_AS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def validate_definition(definition: WorkflowDefinition, registry: Registry) -> None:
    """Raise :class:`DefinitionError` listing every problem of ``definition``."""
    errors: list[FieldError] = []

    def fail(field: str, message: str, code: str = "INVALID") -> None:
        errors.append(FieldError(field=field, message=message, code=code))

    if not _KEY.match(definition.key):
        fail(
            "definition.key",
            f"definition key {definition.key!r} must be a letter then letters, digits, _ . -",
        )
    if not definition.nodes:
        fail("definition.nodes", "a definition needs at least one node", "REQUIRED")
    if len(definition.searchable) > MAX_SEARCHABLE:
        fail("definition.searchable", f"at most {MAX_SEARCHABLE} paths (each is an index)", "TOO_MANY")
    for index, path in enumerate(definition.searchable):
        if (problem := path_problem(path)) is not None:
            fail(f"definition.searchable.{index}", f"searchable path {path!r}: {problem}", "INVALID_PATH")

    seen: set[str] = set()
    for node in definition.nodes:
        if node.id in seen:
            fail(f"nodes.{node.id}.id", f"node {node.id!r}: id is used by more than one node", "DUPLICATE")
        seen.add(node.id)

    if definition.start and not definition.has_node(definition.start):
        fail("definition.start", f"start node {definition.start!r} does not exist", "UNKNOWN_NODE")

    for node in definition.nodes:  # each node object: with duplicate ids, ``definition.node(id)`` is the last
        path = f"nodes.{node.id}"
        for message, field in (*_node_problems(node, registry), *_policy_problems(node, definition)):
            fail(f"{path}.{field}" if field else path, f"node {node.id!r}: {message}")

    for index, edge in enumerate(definition.edges):
        label = f"edge {edge.source!r} → {edge.target!r}"
        for end, name in ((edge.source, "from"), (edge.target, "to")):
            if end and not definition.has_node(end):
                fail(f"edges.{index}.{name}", f"{label}: node {end!r} does not exist", "UNKNOWN_NODE")
        if edge.when is not None:
            try:
                compile_condition(edge.when)
            except TemplateSyntaxError as exc:
                fail(f"edges.{index}.when", f"{label} (from node {edge.source!r}): {exc}", "BAD_CONDITION")

    _check_steps(definition, fail)
    if definition.has_node(definition.start):
        for node_id in _unreachable(definition):
            fail(f"nodes.{node_id}", f"node {node_id!r} cannot be reached from start node {definition.start!r}",
                 "UNREACHABLE")  # fmt: skip

    if errors:
        first = errors[0].message
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise DefinitionError(f"definition {definition.key!r} is invalid: {first}{more}", errors)


def _secrets_problems(key: str, value: Any) -> Iterable[tuple[str, str]]:
    """``secrets`` reach only the configs of executors that send them (engine.workers.worker): anywhere else a
    template naming them would render nothing, or, were they offered, store them."""
    if "secrets" in variables_named(value):
        yield f"{key} names secrets, which only http and graphql tasks' configs may use", key


def _node_problems(node: Node, registry: Registry) -> Iterable[tuple[str, str]]:
    if node.join is not None and node.join != "all":
        yield f"join must be 'all', not {node.join!r}", "join"
    # Every node's title is rendered when its task is created (a system task's too), so it must parse.
    yield from _template_problems("title", node.title)
    yield from _secrets_problems("title", node.title)
    if node.is_user_task:
        schema_type = node.schema_type or default_schema_type(node)
        executor = registry.user_tasks.get(schema_type)
        if executor is None:
            known = ", ".join(sorted(registry.user_tasks))
            yield f"unknown schemaType {schema_type!r} (known: {known})", "schemaType"
        else:
            yield from ((message, "") for message in executor.validate(node))
        assignments = [node.assign_to_role, node.assign_to_user, node.assign_to_group, node.assign_with]
        if sum(value is not None for value in assignments) > 1:
            yield "use only one of assignToRole, assignToUser, assignToGroup and assignWith", ""
        if node.assign_with is not None and node.assign_with not in registry.assigners:
            yield f"unknown assignment executor {node.assign_with!r}", "assignWith"
        if node.due_in is not None and node.due_at is not None:
            yield "use dueIn or dueAt, not both", ""
        yield from _escalation_problems(node)
        for key, template in (
            ("description", node.description),
            ("dueAt", node.due_at),
            ("assignToRole", node.assign_to_role),
            ("assignToUser", node.assign_to_user),
            ("assignToGroup", node.assign_to_group),
        ):
            yield from _template_problems(key, template)
            yield from _secrets_problems(key, template)
    elif node.type in registry.system_tasks:
        system = registry.system_tasks[node.type]
        yield from ((message, "config") for message in system.validate(node))
        yield from _template_problems("config", dict(node.config))
        if not getattr(system, "uses_secrets", False):
            yield from _secrets_problems("config", dict(node.config))
    else:
        known = ", ".join(sorted({NodeType.USER_TASK.value, *registry.system_tasks}))
        yield f"unknown node type {node.type!r} (known: {known})", "type"
    if node.escalation and not node.is_user_task:
        yield "escalation is only for user tasks", "escalation"
    if node.notify is not None and not node.is_user_task:
        yield "notify is only for user tasks: a system task has no one to tell", "notify"
    elif node.notify is not None and node.notify.candidates and not node.notify.email:
        yield "notify: candidates says who gets the email; set email: true too", "notify.candidates"
    if node.store_as is not None and not _STORE_AS.match(node.store_as):
        yield f"storeAs {node.store_as!r} must be an identifier (letters, digits, _)", "storeAs"


def _policy_problems(node: Node, definition: WorkflowDefinition) -> Iterable[tuple[str, str]]:
    """``approval`` and ``excludes`` (engine.definitions.approval): where they may stand, and what they name."""
    if node.excludes and not node.is_user_task:
        yield "excludes is only for user tasks: system tasks have no one to exclude", "excludes"
    for index, rule in enumerate(node.excludes):
        problem = exclusion_problems(rule)
        if problem is not None:
            yield f"excludes: {problem}", f"excludes.{index}"
        elif rule.startswith(EXCLUDE_COMPLETED_BY) and not definition.has_node(rule[len(EXCLUDE_COMPLETED_BY) :]):
            yield f"excludes: {rule!r} names a node that does not exist", f"excludes.{index}"
    if node.approval is None:
        return
    if not node.is_user_task or (node.schema_type or "") not in DECIDED_SCHEMA_TYPES:
        kinds = " or ".join(repr(kind) for kind in sorted(DECIDED_SCHEMA_TYPES))
        yield f"approval is only for user tasks of schemaType {kinds}", "approval"
    if any(v is not None for v in (node.assign_to_role, node.assign_to_user, node.assign_to_group, node.assign_with)):
        yield "approval names who decides: leave out assignToRole, assignToUser, assignToGroup and assignWith", ""
    for level in node.approval.levels:
        yield from _template_problems("approval", level.approvers.users_template)


def _escalation_problems(node: Node) -> Iterable[tuple[str, str]]:
    """What the parser cannot know: whether a ``complete`` step's outcome is a result this task may have."""
    approval = (node.schema_type or default_schema_type(node)) == APPROVAL_SCHEMA_TYPE
    for index, step in enumerate(node.escalation):
        if step.action is not EscalationAction.COMPLETE:
            continue
        where = (f"escalation step #{index}: outcome", f"escalation.{index}.outcome")
        outcome = dict(step.outcome)
        if approval:
            if outcome.get("decision") not in ("approved", "rejected"):
                yield f"{where[0]} needs 'decision': 'approved' or 'rejected' on an approval task", where[1]
            if not isinstance(outcome.get("comment", ""), str):
                yield f"{where[0]}: 'comment' must be text", where[1]
            if set(outcome) - {"decision", "comment", "values"}:
                yield f"{where[0]} may only have decision, comment and values", where[1]
            outcome = dict(outcome.get("values") or {})
        try:
            validate_values(node.form, outcome, partial=False)
        except ValidationError as exc:
            problems = "; ".join(f"{e.field}: {e.message}" for e in exc.field_errors)
            yield f"{where[0]} is not a valid submission of the form ({problems})", where[1]


def calendar_problems(definition: WorkflowDefinition, calendars: frozenset[str]) -> list[FieldError]:
    """Every business duration naming a calendar the server's settings do not define."""
    found = []
    for node in definition.nodes:
        spans = [("dueIn", node.due_in)] + [(f"escalation.{i}.after", s.after) for i, s in enumerate(node.escalation)]
        duration = node.config.get("duration") if node.type == NodeType.DELAY else None
        if isinstance(duration, Mapping) and isinstance(duration.get("calendar"), str) and duration.get("business"):
            spans.append(("config.duration", BusinessDuration(timedelta(0), duration["calendar"])))
        for key, span in spans:
            if isinstance(span, BusinessDuration) and span.calendar not in calendars:
                known = ", ".join(sorted(calendars))
                message = (
                    f"node {node.id!r}: {key} names calendar {span.calendar!r}, which is not defined (known: {known})"
                )
                found.append(FieldError(f"nodes.{node.id}.{key}", message, "UNKNOWN_CALENDAR"))
    return found


def _template_problems(key: str, value: Any) -> Iterable[tuple[str, str]]:
    if isinstance(value, str):
        try:
            check_template(value)
        except TemplateSyntaxError as exc:
            yield f"{key}: {exc}", key
    elif isinstance(value, Mapping):
        for child_key, child in value.items():
            yield from _template_problems(f"{key}.{child_key}", child)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _template_problems(f"{key}.{index}", child)


def _check_steps(definition: WorkflowDefinition, fail: Any) -> None:
    placed: dict[str, str] = {}
    milestone_keys: set[str] = set()
    step_keys: set[str] = set()
    for milestone in definition.milestones:
        if milestone.key in milestone_keys:
            fail(f"milestones.{milestone.key}", f"milestone {milestone.key!r} is defined twice", "DUPLICATE")
        milestone_keys.add(milestone.key)
        for step in milestone.steps:
            path = f"milestones.{milestone.key}.steps.{step.key}"
            if step.key in step_keys:
                fail(path, f"step {step.key!r} is defined twice", "DUPLICATE")
            step_keys.add(step.key)
            for node_id in step.nodes:
                if not definition.has_node(node_id):
                    fail(f"{path}.nodes", f"step {step.key!r} lists node {node_id!r}, which does not exist",
                         "UNKNOWN_NODE")  # fmt: skip
                elif node_id in placed:
                    fail(f"nodes.{node_id}", f"node {node_id!r} is in two steps: {placed[node_id]!r} and "
                         f"{step.key!r}", "DUPLICATE")  # fmt: skip
                placed[node_id] = step.key
    for node in definition.nodes:
        if node.id not in placed:
            fail(f"nodes.{node.id}", f"node {node.id!r} is not in any step of any milestone", "NO_STEP")


def _unreachable(definition: WorkflowDefinition) -> list[str]:
    reached = {definition.start}
    frontier = [definition.start]
    while frontier:
        for edge in definition.outgoing(frontier.pop()):
            if edge.target not in reached and definition.has_node(edge.target):
                reached.add(edge.target)
                frontier.append(edge.target)
    return [node.id for node in definition.nodes if node.id not in reached]
