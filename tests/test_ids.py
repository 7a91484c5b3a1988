"""Ids are UUIDv7: time-ordered, and strictly increasing within the process."""

from __future__ import annotations

import time
import uuid

from engine.state import new_id


def test_ids_made_in_one_millisecond_sort_in_the_order_they_were_made() -> None:
    ids = [new_id() for _ in range(5_000)]  # many per millisecond
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for text in ids[:50]:
        parsed = uuid.UUID(text)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_an_id_carries_the_time_it_was_made() -> None:
    before = time.time_ns() // 1_000_000
    made = int(new_id().replace("-", "")[:12], 16)
    after = time.time_ns() // 1_000_000
    assert before <= made <= after + 1  # +1: a burst in the same millisecond may run one ahead
