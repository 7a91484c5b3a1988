"""Deploy-time validation: every problem is a ``DefinitionError`` whose message and field error name the node.
This file: the definition's structure (node types, ids, edges, steps, assignments) and several problems at
once; templates, conditions, form fields, retry policies and durations are in test_value_validation.py.

Most tests need no database: they parse (``parse_definition``) and validate (``validate_definition``)
against the default registry. Each starts from docs/design.md §2's example, which is valid, and breaks one
thing, so a test can only pass because of the problem it is about.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from engine.catalog import default_registry
from engine.definitions.builder import WorkflowBuilder
from engine.definitions.parsing import parse_definition
from engine.definitions.registry import Assignment, NodeContext
from engine.errors import DefinitionError
from engine.storage.models import definitions
from engine.transitions.engine import Engine
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
