"""What a transition's templates and conditions see, and when a transition must read the starter
for them (``startedBy`` beyond its id)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from engine.definitions.model import WorkflowDefinition
from engine.definitions.registry import Registry, default_schema_type
from engine.state import User
from engine.tasks.usertasks import APPROVAL_TASK, DOCUMENT_UPLOAD_TASK, FORM_TASK

# ``startedBy`` other than as ``startedBy.id`` (which needs no lookup: it is the instance's started_by).
_STARTER_DETAILS = re.compile(r"startedBy(?!\.id\b)")
# JMESPath that can reach every variable without naming it: ``@``, wildcards, escaped identifiers.
_ANY_VARIABLE = re.compile(r"[@*\\]")
_TEMPLATED_USER_TASKS = (FORM_TASK, APPROVAL_TASK, DOCUMENT_UPLOAD_TASK)


def template_variables(
    data: Mapping[str, Any],
    started_by: str,
    starter: User | None,
    settings: Mapping[str, Any],
    secrets: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """What templates and conditions see: the instance data, ``startedBy`` and ``settings``, plus
    ``secrets`` only where a system task's config is rendered for a call (never for stored text)."""
    variables = {**data, "startedBy": starter.to_template() if starter else {"id": started_by},
                 "settings": dict(settings)}  # fmt: skip
    if secrets is not None:
        variables["secrets"] = dict(secrets)
    return variables


def reads_starter_details(definition: WorkflowDefinition) -> bool:
    """Whether a transition of ``definition`` may need the starter's directory entry (name, email,
    roles, groups), not just ``startedBy.id``: a template or condition that says ``startedBy``
    otherwise, a condition over all the data, or an ``assignWith`` assigner (code that may read it).
    Conservative; a definition can only over-report. The executors are checked by :func:`needs_starter`."""
    if _STARTER_DETAILS.search(json.dumps(definition.to_json())):
        return True
    if any(edge.when is not None and _ANY_VARIABLE.search(edge.when) for edge in definition.edges):
        return True
    return any(node.assign_with is not None for node in definition.nodes)


def needs_starter(definition: WorkflowDefinition, registry: Registry, reads_details: bool) -> bool:
    """Load the starter for this transition? Yes if ``reads_details`` (:func:`reads_starter_details`),
    or if a user task runs an executor other than the built-in ones (which only render the node's
    templates): its code may read any variable."""
    if reads_details:
        return True
    return any(
        registry.user_tasks.get(node.schema_type or default_schema_type(node)) not in _TEMPLATED_USER_TASKS
        for node in definition.nodes
        if node.is_user_task
    )
