"""The ``approval`` and ``excludes`` keys: JSON and the builder say the same thing, and
deploy validation names the node and the field of every mistake, all at once."""

from __future__ import annotations

from typing import Any

import pytest

from engine.catalog import default_registry
from engine.definitions.approval import ApprovalLevel, ApprovalPolicy, Approvers
from engine.definitions.builder import WorkflowBuilder
from engine.definitions.parsing import parse_definition
from engine.definitions.validation import validate_definition
from engine.errors import DefinitionError

APPROVAL = "userTask.approval"


def one_node(**node: Any) -> dict[str, Any]:
    extra = {"id": "send", "type": "echo", "config": {"output": 1}}
    nodes = [{"id": "decide", "type": "userTask", "schemaType": APPROVAL, **node}, extra]
    return {"key": "policy", "start": "decide", "nodes": nodes, "edges": [{"from": "decide", "to": "send"}]}


def test_json_and_builder_agree_and_round_trip() -> None:
    quorum = {"required": 2, "of": {"role": "approver"}, "rejectWhen": "majority"}
    b = WorkflowBuilder("policy")
    b.user_task("decide", schema_type=APPROVAL, approval=quorum, excludes=["starter", "completedBy:send"])
    b.system_task("send", "echo", {"output": 1})
    b.edge("decide", "send")
    built = b.build()
    node = built.node("decide")
    assert node.approval == ApprovalPolicy((ApprovalLevel(Approvers(role="approver"), 2, "majority"),))
    assert node.excludes == ("starter", "completedBy:send")
    assert parse_definition(built.to_json()) == built
    validate_definition(built, default_registry())

    chain = one_node(approval={"chain": [{"role": "manager"}, {"group": "finance", "required": 2}]})
    parsed = parse_definition(chain)
    levels = parsed.node("decide").approval
    assert levels is not None and levels.chain
    assert [level.approvers for level in levels.levels] == [Approvers(role="manager"), Approvers(group="finance")]
    assert [level.required for level in levels.levels] == [1, 2]
    assert parse_definition(parsed.to_json()) == parsed

    named = parse_definition(one_node(approval={"required": 1, "of": {"users": ["bob", "dan"]}}))
    template = parse_definition(one_node(approval={"of": {"users": "{{ request.reviewers }}"}}))
    assert named.node("decide").approval == ApprovalPolicy((ApprovalLevel(Approvers(users=("bob", "dan"))),))
    assert template.node("decide").approval == ApprovalPolicy(
        (ApprovalLevel(Approvers(users_template="{{ request.reviewers }}")),)
    )


MISTAKES = {
    "required below one": (one_node(approval={"required": 0, "of": {"role": "a"}}), "nodes.decide.approval.required"),
    "more required than named": (one_node(approval={"required": 3, "of": {"users": ["a", "b"]}}),
                                 "nodes.decide.approval.required"),
    "an unknown rejectWhen": (one_node(approval={"of": {"role": "a"}, "rejectWhen": "some"}),
                              "nodes.decide.approval.rejectWhen"),
    "a rejectWhen below one": (one_node(approval={"of": {"role": "a"}, "rejectWhen": 0}),
                               "nodes.decide.approval.rejectWhen"),
    "of naming two kinds": (one_node(approval={"of": {"role": "a", "group": "b"}}), "nodes.decide.approval.of"),
    "of missing": (one_node(approval={"required": 1}), "nodes.decide.approval.of"),
    "an unknown key": (one_node(approval={"of": {"role": "a"}, "quorum": 2}), "nodes.decide.approval.quorum"),
    "an empty chain": (one_node(approval={"chain": []}), "nodes.decide.approval.chain"),
    "a chain level naming no one": (one_node(approval={"chain": [{"role": "m"}, {"required": 1}]}),
                                    "nodes.decide.approval.chain.1"),
    "approval on a form": (one_node(schemaType="userTask.form", approval={"of": {"role": "a"}}),
                           "nodes.decide.approval"),
    "approval beside assignToRole": (one_node(approval={"of": {"role": "a"}}, assignToRole="a"), "nodes.decide"),
    "an unknown excludes rule": (one_node(excludes=["friends"]), "nodes.decide.excludes.0"),
    "completedBy of no node": (one_node(excludes=["starter", "completedBy:nowhere"]), "nodes.decide.excludes.1"),
    "a users template that does not parse": (one_node(approval={"of": {"users": "{{ oops"}}), "nodes.decide.approval"),
}  # fmt: skip


@pytest.mark.parametrize(("document", "field"), MISTAKES.values(), ids=MISTAKES.keys())
def test_each_mistake_names_its_node_and_field(document: dict[str, Any], field: str) -> None:
    with pytest.raises(DefinitionError) as raised:
        validate_definition(parse_definition(document), default_registry())
    fields = [(error.field, error.message) for error in raised.value.field_errors]
    assert any(f == field and "'decide'" in message for f, message in fields), fields


def test_excludes_on_a_system_task_is_refused() -> None:
    document = one_node()
    document["nodes"][1]["excludes"] = ["starter"]
    with pytest.raises(DefinitionError) as raised:
        validate_definition(parse_definition(document), default_registry())
    assert [e.field for e in raised.value.field_errors] == ["nodes.send.excludes"]


def test_every_mistake_at_once() -> None:
    document = one_node(approval={"required": 0, "of": {"role": "a"}, "rejectWhen": "some", "quorum": 2})
    with pytest.raises(DefinitionError) as raised:
        parse_definition(document)
    assert len(raised.value.field_errors) == 3
