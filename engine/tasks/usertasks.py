"""The built-in user-task executors: ``userTask.form``, ``userTask.approval``, ``userTask.documentUpload``.

Each renders the node's title and description over the instance data and assigns the task as the
node says; they differ in what a valid node looks like and in what the API shows for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.definitions.model import (
    APPROVAL_SCHEMA_TYPE,
    DOCUMENT_UPLOAD_SCHEMA_TYPE,
    FIELD_TYPES,
    FIELD_TYPES_WITH_OPTIONS,
    FORM_SCHEMA_TYPE,
    Form,
    Node,
)
from engine.definitions.registry import Assignment, NodeContext, Registry, UserTaskConfig
from engine.definitions.templates import render_text


def static_assignment(node: Node, variables: Mapping[str, Any]) -> Assignment:
    """The node's assignee; templates are allowed (``assignToUser: "{{ startedBy.id }}"``)."""
    return Assignment(
        role=render_text(node.assign_to_role, variables) or None,
        user_id=render_text(node.assign_to_user, variables) or None,
        group=render_text(node.assign_to_group, variables) or None,
    )


def validate_form(form: Form | None) -> list[str]:
    problems: list[str] = []
    if form is None:
        return problems
    seen: set[str] = set()
    for field in form.fields:
        if field.key in seen:
            problems.append(f"form field {field.key!r} is defined twice")
        seen.add(field.key)
        if field.type not in FIELD_TYPES:
            allowed = ", ".join(sorted(FIELD_TYPES))
            problems.append(f"form field {field.key!r} has unknown type {field.type!r} (known: {allowed})")
        if field.type in FIELD_TYPES_WITH_OPTIONS and not field.options:
            problems.append(f"form field {field.key!r} is a {field.type} and needs a non-empty 'options' list")
        if field.min is not None and field.max is not None and field.min > field.max:
            problems.append(f"form field {field.key!r} has min greater than max")
    return problems


@dataclass(frozen=True)
class _TemplatedUserTask:
    schema_type: str
    name: str
    task_type: str

    def validate(self, node: Node) -> list[str]:
        return validate_form(node.form)

    async def configure(self, context: NodeContext) -> UserTaskConfig:
        node = context.node
        return UserTaskConfig(
            title=render_text(node.title, context.variables) or node.display_name,
            description=render_text(node.description, context.variables) or None,
            assignment=static_assignment(node, context.variables),
            priority=node.priority,
            input={},
        )


@dataclass(frozen=True)
class DocumentUploadTask(_TemplatedUserTask):
    def validate(self, node: Node) -> list[str]:
        problems = validate_form(node.form)
        if not node.documents:
            problems.append("a document upload task needs at least one entry in 'documents'")
        seen: set[str] = set()
        for requirement in node.documents:
            if requirement.key in seen:
                problems.append(f"document requirement {requirement.key!r} is defined twice")
            seen.add(requirement.key)
            if requirement.min_files < 0 or (
                requirement.max_files is not None and requirement.max_files < max(requirement.min_files, 1)
            ):
                problems.append(f"document requirement {requirement.key!r} has inconsistent minFiles/maxFiles")
            if requirement.max_bytes is not None and requirement.max_bytes <= 0:
                problems.append(f"document requirement {requirement.key!r} needs a positive maxBytes")
        return problems


FORM_TASK = _TemplatedUserTask(FORM_SCHEMA_TYPE, "Form", "FORM")
APPROVAL_TASK = _TemplatedUserTask(APPROVAL_SCHEMA_TYPE, "Approval", "APPROVAL")
DOCUMENT_UPLOAD_TASK = DocumentUploadTask(DOCUMENT_UPLOAD_SCHEMA_TYPE, "Document upload", "DOCUMENT_UPLOAD")


def register_builtin_user_tasks(registry: Registry) -> None:
    for executor in (FORM_TASK, APPROVAL_TASK, DOCUMENT_UPLOAD_TASK):
        registry.register_user_task(executor)
