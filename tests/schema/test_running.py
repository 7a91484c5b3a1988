"""``running``: work (the inbox's count) that runs while a block does, and never outlives it."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any

import pytest

from schema.inbox import running


async def test_the_work_runs_while_the_block_does_and_gives_its_result() -> None:
    order: list[str] = []

    async def count() -> int:
        order.append("count starts")
        await asyncio.sleep(0.01)
        order.append("count ends")
        return 42

    async with running(count()) as counting:
        assert counting is not None
        await asyncio.sleep(0)
        order.append("block reads the page")
        assert await counting == 42
    assert order == ["count starts", "block reads the page", "count ends"]


async def test_a_block_that_fails_waits_for_the_work_and_reports_its_own_error() -> None:
    finished = asyncio.Event()

    async def count() -> int:
        await asyncio.sleep(0.01)
        finished.set()
        return 1

    with pytest.raises(LookupError, match="the page failed"):
        async with running(count()):
            raise LookupError("the page failed")
    assert finished.is_set(), "the count was left running (its connection still checked out)"


async def test_the_works_own_error_is_taken_when_the_block_fails_first() -> None:
    unretrieved: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))

    async def count() -> int:
        raise ConnectionError("the count failed")

    try:
        with pytest.raises(LookupError):
            async with running(count()):
                raise LookupError("the page failed")
        gc.collect()  # a task whose exception nobody took reports it when it is freed
        assert unretrieved == []
    finally:
        loop.set_exception_handler(None)


async def test_no_work_gives_no_task() -> None:
    nothing: Coroutine[Any, Any, int] | None = None
    async with running(nothing) as counting:
        assert counting is None
