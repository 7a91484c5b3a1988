"""The ``javascript`` executor: real QuickJS in a child process, with hard time and memory limits."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ExecutionFailedError
from engine.workers.executor import ExecutionResult, SystemTaskContext
from engine.workers.javascript import JavaScriptExecutor
from tests.workers.support import attempt

JS = JavaScriptExecutor()
# A fresh interpreter starts in ~40 ms here; this margin absorbs a slow CI machine as well.
MARGIN_S = 1.5


async def run(code: str, context: SystemTaskContext, data: dict[str, Any] | None = None, **limits: int) -> Any:
    result = await JS.execute(attempt("javascript", {"code": code, **limits}, data=data), context)
    assert isinstance(result, ExecutionResult)
    return result.output


async def fails(code: str, context: SystemTaskContext, **limits: int) -> ExecutionFailedError:
    with pytest.raises(ExecutionFailedError) as failure:
        await run(code, context, None, **limits)
    return failure.value


def runner_processes() -> list[int]:
    """Our live (or unreaped) JavaScript child processes, from /proc."""
    found: list[int] = []
    if not Path("/proc/self/stat").exists():
        return found  # not Linux: the check is skipped, the limits are still tested by timing
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        if parent == os.getpid() and b"_jsrunner" in cmdline:
            found.append(int(entry.name))
    return found


async def test_returns_json_computed_from_data(context: SystemTaskContext) -> None:
    code = "return {total: data.items.reduce((sum, i) => sum + i.price, 0), who: data.user.name.toUpperCase()};"
    data = {"items": [{"price": 2.5}, {"price": 4}], "user": {"name": "zoë"}}

    assert await run(code, context, data) == {"total": 6.5, "who": "ZOË"}


async def test_undefined_is_null_and_promises_are_awaited(context: SystemTaskContext) -> None:
    assert await run("data.x = 1;", context) is None
    assert await run("return (async () => { await null; return data.n * 2; })();", context, {"n": 21}) == 42


async def test_thrown_error_fails_for_good(context: SystemTaskContext) -> None:
    error = await fails("throw new Error('amount is missing');", context)

    assert error.non_retryable
    assert error.message.startswith("JavaScript error: Error: amount is missing")
    assert error.request == {"code": "throw new Error('amount is missing');", "timeoutMs": 1000, "memoryMb": 64}


async def test_syntax_error_and_unserialisable_result_fail(context: SystemTaskContext) -> None:
    assert "SyntaxError" in (await fails("return {;", context)).message
    assert "bigint" in (await fails("return 10n;", context)).message.lower()
    assert "never settled" in (await fails("return new Promise(() => {});", context)).message


async def test_infinite_loop_is_stopped_within_its_limit(context: SystemTaskContext) -> None:
    started = time.monotonic()
    error = await fails("while (true) {}", context, timeoutMs=300)

    assert time.monotonic() - started < 0.3 + MARGIN_S
    assert error.non_retryable
    assert error.message == "JavaScript exceeded its time limit of 300 ms"
    assert runner_processes() == []


async def test_what_quickjs_cannot_interrupt_is_killed(context: SystemTaskContext) -> None:
    # Catastrophic backtracking runs inside the regex engine, where no interrupt is checked: only the
    # wall-clock kill of the child process ends it.
    started = time.monotonic()
    error = await fails("return /(a+)+b/.test('a'.repeat(40));", context, timeoutMs=300)

    assert time.monotonic() - started < 0.3 + MARGIN_S
    assert error.message == "JavaScript exceeded its time limit of 300 ms"
    assert runner_processes() == []


async def test_memory_bomb_is_stopped(context: SystemTaskContext) -> None:
    bomb = "const hoard = []; while (true) hoard.push(new Array(100000).fill(1));"

    error = await fails(bomb, context, memoryMb=16, timeoutMs=5000)

    assert error.non_retryable
    assert error.message == "JavaScript exceeded its memory limit of 16 MB"
    assert (await fails("return 'x'.repeat(2 ** 29).length;", context)).message.endswith("limit of 64 MB")


async def test_no_host_objects(context: SystemTaskContext) -> None:
    names = ["require", "fetch", "process", "std", "os", "setTimeout", "XMLHttpRequest", "print", "Deno", "Bun"]
    code = f"return {names!r}.map(name => typeof globalThis[name]);"

    assert await run(code, context) == ["undefined"] * len(names)
    assert "ReferenceError" in (await fails("return require('fs').readFileSync('/etc/passwd');", context)).message
    assert "ReferenceError" in (await fails("return fetch('http://127.0.0.1/');", context)).message
    assert "could not load module" in (await fails("return import('os');", context)).message


async def test_the_event_loop_keeps_serving_during_a_runaway_script(context: SystemTaskContext) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    counting = asyncio.create_task(ticker())
    try:
        await fails("while (true) {}", context, timeoutMs=500)
    finally:
        counting.cancel()

    assert ticks >= 25  # ~50 expected; a blocked loop would manage one or two


async def test_runaway_scripts_fail_only_their_own_task(context: SystemTaskContext) -> None:
    started = time.monotonic()
    outcomes = await asyncio.gather(
        run("while (true) {}", context, timeoutMs=400),
        run("return data.n + 1;", context, {"n": 1}),
        run("const a = []; while (true) a.push('x'.repeat(1024));", context, memoryMb=8, timeoutMs=5000),
        return_exceptions=True,
    )

    assert time.monotonic() - started < 0.4 + MARGIN_S
    assert isinstance(outcomes[0], ExecutionFailedError)
    assert outcomes[1] == 2
    assert isinstance(outcomes[2], ExecutionFailedError)
    assert runner_processes() == []


async def test_cancelling_the_attempt_kills_the_script(context: SystemTaskContext) -> None:
    running = asyncio.create_task(run("while (true) {}", context, timeoutMs=10000))
    await asyncio.sleep(0.3)
    assert runner_processes()

    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running

    assert runner_processes() == []


async def test_scripts_do_not_share_state(context: SystemTaskContext) -> None:
    await run("globalThis.leak = 'first';", context)

    assert await run("return typeof globalThis.leak;", context) == "undefined"


async def test_data_counts_against_the_memory_limit(context: SystemTaskContext) -> None:
    with pytest.raises(ExecutionFailedError) as failure:
        await run("return data.blob.length;", context, {"blob": "x" * 3_000_000}, memoryMb=2)

    assert failure.value.message == "JavaScript exceeded its memory limit of 2 MB"


async def test_a_runtime_that_cannot_start_is_retryable(
    context: SystemTaskContext, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("engine.workers.javascript.RUNNER", tmp_path / "missing.py")

    error = await fails("return 1;", context)

    assert not error.non_retryable
    assert error.message.startswith("the JavaScript runtime failed to start (exit code 2)")


async def test_a_result_over_the_size_limit_is_not_read_whole(context: SystemTaskContext) -> None:
    capped = replace(context, max_body_bytes=10_000)

    fits = await run("return 'x'.repeat(9990);", capped)
    # 5 MB, far beyond what the parent reads: it stops at the limit and kills the child.
    error = await fails("return 'x'.repeat(5 * 1024 * 1024);", capped, memoryMb=256, timeoutMs=10_000)

    assert fits == "x" * 9990
    assert error.non_retryable
    assert error.message == "JavaScript's result is larger than the limit of 10000 bytes"
