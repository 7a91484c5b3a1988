"""A Python builder that mirrors the seed's API and produces the same definitions as the JSON format.

b = WorkflowBuilder("expense_approval", title="Expense approval")
with b.milestone("review", "Review"), b.step("decision", "Decision"):
    b.user_task("approvalDecision", name="Approval Decision", signal="approval_signal",
                title="Approve {{ entityType }}: {{ entityName }}", assign_to_role="approver",
                store_as="approvalResult", priority="high")
definition = b.build()
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from engine.definitions.model import ACTION_APPROVAL_SCHEMA_TYPE, NodeType, WorkflowDefinition
from engine.definitions.parsing import parse_definition


class WorkflowBuilder:
    """Collects milestones, steps, nodes and edges; ``build()`` parses them like a JSON document."""

    def __init__(self, key: str, *, title: str | None = None, start_roles: Sequence[str] = ()) -> None:
        self.key = key
        self.title = title or key
        self.start_roles = list(start_roles)
        self._milestones: list[dict[str, Any]] = []
        self._nodes: list[dict[str, Any]] = []
        self._edges: list[dict[str, Any]] = []
        self._start: str | None = None
        self._step: dict[str, Any] | None = None
        self._last: str | None = None

    @contextmanager
    def milestone(self, key: str, title: str | None = None) -> Iterator[WorkflowBuilder]:
        self._milestones.append({"key": key, "title": title or key, "steps": []})
        yield self

    @contextmanager
    def step(self, key: str, title: str | None = None) -> Iterator[WorkflowBuilder]:
        if not self._milestones:
            self._milestones.append({"key": "main", "title": "Main", "steps": []})
        self._step = {"key": key, "title": title or key, "nodes": []}
        self._milestones[-1]["steps"].append(self._step)
        try:
            yield self
        finally:
            self._step = None

    def start(self, node_id: str) -> WorkflowBuilder:
        self._start = node_id
        return self

    def user_task(
        self,
        node_id: str,
        *,
        name: str | None = None,
        schema_type: str | None = None,
        signal: str | None = None,
        title: str | None = None,
        description: str | None = None,
        assign_to_role: str | None = None,
        assign_to_user: str | None = None,
        assign_to_group: str | None = None,
        assign_with: str | None = None,
        store_as: str | None = None,
        priority: str | None = None,
        due_in: str | Mapping[str, Any] | None = None,
        due_at: str | None = None,
        on_due: str | None = None,
        form: Sequence[Mapping[str, Any]] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        join: str | None = None,
        approval: Mapping[str, Any] | None = None,
        excludes: Sequence[str] | None = None,
        escalation: Sequence[Mapping[str, Any]] | None = None,
        notify: Mapping[str, bool] | None = None,
    ) -> WorkflowBuilder:
        """``approval`` and ``excludes`` as in the JSON format (``{"required": 2, "of": {"role": "approver"}}``,
        ``["starter"]``); ``due_in``: ``"P1D"``, or business time (:func:`business`); ``escalation``: the
        ladder's steps, e.g. ``[remind("PT4H"), reassign(business("P1D"), role="manager")]`` (:func:`remind`
        and friends); ``notify``: ``{"email": True}`` mails the assignee (``"candidates": True``: or the role's
        or group's members) links that decide the task as them (engine.tasks.email_actions)."""
        return self._node(
            {
                "id": node_id, "type": NodeType.USER_TASK.value, "name": name, "schemaType": schema_type,
                "signal": signal, "title": title, "description": description, "assignToRole": assign_to_role,
                "assignToUser": assign_to_user, "assignToGroup": assign_to_group, "assignWith": assign_with,
                "storeAs": store_as, "priority": priority, "dueIn": due_in, "dueAt": due_at, "onDue": on_due,
                "form": {"fields": [dict(f) for f in form]} if form is not None else None,
                "documents": [dict(d) for d in documents] if documents is not None else None, "join": join,
                "approval": dict(approval) if approval is not None else None,
                "excludes": list(excludes) if excludes is not None else None,
                "escalation": [dict(step) for step in escalation] if escalation is not None else None,
                "notify": dict(notify) if notify is not None else None,
            }
        )  # fmt: skip

    def action_approval(
        self,
        node_id: str,
        *,
        action: str,
        summary: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        arguments_from: str | None = None,
        arguments_schema: Mapping[str, Any] | None = None,
        arguments_schema_from: str | None = None,
        **user_task: Any,
    ) -> WorkflowBuilder:
        """A ``userTask.actionApproval`` (engine.tasks.action_approvals): a person approves, edits, rejects or
        answers ``action``; its arguments literal or ``arguments_from`` a data path, likewise the JSON Schema
        an edit must match. ``user_task``: every :meth:`user_task` option (assignment, ``store_as``, due…)."""
        config = {"action": action, "summary": summary, "arguments": arguments, "argumentsFrom": arguments_from,
                  "argumentsSchema": arguments_schema, "argumentsSchemaFrom": arguments_schema_from}  # fmt: skip
        self.user_task(node_id, schema_type=ACTION_APPROVAL_SCHEMA_TYPE, **user_task)
        self._nodes[-1]["config"] = {key: value for key, value in config.items() if value is not None}
        return self

    def system_task(
        self,
        node_id: str,
        node_type: str,
        config: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        store_as: str | None = None,
        retry: Mapping[str, Any] | None = None,
        join: str | None = None,
    ) -> WorkflowBuilder:
        return self._node(
            {"id": node_id, "type": node_type, "name": name, "config": dict(config or {}), "storeAs": store_as,
             "retry": dict(retry) if retry is not None else None, "join": join}
        )  # fmt: skip

    def edge(self, source: str, target: str, *, when: str | None = None) -> WorkflowBuilder:
        edge: dict[str, Any] = {"from": source, "to": target}
        if when is not None:
            edge["when"] = when
        self._edges.append(edge)
        return self

    def then(self, *node_ids: str) -> WorkflowBuilder:
        """Chain edges from the last node added through ``node_ids`` in order."""
        source = self._last
        for node_id in node_ids:
            if source is not None:
                self.edge(source, node_id)
            source = node_id
        return self

    def _node(self, doc: dict[str, Any]) -> WorkflowBuilder:
        node = {k: v for k, v in doc.items() if v is not None}
        self._nodes.append(node)
        if self._start is None:
            self._start = node["id"]
        if self._step is not None:
            self._step["nodes"].append(node["id"])
        self._last = node["id"]
        return self

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "key": self.key, "title": self.title, "start": self._start, "milestones": self._milestones,
            "nodes": self._nodes, "edges": self._edges,
        }  # fmt: skip
        if self.start_roles:
            doc["startRoles"] = self.start_roles
        return doc

    def build(self) -> WorkflowDefinition:
        """Parse the collected document (structural errors raise ``DefinitionError``)."""
        return parse_definition(self.to_json())


Duration = str | Mapping[str, Any]


def business(duration: str, calendar: str = "default") -> dict[str, Any]:
    """Business time in a named calendar, for ``due_in``, an escalation's ``after`` or a delay's ``duration``."""
    return {"duration": duration, "business": True, "calendar": calendar}


def remind(
    after: Duration, *, role: str | None = None, group: str | None = None, user: str | None = None
) -> dict[str, Any]:
    """An escalation step: email the assignee, or the candidates of an unassigned task — or, naming one,
    a role, a group or a user (a manager told of a task that waits), the task staying where it is."""
    to = {key: value for key, value in (("role", role), ("group", group), ("user", user)) if value is not None}
    return {"after": after, "action": "remind", **({"to": to} if to else {})}


def reassign(
    after: Duration, *, role: str | None = None, group: str | None = None, user: str | None = None
) -> dict[str, Any]:
    """An escalation step: hand the task to a role, a group or a user (name exactly one)."""
    to = {key: value for key, value in (("role", role), ("group", group), ("user", user)) if value is not None}
    return {"after": after, "action": "reassign", "to": to}


def complete(after: Duration, outcome: Mapping[str, Any]) -> dict[str, Any]:
    """An escalation step: complete the task with ``outcome`` (``{"decision": "rejected"}`` on an approval)."""
    return {"after": after, "action": "complete", "outcome": dict(outcome)}
