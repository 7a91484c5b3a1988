"""Versioned deploys on SQLite and PostgreSQL, and what ``start`` accepts."""

from __future__ import annotations

from typing import Any

import pytest

from engine.definitions.builder import WorkflowBuilder
from engine.definitions.model import WorkflowDefinition
from engine.errors import NotFoundError, ValidationError
from engine.state import InstanceStatus
from engine.storage.instances import DefinitionRepository
from engine.storage.tasks import TaskRepository
from engine.transitions.engine import Engine


def review_v1() -> dict[str, Any]:
    """Version 1: submit → review."""
    return {
        "key": "review",
        "title": "Review",
        "start": "submit",
        "milestones": [
            {"key": "m", "title": "M", "steps": [{"key": "s", "title": "S", "nodes": ["submit", "review"]}]}
        ],
        "nodes": [
            {
                "id": "submit",
                "type": "userTask",
                "title": "Submit",
                "assignToRole": "requester",
                "storeAs": "submission",
            },
            {"id": "review", "type": "userTask", "title": "Review v1", "assignToRole": "approver"},
        ],
        "edges": [{"from": "submit", "to": "review"}],
    }


def review_v2() -> dict[str, Any]:
    """Version 2: submit → check → review, and the review has a new title and role."""
    doc = review_v1()
    doc["milestones"][0]["steps"][0]["nodes"].insert(1, "check")
    doc["nodes"].insert(1, {"id": "check", "type": "userTask", "title": "Check", "assignToRole": "clerk"})
    doc["nodes"][2].update(title="Review v2", assignToRole="manager")
    doc["edges"] = [{"from": "submit", "to": "check"}, {"from": "check", "to": "review"}]
    return doc


async def open_tasks(engine: Engine, instance_id: str) -> list[tuple[str, str, str | None]]:
    async with engine.db.read() as session:
        tasks = await TaskRepository(session).find_by_instance(instance_id, open_only=True)
    return [(t.node_id, t.title, t.assigned_role) for t in tasks]


async def test_deploying_the_same_key_again_makes_the_next_version(engine: Engine) -> None:
    first, created_first = await engine.deploy(review_v1(), "dana")
    second, created_second = await engine.deploy(review_v2(), "dana")
    assert (first.version, created_first) == (1, True)
    assert (second.version, created_second) == (2, True)
    assert second.deployed_by == "dana" and second.key == "review"

    latest = await engine.definition("review")
    assert latest.version == 2 and latest.has_node("check")
    old = await engine.definition("review", 1)
    assert old.version == 1 and not old.has_node("check")
    with pytest.raises(NotFoundError, match="version 3"):
        await engine.definition("review", 3)


async def test_an_identical_document_deploys_nothing(engine: Engine) -> None:
    first, created = await engine.deploy(review_v1(), "dana")
    again, created_again = await engine.deploy(review_v1(), "carol")
    assert created and not created_again
    assert again == first  # the stored version, deployed by dana
    async with engine.db.read() as session:
        assert await DefinitionRepository(session).next_version("review") == 2


async def test_the_builder_and_the_json_of_one_definition_are_the_same_version(engine: Engine) -> None:
    b = WorkflowBuilder("review", title="Review")
    with b.milestone("m", "M"), b.step("s", "S"):
        b.user_task("submit", title="Submit", assign_to_role="requester", store_as="submission")
        b.user_task("review", title="Review v1", assign_to_role="approver")
    b.edge("submit", "review")
    built = b.build()
    assert isinstance(built, WorkflowDefinition)

    _, created = await engine.deploy(review_v1())
    _, created_from_builder = await engine.deploy(built)
    assert created and not created_from_builder


async def test_redeploying_an_older_document_after_a_newer_one_is_a_new_version(engine: Engine) -> None:
    await engine.deploy(review_v1())
    await engine.deploy(review_v2())
    deployed, created = await engine.deploy(review_v1())
    assert created and deployed.version == 3


async def test_a_running_instance_keeps_its_version_while_new_starts_use_the_latest(engine: Engine) -> None:
    await engine.deploy(review_v1(), "dana")
    old = await engine.start("review", {}, "alice")
    assert old.definition_version == 1

    await engine.deploy(review_v2(), "dana")
    new = await engine.start("review", {}, "alice")
    assert new.definition_version == 2

    old = await engine.send_signal(old.id, "submit", {"text": "old"}, "alice")
    assert await open_tasks(engine, old.id) == [("review", "Review v1", "approver")]  # v1's edge, not 'check'
    new = await engine.send_signal(new.id, "submit", {"text": "new"}, "alice")
    assert await open_tasks(engine, new.id) == [("check", "Check", "clerk")]

    old = await engine.send_signal(old.id, "review", {}, "bob")
    assert old.status is InstanceStatus.COMPLETED and old.definition_version == 1
    await engine.send_signal(new.id, "check", {}, "erin")
    assert await open_tasks(engine, new.id) == [("review", "Review v2", "manager")]


async def test_a_version_1_instance_keeps_running_on_a_fresh_engine(engine: Engine) -> None:
    """The version is read from the database, not from what one engine happens to have cached."""
    await engine.deploy(review_v1())
    old = await engine.start("review", {}, "alice")
    await engine.deploy(review_v2())
    fresh = Engine(engine.db, engine.registry, clock=engine.clock)
    await fresh.send_signal(old.id, "submit", {}, "alice")
    assert await open_tasks(fresh, old.id) == [("review", "Review v1", "approver")]


async def test_starting_an_unknown_key_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFoundError, match="no workflow definition 'nope'"):
        await engine.start("nope", {}, "alice")


@pytest.mark.parametrize("bad_input", [["a", "list"], "text", 5, True])
async def test_start_with_non_object_input_names_the_input_field(engine: Engine, bad_input: Any) -> None:
    await engine.deploy(review_v1())
    with pytest.raises(ValidationError) as info:
        await engine.start("review", bad_input, "alice")
    assert [fe.field for fe in info.value.field_errors] == ["input"]
    assert "object" in info.value.field_errors[0].message


async def test_start_without_input_starts_with_empty_data(engine: Engine) -> None:
    await engine.deploy(review_v1())
    instance = await engine.start("review", None, "alice")
    assert instance.data == {} and instance.status is InstanceStatus.WAITING_FOR_SIGNAL
