"""Read the JSON definition format (docs/design.md §2) into :mod:`engine.definitions.model` dataclasses.

Structural problems (wrong types, missing keys, unknown keys) are collected, not raised one by one,
so a deploy reports every problem at once; each names the node or edge it is about.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import isodate

from engine.definitions.approval import REJECT_ANY, REJECT_MAJORITY, ApprovalLevel, ApprovalPolicy, Approvers
from engine.definitions.durations import Span, parse_span
from engine.definitions.escalations import parse_escalation
from engine.definitions.model import (
    DocumentRequirement,
    Edge,
    Form,
    FormField,
    Milestone,
    Node,
    NotifyPolicy,
    OnDue,
    Priority,
    RetryPolicy,
    Step,
    WorkflowDefinition,
)
from engine.errors import DefinitionError, FieldError

DEFAULT_MILESTONE_KEY = "main"

_NODE_KEYS = frozenset(
    {
        "id", "type", "name", "schemaType", "title", "description", "signal", "assignToRole",
        "assignToUser", "assignToGroup", "assignWith", "storeAs", "priority", "dueIn", "dueAt",
        "onDue", "form", "documents", "config", "retry", "join", "approval", "excludes",
        "escalation", "notify",
    }
)  # fmt: skip
_FIELD_KEYS = frozenset({"key", "type", "label", "required", "options", "mask", "multiline", "min", "max", "maxLength"})
_DOCUMENT_KEYS = frozenset({"key", "label", "accept", "minFiles", "maxFiles", "maxBytes"})
_RETRY_KEYS = frozenset({"maxAttempts", "initialInterval", "backoffCoefficient", "maximumInterval"})


class _Reader:
    """Typed access to one JSON object that records a :class:`FieldError` instead of raising."""

    def __init__(self, doc: Any, path: str, subject: str, errors: list[FieldError]) -> None:
        self.doc: Mapping[str, Any] = doc if isinstance(doc, Mapping) else {}
        self.path, self.subject, self.errors = path, subject, errors
        if not isinstance(doc, Mapping):
            self.fail("", "must be an object")

    def fail(self, key: str, message: str, code: str = "INVALID") -> None:
        field = f"{self.path}.{key}" if key else self.path
        where = f"{self.subject}: {key} " if key else f"{self.subject} "
        self.errors.append(FieldError(field=field, message=f"{where}{message}", code=code))

    def reject_unknown(self, allowed: frozenset[str]) -> None:
        for key in sorted(set(self.doc) - allowed):
            self.fail(key, "is not a known key", "UNKNOWN_KEY")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        if key not in self.doc or self.doc[key] is None:
            if required:
                self.fail(key, "is required", "REQUIRED")
            return default
        value = self.doc[key]
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            self.fail(key, "has the wrong type")
            return default
        if not isinstance(value, kind):
            self.fail(key, "has the wrong type")
            return default
        return value

    def text(self, key: str, required: bool = False) -> str | None:
        value = self.get(key, str, required=required)
        return value if value is None else str(value)

    def number(self, key: str) -> float | None:
        value = self.get(key, (int, float))
        return None if value is None else float(value)

    def integer(self, key: str, default: int | None = None) -> int | None:
        value: int | None = self.get(key, int, default)
        return value

    def duration(self, key: str) -> timedelta | None:
        value = self.text(key)
        if value is None:
            return None
        try:
            parsed = isodate.parse_duration(value)
        except (isodate.ISO8601Error, ValueError):
            self.fail(key, f"is not an ISO 8601 duration: {value!r}")
            return None
        if not isinstance(parsed, timedelta):  # years or months have no fixed length
            self.fail(key, f"must be in days, hours, minutes or seconds: {value!r}")
            return None
        return parsed

    def span(self, key: str) -> Span | None:
        """A duration, or business time (:mod:`engine.definitions.durations`)."""
        value = self.doc.get(key)
        if value is None:
            return None
        try:
            return parse_span(value)
        except ValueError as exc:
            self.fail(key, str(exc))
            return None

    def strings(self, key: str) -> tuple[str, ...] | None:
        value = self.get(key, list)
        if value is None:
            return None
        if not all(isinstance(item, str) for item in value):
            self.fail(key, "must be a list of strings")
            return None
        return tuple(value)

    def enum(self, key: str, enum: type[Priority] | type[OnDue], default: Any) -> Any:
        value = self.text(key)
        if value is None:
            return default
        try:
            return enum(value)
        except ValueError:
            allowed = ", ".join(member.value for member in enum)
            self.fail(key, f"must be one of {allowed}, not {value!r}")
            return default

    def children(self, key: str) -> list[Any]:
        value = self.get(key, list, default=[])
        return list(value)


def parse_definition(doc: Any) -> WorkflowDefinition:
    """Parse a definition document, raising :class:`DefinitionError` with every structural problem."""
    errors: list[FieldError] = []
    top = _Reader(doc, "definition", "definition", errors)
    top.reject_unknown(frozenset({"key", "title", "start", "nodes", "edges", "milestones", "startRoles", "searchable"}))
    key = top.text("key", required=True) or ""
    nodes = tuple(_parse_node(item, index, errors) for index, item in enumerate(top.children("nodes")))
    edges = tuple(_parse_edge(item, index, errors) for index, item in enumerate(top.children("edges")))
    milestones = tuple(_parse_milestone(item, index, errors) for index, item in enumerate(top.children("milestones")))
    if not milestones and nodes:
        # dict.fromkeys: a duplicated id is reported once as a duplicate, not also as "in two steps".
        step = Step(key=DEFAULT_MILESTONE_KEY, title="Main", nodes=tuple(dict.fromkeys(node.id for node in nodes)))
        milestones = (Milestone(key=DEFAULT_MILESTONE_KEY, title="Main", steps=(step,)),)
    start = top.text("start")
    if start is None:
        top.fail("start", "is required: name the node the workflow starts at", "REQUIRED")
    definition = WorkflowDefinition(
        key=key,
        title=top.text("title") or key,
        start=start or "",
        nodes=nodes,
        edges=edges,
        milestones=milestones,
        start_roles=top.strings("startRoles") or (),
        searchable=top.strings("searchable") or (),
    )
    if errors:
        raise DefinitionError(_summary(key, errors), errors)
    return definition


def _summary(key: str, errors: list[FieldError]) -> str:
    first = errors[0].message
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"definition {key!r} is invalid: {first}{more}"


def _parse_node(doc: Any, index: int, errors: list[FieldError]) -> Node:
    node_id = doc.get("id") if isinstance(doc, Mapping) else None
    label = node_id if isinstance(node_id, str) and node_id else f"#{index}"
    r = _Reader(doc, f"nodes.{label}", f"node {label!r}", errors)
    r.reject_unknown(_NODE_KEYS)
    form_doc = r.get("form", Mapping)
    return Node(
        id=r.text("id", required=True) or label,
        type=r.text("type", required=True) or "",
        name=r.text("name") or "",
        schema_type=r.text("schemaType"),
        title=r.text("title"),
        description=r.text("description"),
        signal=r.text("signal"),
        assign_to_role=r.text("assignToRole"),
        assign_to_user=r.text("assignToUser"),
        assign_to_group=r.text("assignToGroup"),
        assign_with=r.text("assignWith"),
        store_as=r.text("storeAs"),
        priority=r.enum("priority", Priority, Priority.NORMAL),
        due_in=r.span("dueIn"),
        due_at=r.text("dueAt"),
        on_due=r.enum("onDue", OnDue, OnDue.NONE),
        form=_parse_form(form_doc, r) if form_doc is not None else None,
        documents=tuple(_parse_document(item, i, r) for i, item in enumerate(r.children("documents"))),
        config=dict(r.get("config", Mapping, default={})),
        retry=_parse_retry(r.get("retry", Mapping), r),
        join=r.text("join"),
        approval=_parse_approval(r.get("approval", Mapping), r),
        excludes=r.strings("excludes") or (),
        escalation=parse_escalation(r.doc.get("escalation"), f"{r.path}.escalation", r.subject, errors),
        notify=_parse_notify(r.get("notify", Mapping), r),
    )


def _parse_form(doc: Mapping[str, Any], node: _Reader) -> Form:
    form = _Reader(doc, f"{node.path}.form", node.subject, node.errors)
    form.reject_unknown(frozenset({"fields"}))
    return Form(fields=tuple(_parse_field(item, i, node) for i, item in enumerate(form.children("fields"))))


def _parse_field(doc: Any, index: int, node: _Reader) -> FormField:
    key = doc.get("key") if isinstance(doc, Mapping) else None
    label = key if isinstance(key, str) and key else f"#{index}"
    r = _Reader(doc, f"{node.path}.form.fields.{label}", f"{node.subject}, form field {label!r}", node.errors)
    r.reject_unknown(_FIELD_KEYS)
    return FormField(
        key=r.text("key", required=True) or label,
        type=r.text("type", required=True) or "",
        label=r.text("label") or label,
        required=bool(r.get("required", bool, False)),
        options=r.strings("options"),
        mask=r.text("mask"),
        multiline=r.get("multiline", bool),
        min=r.number("min"),
        max=r.number("max"),
        max_length=r.integer("maxLength"),
    )


def _parse_document(doc: Any, index: int, node: _Reader) -> DocumentRequirement:
    key = doc.get("key") if isinstance(doc, Mapping) else None
    label = key if isinstance(key, str) and key else f"#{index}"
    r = _Reader(doc, f"{node.path}.documents.{label}", f"{node.subject}, document {label!r}", node.errors)
    r.reject_unknown(_DOCUMENT_KEYS)
    return DocumentRequirement(
        key=r.text("key", required=True) or label,
        label=r.text("label") or label,
        accept=r.strings("accept") or ("*/*",),
        min_files=r.integer("minFiles", 1) or 0,
        max_files=r.integer("maxFiles"),
        max_bytes=r.integer("maxBytes"),
    )


def _parse_retry(doc: Mapping[str, Any] | None, node: _Reader) -> RetryPolicy | None:
    if doc is None:
        return None
    r = _Reader(doc, f"{node.path}.retry", node.subject, node.errors)
    r.reject_unknown(_RETRY_KEYS)
    defaults = RetryPolicy()
    # Explicit ``is None`` checks: ``PT0S`` and ``0`` are falsy but must be rejected, not defaulted.
    initial, maximum = r.duration("initialInterval"), r.duration("maximumInterval")
    coefficient = r.number("backoffCoefficient")
    try:
        return RetryPolicy(
            max_attempts=r.integer("maxAttempts", defaults.max_attempts) or 0,
            initial_interval=defaults.initial_interval if initial is None else initial,
            backoff_coefficient=defaults.backoff_coefficient if coefficient is None else coefficient,
            # An unset maximum never undercuts the node's own initialInterval.
            maximum_interval=max(defaults.maximum_interval, initial or defaults.initial_interval)
            if maximum is None
            else maximum,
        )
    except ValueError as exc:
        r.fail("", f"has an invalid retry policy: {exc}")
        return None


_APPROVER_KEYS = frozenset({"role", "group", "users"})
_LEVEL_KEYS = frozenset({"required", "rejectWhen"})


def _parse_notify(doc: Mapping[str, Any] | None, node: _Reader) -> NotifyPolicy | None:
    if doc is None:
        return None
    r = _Reader(doc, f"{node.path}.notify", f"{node.subject}, notify", node.errors)
    r.reject_unknown(frozenset({"email", "candidates"}))
    return NotifyPolicy(email=bool(r.get("email", bool, False)), candidates=bool(r.get("candidates", bool, False)))


def _parse_approval(doc: Mapping[str, Any] | None, node: _Reader) -> ApprovalPolicy | None:
    if doc is None:
        return None
    r = _Reader(doc, f"{node.path}.approval", f"{node.subject}, approval", node.errors)
    if "chain" in doc:
        r.reject_unknown(frozenset({"chain"}))
        items = r.children("chain")
        if not items:
            r.fail("chain", "must list at least one level")
            return None
        levels = [_parse_level(item, f"{r.path}.chain.{i}", f"{r.subject} level {i + 1}", node, item)
                  for i, item in enumerate(items)]  # fmt: skip
        return ApprovalPolicy(levels=tuple(levels), chain=True)
    r.reject_unknown(_LEVEL_KEYS | {"of"})
    of = r.get("of", Mapping, required=True)
    if of is None:
        return None
    return ApprovalPolicy(levels=(_parse_level(doc, r.path, r.subject, node, of, of_key="of"),))


def _parse_level(doc: Any, path: str, subject: str, node: _Reader, approvers: Any, of_key: str = "") -> ApprovalLevel:
    """One level: ``required`` and ``rejectWhen`` from ``doc``, who decides from ``approvers`` (the
    same object for a chain's level, ``doc["of"]`` for a quorum)."""
    r = _Reader(doc, path, subject, node.errors)
    if not of_key:
        r.reject_unknown(_LEVEL_KEYS | _APPROVER_KEYS)
    who = _Reader(approvers, f"{path}.{of_key}" if of_key else path, subject, node.errors)
    if of_key:
        who.reject_unknown(_APPROVER_KEYS)
    named = [key for key in ("role", "group", "users") if key in who.doc]
    if len(named) != 1:
        who.fail("", "must name exactly one of role, group or users", "REQUIRED")
    users = who.doc.get("users")
    template = users if isinstance(users, str) else None
    listed = who.strings("users") if not isinstance(users, str) else None
    required = r.integer("required", 1)
    reject_when = r.get("rejectWhen", (str, int), REJECT_ANY)
    if isinstance(reject_when, str) and reject_when not in (REJECT_ANY, REJECT_MAJORITY):
        r.fail("rejectWhen", f"must be 'any', 'majority' or a number, not {reject_when!r}")
    elif isinstance(reject_when, int) and reject_when < 1:
        r.fail("rejectWhen", "must be at least 1")
    if required is None or required < 1:
        r.fail("required", "must be at least 1")
    elif listed is not None and required > len(listed):
        r.fail("required", f"is {required}, but only {len(listed)} users are listed")
    return ApprovalLevel(
        approvers=Approvers(role=who.text("role"), group=who.text("group"), users=listed, users_template=template),
        required=required or 1,
        reject_when=reject_when,
    )


def _parse_edge(doc: Any, index: int, errors: list[FieldError]) -> Edge:
    r = _Reader(doc, f"edges.{index}", f"edge #{index}", errors)
    r.reject_unknown(frozenset({"from", "to", "when"}))
    source, target = r.text("from", required=True) or "", r.text("to", required=True) or ""
    if source and target:
        r.subject = f"edge {source!r} → {target!r}"
    return Edge(source=source, target=target, when=r.text("when"))


def _parse_milestone(doc: Any, index: int, errors: list[FieldError]) -> Milestone:
    key = doc.get("key") if isinstance(doc, Mapping) else None
    label = key if isinstance(key, str) and key else f"#{index}"
    r = _Reader(doc, f"milestones.{label}", f"milestone {label!r}", errors)
    r.reject_unknown(frozenset({"key", "title", "steps"}))
    steps = []
    for step_index, step_doc in enumerate(r.children("steps")):
        step_key = step_doc.get("key") if isinstance(step_doc, Mapping) else None
        step_label = step_key if isinstance(step_key, str) and step_key else f"#{step_index}"
        s = _Reader(step_doc, f"{r.path}.steps.{step_label}", f"step {step_label!r}", errors)
        s.reject_unknown(frozenset({"key", "title", "nodes"}))
        steps.append(
            Step(
                key=s.text("key", required=True) or step_label,
                title=s.text("title") or step_label,
                nodes=s.strings("nodes") or (),
            )
        )
    return Milestone(key=r.text("key", required=True) or label, title=r.text("title") or label, steps=tuple(steps))
