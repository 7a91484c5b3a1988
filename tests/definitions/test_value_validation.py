"""Deploy-time validation of the values inside a definition: templates, ``when`` conditions, form fields,
retry policies and ISO 8601 durations. Each test starts from docs/design.md §2's valid example and breaks one
thing (tests/definitions/validation_support.py); the structure's checks are in test_validation.py."""

from __future__ import annotations

import pytest

from engine.definitions.builder import WorkflowBuilder
from tests.definitions.validation_support import (
    Doc,
    assert_names,
    check,
    example,
    field_error,
    node_of,
    rejected,
    small,
)


@pytest.mark.parametrize(
    ("node_id", "key", "template", "field"),
    [
        ("approval", "title", "Approve {{ entityName ", "nodes.approval.title"),
        ("approval", "title", "Approve {{ entityName | nosuchfilter }}", "nodes.approval.title"),
        ("approval", "description", "{% if %}", "nodes.approval.description"),
        ("notify", "title", "Notify {{ amount +}}", "nodes.notify.title"),
        ("approval", "assignToRole", "{{ approverRole", "nodes.approval.assignToRole"),
    ],
)
def test_bad_template_in_title_or_description(node_id: str, key: str, template: str, field: str) -> None:
    doc = example()
    node_of(doc, node_id)[key] = template
    assert_names(rejected(doc), field, node_id, "does not parse")


def test_bad_template_in_config() -> None:
    doc = example()
    node_of(doc, "notify")["config"]["json"]["amount"] = "{{ expense.amount ) }}"
    assert_names(rejected(doc), "nodes.notify.config.json.amount", "notify", "does not parse")


def test_bad_template_in_a_config_list_from_the_builder() -> None:
    b = small()
    with b.step("mailing"):
        b.system_task("mail", "email", {"to": ["ok@example.com", "{{ startedBy.email"], "subject": "Hi"})
    b.edge("second", "mail")
    assert_names(rejected(b.build), "nodes.mail.config.to.1", "mail", "does not parse")


@pytest.mark.parametrize(
    "condition",
    [
        "approvalResult.decision ==",
        "approvalResult.decision == 'approved",
        "a b",
        "lenght(approvalResult.comment) > `0`",  # JMESPath itself only finds unknown functions when evaluating
        "starts_with(approvalResult.decision)",
    ],
)
def test_bad_when_condition(condition: str) -> None:
    doc = example()
    doc["edges"][2]["when"] = condition
    error = rejected(doc)
    problem = field_error(error, "edges.2.when")
    assert problem.code == "BAD_CONDITION"
    assert "from node 'approval'" in problem.message and "'approval'" in error.message


def test_bad_when_condition_from_the_builder() -> None:
    b = small()
    b.edge("first", "second", when="__import__('os').system('true')")
    assert_names(rejected(b.build), "edges.1.when", "first", "does not parse", "unknown function __import__()")


def test_form_field_of_unknown_type() -> None:
    doc = example()
    node_of(doc, "expense_form")["form"]["fields"][5]["type"] = "colour"
    assert_names(rejected(doc), "nodes.expense_form", "expense_form", "'urgent' has unknown type 'colour'")


@pytest.mark.parametrize(("field_index", "kind"), [(3, "dropdown"), (4, "multiselect")])
@pytest.mark.parametrize("options", ["missing", "empty"])
def test_choice_field_without_options(field_index: int, kind: str, options: str) -> None:
    doc = example()
    form_field = node_of(doc, "expense_form")["form"]["fields"][field_index]
    if options == "missing":
        del form_field["options"]
    else:
        form_field["options"] = []
    key = form_field["key"]
    assert_names(rejected(doc), "nodes.expense_form", "expense_form", f"{key!r} is a {kind}", "options")


def test_choice_field_without_options_from_the_builder() -> None:
    b = WorkflowBuilder("wf")
    with b.step("s"):
        b.user_task("pick", title="Pick", assign_to_role="clerk", form=[{"key": "c", "type": "dropdown", "label": "C"}])
    assert_names(rejected(b.build), "nodes.pick", "pick", "'c' is a dropdown")


@pytest.mark.parametrize(
    ("retry", "reason"),
    [
        ({"maxAttempts": 0}, "maxAttempts must be at least 1"),
        ({"initialInterval": "PT0S"}, "initialInterval must be positive"),
        ({"backoffCoefficient": 0.5}, "backoffCoefficient must be at least 1"),
        ({"backoffCoefficient": 0}, "backoffCoefficient must be at least 1"),
        ({"initialInterval": "PT10S", "maximumInterval": "PT5S"}, "maximumInterval must not be shorter"),
    ],
)
def test_invalid_retry_policy(retry: Doc, reason: str) -> None:
    doc = example()
    node_of(doc, "notify")["retry"] = retry
    assert_names(rejected(doc), "nodes.notify.retry", "notify", "invalid retry policy", reason)


def test_retry_policy_with_unknown_key_and_bad_duration() -> None:
    doc = example()
    node_of(doc, "notify")["retry"] = {"maxAttempts": 2, "initalInterval": "PT1S", "maximumInterval": "soon"}
    error = rejected(doc)
    assert_names(error, "nodes.notify.retry.initalInterval", "notify", "is not a known key")
    assert_names(error, "nodes.notify.retry.maximumInterval", "notify", "not an ISO 8601 duration")


def test_a_long_initial_interval_alone_is_a_valid_retry_policy() -> None:
    """Only ``initialInterval`` set, longer than the default maximum: the maximum follows it."""
    doc = example()
    node_of(doc, "notify")["retry"] = {"initialInterval": "PT10M"}
    retry = check(doc).node("notify").retry
    assert retry is not None and retry.maximum_interval >= retry.initial_interval


@pytest.mark.parametrize(
    ("due_in", "reason"),
    [("P2X", "not an ISO 8601 duration"), ("two days", "not an ISO 8601 duration"), ("P1M", "must be in days")],
)
def test_bad_iso_duration_in_due_in(due_in: str, reason: str) -> None:
    doc = example()
    node_of(doc, "expense_form")["dueIn"] = due_in
    assert_names(rejected(doc), "nodes.expense_form.dueIn", "expense_form", reason, repr(due_in))


def test_bad_due_in_from_the_builder() -> None:
    b = WorkflowBuilder("wf")
    with b.step("s"):
        b.user_task("late", title="Late", assign_to_role="clerk", due_in="tomorrow")
    assert_names(rejected(b.build), "nodes.late.dueIn", "late", "not an ISO 8601 duration")


# -- every problem at once -----------------------------------------------------------------------------
