"""Deploy-time validation: every problem is a ``DefinitionError`` whose message and field error name the node.

Most tests need no database: they parse (``parse_definition``) and validate (``validate_definition``)
against the default registry. Each starts from docs/design.md §2's example, which is valid, and breaks one
thing, so a test can only pass because of the problem it is about.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.catalog import default_registry
from engine.definitions.builder import WorkflowBuilder
from engine.definitions.model import WorkflowDefinition
from engine.definitions.parsing import parse_definition
from engine.definitions.registry import Assignment, NodeContext, Registry
from engine.definitions.validation import validate_definition
from engine.errors import DefinitionError, FieldError
from engine.storage.models import definitions
from engine.transitions.engine import Engine

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


def test_design_example_is_valid_and_round_trips() -> None:
    definition = check(example())
    assert [node.id for node in definition.nodes] == ["expense_form", "receipt", "approval", "notify", "mail"]
    assert parse_definition(definition.to_json()) == definition


def test_small_builder_workflow_is_valid() -> None:
    definition = check(small().build())
    assert definition.start == "first"
    assert [(e.source, e.target) for e in definition.edges] == [("first", "second")]


# -- one test per validation error ---------------------------------------------------------------------


def test_unknown_node_type() -> None:
    doc = example()
    node_of(doc, "notify")["type"] = "carrierPigeon"
    error = rejected(doc)
    assert_names(error, "nodes.notify.type", "notify", "unknown node type 'carrierPigeon'")


def test_unknown_node_type_from_the_builder() -> None:
    b = small()
    with b.step("extra"):
        b.system_task("pigeon", "carrierPigeon", {"to": "x"})
    b.edge("second", "pigeon")
    assert_names(rejected(b.build), "nodes.pigeon.type", "pigeon", "unknown node type 'carrierPigeon'")


def test_unknown_schema_type() -> None:
    b = WorkflowBuilder("wf")
    with b.step("s"):
        b.user_task("review", schema_type="userTask.telepathy", title="Review", assign_to_role="clerk")
    error = rejected(b.build)
    assert_names(error, "nodes.review.schemaType", "review", "unknown schemaType 'userTask.telepathy'")


def test_duplicate_node_ids() -> None:
    doc = example()
    doc["nodes"].append({"id": "approval", "type": "userTask", "title": "Again", "assignToRole": "approver"})
    error = rejected(doc)
    assert_names(error, "nodes.approval.id", "approval", "more than one node")
    assert field_error(error, "nodes.approval.id").code == "DUPLICATE"


def test_duplicate_node_ids_check_each_node_not_only_the_last() -> None:
    """With two nodes called ``a``, the first one's problems must not hide behind the second."""
    doc: Doc = {
        "key": "dup", "start": "a", "edges": [],
        "nodes": [{"id": "a", "type": "userTask", "schemaType": "userTask.nope"},
                  {"id": "a", "type": "userTask", "title": "fine"}],
    }  # fmt: skip
    error = rejected(doc)
    assert [fe.field for fe in error.field_errors] == ["nodes.a.id", "nodes.a.schemaType"]


def test_missing_start() -> None:
    doc = example()
    del doc["start"]
    error = rejected(doc)
    problem = field_error(error, "definition.start")
    assert problem.code == "REQUIRED"
    assert "start is required" in problem.message and "start is required" in error.message


def test_start_naming_an_unknown_node() -> None:
    b = small()
    b.start("nowhere")
    error = rejected(b.build)
    assert_names(error, "definition.start", "nowhere", "does not exist")


@pytest.mark.parametrize("end", ["from", "to"])
def test_edge_with_an_unknown_node(end: str) -> None:
    doc = example()
    doc["edges"].append({"from": "mail", "to": "ghost"} if end == "to" else {"from": "ghost", "to": "mail"})
    error = rejected(doc)
    problem = field_error(error, f"edges.4.{end}")
    assert problem.code == "UNKNOWN_NODE"
    assert "node 'ghost' does not exist" in problem.message and "'ghost'" in error.message


def test_edge_to_an_unknown_node_from_the_builder() -> None:
    b = small().edge("second", "ghost")
    assert_names(rejected(b.build), "edges.1.to", "ghost", "does not exist")


def test_unreachable_node() -> None:
    doc = example()
    doc["edges"] = [e for e in doc["edges"] if e["to"] != "mail"]
    error = rejected(doc)
    assert_names(error, "nodes.mail", "mail", "cannot be reached from start node 'expense_form'")
    assert field_error(error, "nodes.mail").code == "UNREACHABLE"


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


def test_unknown_node_key() -> None:
    doc = example()
    approval = node_of(doc, "approval")
    approval["assignToRol"] = approval.pop("assignToRole")
    error = rejected(doc)
    assert_names(error, "nodes.approval.assignToRol", "approval", "assignToRol is not a known key")
    assert field_error(error, "nodes.approval.assignToRol").code == "UNKNOWN_KEY"


def test_unknown_key_in_a_form_field() -> None:
    doc = example()
    node_of(doc, "expense_form")["form"]["fields"][0]["requird"] = True
    error = rejected(doc)
    assert_names(error, "nodes.expense_form.form.fields.amount.requird", "expense_form", "form field 'amount'")


def test_node_not_in_any_step() -> None:
    b = small()
    b.user_task("loose", title="Loose", assign_to_role="clerk")  # added outside every step
    b.edge("second", "loose")
    error = rejected(b.build)
    assert_names(error, "nodes.loose", "loose", "is not in any step")
    assert field_error(error, "nodes.loose").code == "NO_STEP"


def test_node_in_two_steps() -> None:
    doc = example()
    doc["milestones"][0]["steps"][0]["nodes"].append("approval")
    error = rejected(doc)
    assert_names(error, "nodes.approval", "approval", "in two steps", "'request'", "'decision'")


@pytest.mark.parametrize(
    "extra", [{"assignToUser": "bob"}, {"assignToGroup": "finance"}, {"assignWith": "requesterManager"}]
)
def test_more_than_one_assignment(extra: Doc) -> None:
    doc = example()
    node_of(doc, "approval").update(extra)
    assert_names(rejected(doc), "nodes.approval", "approval", "use only one of assignToRole")


class ManagerOf:
    name = "managerOf"

    async def assign(self, context: NodeContext) -> Assignment:
        return Assignment(user_id="carol")


def test_unknown_assign_with() -> None:
    doc = example()
    del node_of(doc, "approval")["assignToRole"]
    node_of(doc, "approval")["assignWith"] = "managerOf"
    assert_names(rejected(doc), "nodes.approval.assignWith", "approval", "unknown assignment executor 'managerOf'")

    registry = default_registry()
    registry.register_assigner(ManagerOf())
    assert check(doc, registry).node("approval").assign_with == "managerOf"


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


def test_several_problems_are_reported_at_once() -> None:
    doc = example()
    node_of(doc, "notify")["type"] = "carrierPigeon"
    node_of(doc, "approval")["title"] = "Approve {{ entityName "
    node_of(doc, "expense_form")["form"]["fields"][0]["type"] = "money"
    doc["edges"].append({"from": "mail", "to": "ghost"})
    doc["edges"][2]["when"] = "approvalResult.decision =="
    error = rejected(doc)
    fields = {fe.field for fe in error.field_errors}
    assert {"nodes.notify.type", "nodes.approval.title", "nodes.expense_form", "edges.4.to", "edges.2.when"} <= fields
    assert error.message.endswith(f"(and {len(error.field_errors) - 1} more)")


def test_several_structural_problems_are_reported_at_once() -> None:
    doc = example()
    node_of(doc, "approval")["assignToRol"] = "x"
    node_of(doc, "expense_form")["dueIn"] = "P2X"
    node_of(doc, "receipt")["priority"] = "whenever"
    del doc["start"]
    error = rejected(doc)
    assert [fe.field for fe in error.field_errors] == [
        "nodes.expense_form.dueIn",
        "nodes.receipt.priority",
        "nodes.approval.assignToRol",
        "definition.start",
    ]


# -- through the engine --------------------------------------------------------------------------------


async def test_engine_validate_and_deploy_reject_an_invalid_definition_and_store_nothing(engine: Engine) -> None:
    doc = example()
    node_of(doc, "mail")["type"] = "fax"
    with pytest.raises(DefinitionError, match="node 'mail'"):
        engine.validate(doc)
    with pytest.raises(DefinitionError) as info:
        await engine.deploy(doc, "dana")
    assert_names(info.value, "nodes.mail.type", "mail", "unknown node type 'fax'")

    b = small().edge("second", "ghost")
    with pytest.raises(DefinitionError, match="'ghost'"):
        await engine.deploy(b.to_json(), "dana")

    async with engine.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(definitions)) == 0
    deployed, created = await engine.deploy(example(), "dana")
    assert created and deployed.version == 1
