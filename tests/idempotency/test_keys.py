"""engine.idempotency on its own, on SQLite and PostgreSQL: each engine write a key guards (a start, a
transition, a deploy) is answered from the stored row when repeated, decoded into the same dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import MappingProxyType

import pytest
from sqlalchemy import func, select

from engine.errors import IdempotencyKeyReusedError
from engine.idempotency import IdempotentRequest
from engine.state import InstanceStatus, Token, WorkflowInstance
from engine.storage.idempotency import decode_result, encode_result
from engine.storage.models import idempotency_keys, instances
from engine.transitions.engine import Engine
from engine.webhooks.model import Webhook, WebhookFilter
from tests.transitions.test_engine import approval_workflow, tasks_of

INPUT = {"entityType": "Invoice", "entityName": "INV-1", "$": "not a tag", "v": [1, {"$": 2}]}


async def count(engine: Engine, table: object) -> int:
    async with engine.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)  # type: ignore[arg-type]


def request(key: str, operation: str, asked: object, user: str = "alice") -> IdempotentRequest:
    return IdempotentRequest.of(user, key, operation, asked)


async def test_a_repeated_start_and_signal_return_the_stored_results(engine: Engine) -> None:
    await engine.deploy(approval_workflow().build())
    keys = engine.idempotency
    start = request("start-1", "start", INPUT)

    started = await keys.run(start, lambda: engine.start("approval", INPUT, "alice"))
    again = await keys.run(start, lambda: engine.start("approval", INPUT, "alice"))

    assert again == started, "the same instance, as the first start left it"
    assert await count(engine, instances) == 1
    signal = request("signal-1", "signal", {"decision": "approved"}, user="bob")
    signalled = await keys.run(signal, lambda: engine.send_signal(started.id, "approvalDecision", {}, "bob"))
    repeat = await keys.run(signal, lambda: engine.send_signal(started.id, "approvalDecision", {}, "bob"))
    assert repeat == signalled
    assert [t.node_id for t in await tasks_of(engine, started.id)] == ["approvalDecision", "archive"]
    assert await count(engine, idempotency_keys) == 2


async def test_a_key_with_other_input_is_refused_and_writes_nothing(engine: Engine) -> None:
    await engine.deploy(approval_workflow().build())
    keys = engine.idempotency
    await keys.run(request("k", "start", INPUT), lambda: engine.start("approval", INPUT, "alice"))

    other = {**INPUT, "entityName": "INV-2"}
    try:
        await keys.run(request("k", "start", other), lambda: engine.start("approval", other, "alice"))
    except IdempotencyKeyReusedError as error:
        assert error.code == "IDEMPOTENCY_KEY_REUSED"
    else:
        raise AssertionError("the key was reused with other input")
    assert await count(engine, instances) == 1


async def test_a_repeated_deploy_is_answered_from_its_key(engine: Engine) -> None:
    keys = engine.idempotency
    document = approval_workflow().build()
    first = await keys.run(request("d", "deploy", "v1"), lambda: engine.deploy(document, "dana"))
    second = await keys.run(request("d", "deploy", "v1"), lambda: engine.deploy(document, "dana"))
    assert first == second and first[1] is True, "the repeat says created, as the first did"


def test_results_round_trip_through_their_json() -> None:
    value = ({"a": (1, "x"), "$": {"v": None}}, [1.5, True, None])
    assert decode_result(encode_result(value)) == value


def test_an_instance_round_trips_and_an_unknown_dataclass_is_refused() -> None:
    now = datetime(2026, 1, 5, 9, tzinfo=UTC)
    instance = WorkflowInstance(
        id="i-1", definition_key="approval", definition_version=2, status=InstanceStatus.RUNNING,
        data={"amount": 12.5, "items": [1, {"$": "dict"}], "seen": (now,)}, started_by="alice",
        tokens=(Token(id="t-1", node_id="approvalDecision", task_id="task-1"),), started_at=now, updated_at=now,
        revision=3,
    )  # fmt: skip
    assert decode_result(encode_result((None, instance))) == (None, instance)
    # Other mappings are stored as dicts, as they always were.
    assert decode_result(encode_result(MappingProxyType({"a": 1}))) == {"a": 1}

    @dataclass(frozen=True)
    class Other:
        id: str

    with pytest.raises(TypeError):
        encode_result(Other("x"))


def test_fields_at_their_defaults_are_left_out_of_the_row_and_filled_in_again() -> None:
    now = datetime(2026, 1, 5, 9, tzinfo=UTC)
    fresh = Webhook(id="w-1", url="https://hooks.example.com/in", events=(), filter=WebhookFilter(), enabled=True,
                    created_by="dana", created_at=now, updated_at=now, secret="whsec_x")  # fmt: skip
    moved = replace(fresh, cursor=41, previous_secret="whsec_old", previous_secret_until=now)
    stored, stored_moved = encode_result(fresh)["v"], encode_result(moved)["v"]
    assert {"cursor", "previous_secret", "previous_secret_until"}.isdisjoint(stored)
    assert stored_moved["cursor"] == 41 and stored_moved["previous_secret"] == "whsec_old"
    assert stored["filter"] == {"$": "WebhookFilter", "v": {}}, "a filter with every field unset"
    assert decode_result(encode_result(fresh)) == fresh and decode_result(encode_result(moved)) == moved
