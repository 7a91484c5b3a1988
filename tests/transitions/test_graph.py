"""Token movement on SQLite and PostgreSQL: conditions, forks, joins, ends, loops, deadlocks, cancel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from engine.definitions.builder import WorkflowBuilder
from engine.definitions.model import WorkflowDefinition
from engine.state import InstanceStatus, Task, TaskEventKind, TaskStatus, WorkflowInstance
from engine.storage.instances import InstanceRepository
from engine.storage.task_events import TaskEventRepository
from engine.storage.tasks import TaskRepository
from engine.transitions.engine import Engine


def graph(
    key: str, nodes: Sequence[str], edges: Sequence[tuple[str, str, str | None]], joins: Sequence[str] = ()
) -> WorkflowDefinition:
    """A workflow of user tasks (each stores its payload under its own id), one step per node."""
    b = WorkflowBuilder(key)
    with b.milestone("main"):
        for node_id in nodes:
            with b.step(f"step_{node_id}"):
                b.user_task(
                    node_id,
                    title=f"{node_id} for {{{{ entityName }}}}",
                    assign_to_role="clerk",
                    store_as=node_id,
                    join="all" if node_id in joins else None,
                )
    for source, target, when in edges:
        b.edge(source, target, when=when)
    return b.build()


async def tasks_of(engine: Engine, instance_id: str) -> list[Task]:
    async with engine.db.read() as session:
        return await TaskRepository(session).find_by_instance(instance_id)


async def open_nodes(engine: Engine, instance_id: str) -> list[str]:
    return sorted(t.node_id for t in await tasks_of(engine, instance_id) if t.status.is_open)


async def stored(engine: Engine, instance_id: str) -> WorkflowInstance:
    async with engine.db.read() as session:
        instance = await InstanceRepository(session).get(instance_id)
    assert instance is not None
    return instance


async def start(engine: Engine, definition: WorkflowDefinition, data: dict[str, Any] | None = None) -> WorkflowInstance:
    await engine.deploy(definition)
    return await engine.start(definition.key, {"entityName": "E-1", **(data or {})}, "alice")


# -- conditions ----------------------------------------------------------------------------------------

APPROVAL_ROUTES = graph(
    "routes",
    ["approval", "pay", "reject"],
    [
        ("approval", "pay", "approval.decision == 'approved'"),
        ("approval", "reject", "approval.decision == 'rejected'"),
    ],
)


@pytest.mark.parametrize(("decision", "taken"), [("approved", "pay"), ("rejected", "reject")])
async def test_when_condition_on_a_stored_payload_routes_the_token(engine: Engine, decision: str, taken: str) -> None:
    instance = await start(engine, APPROVAL_ROUTES)
    instance = await engine.send_signal(instance.id, "approval", {"decision": decision}, "bob")
    assert instance.status is InstanceStatus.WAITING_FOR_SIGNAL
    assert await open_nodes(engine, instance.id) == [taken]
    assert [t.node_id for t in await tasks_of(engine, instance.id)] == ["approval", taken]
    assert [t.node_id for t in instance.tokens] == [taken]


AMOUNT_ROUTES = graph(
    "amounts",
    ["expense", "director", "payout"],
    [("expense", "director", "expense.amount > `1000`"), ("expense", "payout", "expense.amount <= `1000`")],
)


@pytest.mark.parametrize(("amount", "taken"), [(1500, "director"), (1000, "payout"), (0, "payout")])
async def test_numeric_condition_with_a_backtick_literal(engine: Engine, amount: int, taken: str) -> None:
    instance = await start(engine, AMOUNT_ROUTES)
    instance = await engine.send_signal(instance.id, "expense", {"amount": amount}, "alice")
    assert await open_nodes(engine, instance.id) == [taken]
    assert instance.data["expense"] == {"amount": amount}


async def test_a_condition_that_cannot_compare_its_data_is_false_not_a_crash(engine: Engine) -> None:
    """A form that submitted the amount as text: ``"1500" > `1000``` fails inside jmespath."""
    instance = await start(engine, AMOUNT_ROUTES)
    instance = await engine.send_signal(instance.id, "expense", {"amount": "1500"}, "alice")
    assert instance.status is InstanceStatus.COMPLETED
    assert await open_nodes(engine, instance.id) == []


async def test_conditions_see_the_start_input_and_starter(engine: Engine) -> None:
    definition = graph(
        "inputs",
        ["first", "vip", "normal"],
        [("first", "vip", "customer.tier == 'gold' && startedBy.id == 'alice'"), ("first", "normal", "!customer")],
    )
    instance = await start(engine, definition, {"customer": {"tier": "gold"}})
    instance = await engine.send_signal(instance.id, "first", {}, "bob")
    assert await open_nodes(engine, instance.id) == ["vip"]


async def test_when_every_outgoing_condition_fails_the_token_ends_and_the_instance_completes(engine: Engine) -> None:
    instance = await start(engine, APPROVAL_ROUTES)
    instance = await engine.send_signal(instance.id, "approval", {"decision": "maybe"}, "bob")
    assert instance.status is InstanceStatus.COMPLETED
    assert instance.tokens == () and instance.completed_at is not None
    assert [t.node_id for t in await tasks_of(engine, instance.id)] == ["approval"]
    assert await stored(engine, instance.id) == instance


# -- fork and join -------------------------------------------------------------------------------------

FORK = graph("fork", ["split", "legal", "finance"], [("split", "legal", None), ("split", "finance", None)])


async def test_several_matching_edges_fork_and_the_instance_waits_for_every_branch(engine: Engine) -> None:
    instance = await start(engine, FORK)
    instance = await engine.send_signal(instance.id, "split", {}, "alice")
    assert await open_nodes(engine, instance.id) == ["finance", "legal"]
    assert sorted(t.node_id for t in instance.tokens) == ["finance", "legal"]
    assert len({t.id for t in instance.tokens}) == 2
    assert instance.status is InstanceStatus.WAITING_FOR_SIGNAL

    instance = await engine.send_signal(instance.id, "legal", {"ok": True}, "bob")
    assert instance.status is InstanceStatus.WAITING_FOR_SIGNAL
    assert await open_nodes(engine, instance.id) == ["finance"]

    instance = await engine.send_signal(instance.id, "finance", {"ok": True}, "erin")
    assert instance.status is InstanceStatus.COMPLETED  # no token left
    assert instance.tokens == ()
    assert instance.data["legal"] == {"ok": True} and instance.data["finance"] == {"ok": True}


async def test_a_fork_takes_only_the_edges_whose_conditions_hold(engine: Engine) -> None:
    definition = graph(
        "partial_fork",
        ["split", "a", "b", "c"],
        [("split", "a", "split.a"), ("split", "b", "split.b"), ("split", "c", None)],
    )
    instance = await start(engine, definition)
    await engine.send_signal(instance.id, "split", {"a": True, "b": False}, "alice")
    assert await open_nodes(engine, instance.id) == ["a", "c"]


JOIN = graph(
    "join",
    ["split", "legal", "finance", "sign"],
    [("split", "legal", None), ("split", "finance", None), ("legal", "sign", None), ("finance", "sign", None)],
    joins=["sign"],
)


@pytest.mark.parametrize("order", [("legal", "finance"), ("finance", "legal")])
async def test_join_all_creates_its_task_once_after_every_branch(engine: Engine, order: tuple[str, str]) -> None:
    instance = await start(engine, JOIN)
    await engine.send_signal(instance.id, "split", {}, "alice")

    first, second = order
    instance = await engine.send_signal(instance.id, first, {}, "bob")
    assert await open_nodes(engine, instance.id) == [second]  # the join waits; no task yet
    assert instance.status is InstanceStatus.WAITING_FOR_SIGNAL
    parked = [t for t in instance.tokens if t.node_id == "sign"]
    assert len(parked) == 1 and parked[0].task_id is None and parked[0].arrived_from == first

    instance = await engine.send_signal(instance.id, second, {}, "bob")
    tasks = await tasks_of(engine, instance.id)
    assert [t.node_id for t in tasks].count("sign") == 1
    assert await open_nodes(engine, instance.id) == ["sign"]
    [token] = instance.tokens
    assert token.node_id == "sign" and token.task_id is not None

    instance = await engine.send_signal(instance.id, "sign", {"signed": True}, "carol")
    assert instance.status is InstanceStatus.COMPLETED
    assert [t.node_id for t in await tasks_of(engine, instance.id)].count("sign") == 1
    async with engine.db.read() as session:
        events = await TaskEventRepository(session).for_instance(instance.id)
    created = [e for e in events if e.kind is TaskEventKind.CREATED]
    assert len(created) == 4


async def test_a_join_waiting_for_a_branch_that_was_never_taken_fails_the_instance(engine: Engine) -> None:
    definition = graph(
        "deadlock",
        ["split", "legal", "finance", "sign"],
        [
            ("split", "legal", "split.needsLegal"),
            ("split", "finance", None),
            ("legal", "sign", None),
            ("finance", "sign", None),
        ],
        joins=["sign"],
    )
    instance = await start(engine, definition)
    instance = await engine.send_signal(instance.id, "split", {"needsLegal": False}, "alice")
    assert await open_nodes(engine, instance.id) == ["finance"]
    assert instance.status is InstanceStatus.WAITING_FOR_SIGNAL

    instance = await engine.send_signal(instance.id, "finance", {}, "erin")
    assert instance.status is InstanceStatus.FAILED
    assert instance.error is not None and "sign" in instance.error and "never complete" in instance.error
    assert instance.completed_at is not None
    assert "sign" not in [t.node_id for t in await tasks_of(engine, instance.id)]
    assert await stored(engine, instance.id) == instance


# -- loops ---------------------------------------------------------------------------------------------

LOOP = graph(
    "loop",
    ["draft", "review", "publish"],
    # Parenthesised: JMESPath reads ``!review.again`` as ``(!review).again``.
    [("draft", "review", None), ("review", "draft", "review.again"), ("review", "publish", "!(review.again)")],
)


async def test_a_loop_back_to_an_earlier_node_creates_a_new_task_with_a_fresh_token(engine: Engine) -> None:
    instance = await start(engine, LOOP)
    first_token = instance.tokens[0]
    await engine.send_signal(instance.id, "draft", {"text": "v1"}, "alice")
    instance = await engine.send_signal(instance.id, "review", {"again": True}, "bob")
    assert await open_nodes(engine, instance.id) == ["draft"]
    [second_token] = instance.tokens
    assert second_token.node_id == "draft" and second_token.id != first_token.id

    drafts = [t for t in await tasks_of(engine, instance.id) if t.node_id == "draft"]
    assert len(drafts) == 2 and drafts[0].id != drafts[1].id
    assert drafts[0].status is TaskStatus.COMPLETED and drafts[1].status is TaskStatus.PENDING
    assert drafts[0].token_id == first_token.id and drafts[1].token_id == second_token.id
    assert drafts[0].step_instance_id == drafts[1].step_instance_id  # the same step, visited again

    instance = await engine.send_signal(instance.id, "draft", {"text": "v2"}, "alice")
    instance = await engine.send_signal(instance.id, "review", {"again": False}, "bob")
    assert instance.data["draft"] == {"text": "v2"}
    assert await open_nodes(engine, instance.id) == ["publish"]
    instance = await engine.send_signal(instance.id, "publish", {}, "carol")
    assert instance.status is InstanceStatus.COMPLETED
    assert [t.node_id for t in await tasks_of(engine, instance.id)] == [
        "draft", "review", "draft", "review", "publish",
    ]  # fmt: skip


# -- cancel --------------------------------------------------------------------------------------------


async def test_cancel_with_a_fork_cancels_every_open_task(engine: Engine) -> None:
    definition = graph(
        "cancel_fork",
        ["split", "legal", "finance", "hr"],
        [("split", "legal", None), ("split", "finance", None), ("split", "hr", None)],
    )
    instance = await start(engine, definition)
    await engine.send_signal(instance.id, "split", {}, "alice")
    await engine.send_signal(instance.id, "hr", {}, "dana")
    cancelled = await engine.cancel(instance.id, "carol", "withdrawn")
    assert cancelled.status is InstanceStatus.CANCELLED and cancelled.error == "withdrawn"
    assert cancelled.tokens == ()

    statuses = {t.node_id: t.status for t in await tasks_of(engine, instance.id)}
    assert statuses == {
        "split": TaskStatus.COMPLETED,
        "hr": TaskStatus.COMPLETED,
        "legal": TaskStatus.CANCELLED,
        "finance": TaskStatus.CANCELLED,
    }
    async with engine.db.read() as session:
        events = await TaskEventRepository(session).for_instance(instance.id)
    cancel_events = [e for e in events if e.kind is TaskEventKind.CANCELLED]
    assert len(cancel_events) == 2 and {e.actor_id for e in cancel_events} == {"carol"}
    assert await stored(engine, instance.id) == cancelled
