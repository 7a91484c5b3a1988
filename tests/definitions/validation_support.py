"""What the deploy-time validation tests share: docs/design.md §2's example (valid), the default registry,
and helpers that break one thing and read the error it gives."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from engine.catalog import default_registry
from engine.definitions.builder import WorkflowBuilder
from engine.definitions.model import WorkflowDefinition
from engine.definitions.parsing import parse_definition
from engine.definitions.registry import Registry
from engine.definitions.validation import validate_definition
from engine.errors import DefinitionError, FieldError

Doc = dict[str, Any]

DESIGN_EXAMPLE: Doc = {
    "key": "expense_approval",
    "title": "Expense approval",
    "milestones": [
        {"key": "submission", "title": "Submission",
         "steps": [{"key": "request", "title": "Request", "nodes": ["expense_form", "receipt"]}]},
        {"key": "review", "title": "Review",
         "steps": [{"key": "decision", "title": "Decision", "nodes": ["approval", "notify", "mail"]}]},
    ],
    "start": "expense_form",
    "nodes": [
        {"id": "expense_form", "type": "userTask", "schemaType": "userTask.form", "name": "Expense form",
         "title": "Submit expense for {{ entityName }}", "assignToRole": "requester", "storeAs": "expense",
         "priority": "normal", "dueIn": "P2D",
         "form": {"fields": [
             {"key": "amount", "type": "number", "label": "Amount", "required": True, "min": 0,
              "mask": "currency:EUR"},
             {"key": "description", "type": "text", "label": "Description", "multiline": True, "required": True},
             {"key": "spentOn", "type": "date", "label": "Date", "required": True},
             {"key": "category", "type": "dropdown", "label": "Category", "options": ["travel", "meals", "other"]},
             {"key": "tags", "type": "multiselect", "label": "Tags", "options": ["client", "internal"]},
             {"key": "urgent", "type": "checkbox", "label": "Urgent"}]}},
        {"id": "receipt", "type": "userTask", "schemaType": "userTask.documentUpload", "name": "Receipt",
         "title": "Upload the receipt", "assignToRole": "requester", "storeAs": "receipt",
         "documents": [{"key": "receipt", "label": "Receipt", "accept": ["application/pdf", "image/*"],
                        "minFiles": 1, "maxFiles": 3, "maxBytes": 10485760}]},
        {"id": "approval", "type": "userTask", "schemaType": "userTask.approval", "name": "Approval Decision",
         "title": "Approve {{ entityType }}: {{ entityName }}", "assignToRole": "approver",
         "storeAs": "approvalResult", "priority": "high"},
        {"id": "notify", "type": "http", "storeAs": "notifyResponse",
         "config": {"method": "POST", "url": "{{ settings.notifyUrl }}", "json": {"amount": "{{ expense.amount }}"}},
         "retry": {"maxAttempts": 3, "initialInterval": "PT1S", "backoffCoefficient": 2.0}},
        {"id": "mail", "type": "email",
         "config": {"to": ["{{ startedBy.email }}"], "subject": "Expense {{ approvalResult.decision }}",
                    "body": "..."}},
    ],
    "edges": [
        {"from": "expense_form", "to": "receipt"}, {"from": "receipt", "to": "approval"},
        {"from": "approval", "to": "notify", "when": "approvalResult.decision == 'approved'"},
        {"from": "approval", "to": "mail"},
    ],
}  # fmt: skip

REGISTRY = default_registry()


def example() -> Doc:
    return copy.deepcopy(DESIGN_EXAMPLE)


def node_of(doc: Doc, node_id: str) -> Doc:
    node: Doc = next(n for n in doc["nodes"] if n["id"] == node_id)
    return node


def check(document: Doc | WorkflowDefinition, registry: Registry = REGISTRY) -> WorkflowDefinition:
    definition = document if isinstance(document, WorkflowDefinition) else parse_definition(document)
    validate_definition(definition, registry)
    return definition


def rejected(document: Doc | WorkflowDefinition | Callable[[], WorkflowDefinition]) -> DefinitionError:
    """The ``DefinitionError`` that parsing (or building) and validating ``document`` raises."""
    with pytest.raises(DefinitionError) as info:
        check(document() if callable(document) else document)
    return info.value


def field_error(error: DefinitionError, field: str) -> FieldError:
    """The one field error at ``field``; fails with every field error shown if there is none."""
    matching = [fe for fe in error.field_errors if fe.field == field]
    assert len(matching) == 1, f"no single error at {field!r}: {error.field_errors}"
    return matching[0]


def assert_names(error: DefinitionError, field: str, node_id: str, *fragments: str) -> None:
    """The summary and the field error at ``field`` both name ``node_id`` and say what is wrong."""
    problem = field_error(error, field)
    assert f"'{node_id}'" in problem.message
    assert f"'{node_id}'" in error.message
    for fragment in fragments:
        assert fragment in problem.message


def small() -> WorkflowBuilder:
    """A valid two-node builder workflow; tests add one problem to it."""
    b = WorkflowBuilder("small", title="Small")
    with b.milestone("m", "M"), b.step("s", "S"):
        b.user_task("first", title="First", assign_to_role="clerk", store_as="first")
        b.user_task("second", title="Second", assign_to_role="clerk")
    b.edge("first", "second")
    return b


# -- the baselines are valid ---------------------------------------------------------------------------
