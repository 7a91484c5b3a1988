"""Stored JSON reads back as ``json.loads`` reads it, though orjson reads most of it (``read_json``)."""

from __future__ import annotations

import json
import math
import random
from typing import Any

from engine.storage.database import Database, read_json
from engine.storage.instances import InstanceRepository
from engine.storage.tasks import TaskRepository
from tests.storage.test_repositories import a_task, an_instance, new_step

TRICKY = [
    "{}",
    "null",
    '{"decision": "approved", "comment": "ok"}',
    str(2**64),  # one past orjson's integers: it would read a float
    str(-(2**63) - 1),
    "123456789012345678901234567890",
    '{"invoice": "1234567890123456789012", "n": 18446744073709551615}',
    "[0.1, 1e-300, 5e-324, 1.7976931348623157e308, -0.0, 1E5, 12345678901234567.5]",
    "1e400",  # orjson refuses what json.loads reads as infinity
    '{"x": NaN, "y": -Infinity}',
    '"\\ud800 lone surrogate"',
    '{"a": 1, "a": 2}',
    '{"ünïcødé": ["\\u00e9", "é", "\\n\\t\\"", "𝄞"]}',
]


def same(a: Any, b: Any, ordered: bool = True) -> bool:
    """Equal, with the same types throughout (1 is not 1.0 here), NaN equal to NaN and -0.0 not 0.0;
    objects' keys in the same order unless not ``ordered`` (PostgreSQL's jsonb keeps its own)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y, ordered) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        keys_match = list(a) == list(b) if ordered else sorted(a) == sorted(b)
        return keys_match and all(same(a[k], b[k], ordered) for k in a)
    return bool(a == b)


def test_reads_what_json_loads_reads_with_the_same_types() -> None:
    for text in TRICKY:
        assert same(read_json(text), json.loads(text)), text


def test_reads_random_documents_as_json_loads_does() -> None:
    rng = random.Random(11)

    def value(depth: int = 0) -> Any:
        pick = rng.random()
        if depth > 3 or pick < 0.4:
            number = rng.random() * 10 ** rng.randint(-30, 30)
            text = "".join(chr(rng.randint(0x20, 0x2FFF)) for _ in range(rng.randint(0, 6)))
            return rng.choice([None, True, rng.randint(-(2**70), 2**70), rng.randint(-1000, 1000), number, text])
        if pick < 0.7:
            return [value(depth + 1) for _ in range(rng.randint(0, 4))]
        return {f"k{rng.randint(0, 99)}": value(depth + 1) for _ in range(rng.randint(0, 4))}

    for _ in range(3000):
        text = json.dumps(value(), ensure_ascii=rng.random() < 0.5)
        assert same(read_json(text), json.loads(text)), text


async def test_a_tasks_json_round_trips_exactly_through_the_database(db: Database) -> None:
    document = {"big": 2**64 + 1, "negative": -(2**63) - 1, "id": "1234567890123456789012", "small": 7,
                "float": 0.1, "tiny": 5e-324, "nested": [{"é": "𝄞"}, [], {}], "flag": False}  # fmt: skip
    async with db.transaction() as session:
        await InstanceRepository(session).insert(an_instance())
        step = await new_step(session, "wi-1", "review", "decision")
        await TaskRepository(session).insert(a_task("t-1", step, 0, input=document, draft={"n": 10**30}))
    async with db.read() as session:
        task = await TaskRepository(session).get_by_id("t-1")
    assert task is not None
    assert same(dict(task.input), document, ordered=False)
    assert task.draft is not None and same(dict(task.draft), {"n": 10**30}, ordered=False)
