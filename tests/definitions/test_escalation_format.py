"""The escalation ladder's format: JSON and the builder give the same definition, it round-trips, and
deploy validation names the node (and the step) for every mistake."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from engine.catalog import default_registry
from engine.definitions.builder import WorkflowBuilder, business, complete, reassign, remind
from engine.definitions.durations import BusinessDuration
from engine.definitions.escalations import EscalationAction, EscalationTarget
from engine.definitions.parsing import parse_definition
from engine.definitions.validation import validate_definition
from engine.errors import DefinitionError

LADDER_JSON: list[dict[str, Any]] = [
    {"after": "PT4H", "action": "remind"},
    {"after": {"duration": "P1D", "business": True, "calendar": "default"}, "action": "reassign",
     "to": {"role": "manager"}},
    {"after": "P2D", "action": "complete", "outcome": {"decision": "rejected", "comment": "timed out"}},
]  # fmt: skip


def document(ladder: Any, schema_type: str = "userTask.approval", **node: Any) -> dict[str, Any]:
    review = {"id": "review", "type": "userTask", "schemaType": schema_type, "assignToRole": "approver",
              "escalation": ladder, **node}  # fmt: skip
    return {"key": "laddered", "start": "review", "nodes": [review]}


def test_json_and_builder_agree_and_round_trip() -> None:
    b = WorkflowBuilder("laddered")
    b.user_task("review", schema_type="userTask.approval", assign_to_role="approver", escalation=[
        remind("PT4H"), reassign(business("P1D"), role="manager"),
        complete("P2D", {"decision": "rejected", "comment": "timed out"}),
    ])  # fmt: skip
    built = b.build()
    parsed = parse_definition(document(LADDER_JSON))

    assert built.node("review") == parsed.node("review")
    assert parse_definition(parsed.to_json()) == parsed
    first, second, third = parsed.node("review").escalation
    assert (first.after, first.action) == (timedelta(hours=4), EscalationAction.REMIND)
    assert second.after == BusinessDuration(timedelta(days=1)) and second.to == EscalationTarget(role="manager")
    assert third.outcome == {"decision": "rejected", "comment": "timed out"}
    validate_definition(parsed, default_registry())


FORM = {"fields": [{"key": "note", "type": "text", "label": "Note", "required": True}]}


@pytest.mark.parametrize(
    ("ladder", "node", "field", "words"),
    [
        ({"after": "PT1H"}, {}, "nodes.review.escalation", "must be a list"),
        ([{"action": "remind"}], {}, "nodes.review.escalation.0.after", "after is required"),
        ([{"after": "soon", "action": "remind"}], {}, "nodes.review.escalation.0.after", "ISO 8601"),
        ([{"after": "P1M", "action": "remind"}], {}, "nodes.review.escalation.0.after", "days, hours"),
        ([{"after": "PT1H", "action": "shout"}], {}, "nodes.review.escalation.0.action", "remind, reassign"),
        ([{"after": "PT1H", "action": "reassign"}], {}, "nodes.review.escalation.0.to", "{'role'"),
        ([{"after": "PT1H", "action": "reassign", "to": {"role": "a", "user": "b"}}], {},
         "nodes.review.escalation.0.to", "{'role'"),
        ([{"after": "PT1H", "action": "complete", "to": {"role": "a"}, "outcome": {"decision": "approved"}}], {},
         "nodes.review.escalation.0.to", "only for a reassign or remind"),
        ([{"after": "PT1H", "action": "remind", "to": {"team": "a"}}], {}, "nodes.review.escalation.0.to", "{'role'"),
        ([{"after": "PT1H", "action": "complete"}], {}, "nodes.review.escalation.0.outcome", "required"),
        ([{"after": "PT1H", "action": "remind", "when": "x"}], {}, "nodes.review.escalation.0.when", "not a known"),
        ([remind("PT1H"), {"after": "PT2H", "action": "complete", "outcome": {"decision": "maybe"}}], {},
         "nodes.review.escalation.1.outcome", "'approved' or 'rejected'"),
        ([complete("PT1H", {"note": 3})], {"schemaType": "userTask.form", "form": FORM},
         "nodes.review.escalation.0.outcome", "not a valid submission"),
    ],
)  # fmt: skip
def test_each_mistake_names_the_node_and_the_step(ladder: Any, node: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(DefinitionError) as failure:
        validate_definition(parse_definition(document(ladder, **node)), default_registry())

    [error] = failure.value.field_errors
    assert error.field == field and "node 'review'" in error.message and words in error.message, error


def test_escalation_is_only_for_user_tasks() -> None:
    doc = {"key": "system", "start": "call", "nodes": [
        {"id": "call", "type": "echo", "config": {"output": {}}, "escalation": [{"after": "PT1H", "action": "remind"}]},
    ]}  # fmt: skip

    with pytest.raises(DefinitionError) as failure:
        validate_definition(parse_definition(doc), default_registry())

    [error] = failure.value.field_errors
    assert error.field == "nodes.call.escalation" and "only for user tasks" in error.message
