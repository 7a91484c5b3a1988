"""The ``javascript`` system task: a function body run in QuickJS, in a child process of its own.

Config: ``code`` (a function body; ``data`` is the instance data; ``return`` a JSON value, or a promise of
one), ``timeoutMs`` (default 1,000) and ``memoryMb`` (default 64). The script sees the ECMAScript built-ins
and nothing else: no ``require``, ``fetch``, ``process``, timers, files or network.

Why a process per attempt rather than a thread: the event loop must keep serving while a script runs, and a
runaway script must really stop. QuickJS interrupts loops and refuses allocations beyond the limit, but it
cannot interrupt a catastrophically backtracking regular expression, and a thread cannot be killed. A
process can: the parent kills it at the wall-clock deadline, and whatever the script did, it took only its
own process down. Starting one costs some 30-50 ms, and no state survives from one script to the next.

The child's report is read up to the context's ``max_body_bytes`` and no further (a script may build a
result as large as its memory limit); past it the child is killed and the attempt fails.

Every failure of the script itself — a thrown error, the time or memory limit, a result over the size
limit — is non-retryable: the code is a function of the instance data, so a retry would fail the same way.
Failing to start the runtime is retryable.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.definitions.model import Node
from engine.errors import ExecutionFailedError
from engine.workers.config_checks import check_int, check_keys, check_string, require_valid
from engine.workers.executor import ExecutionRequest, ExecutionResult, SystemTaskContext, WaitUntil
from engine.workers.redaction import redact, redact_text

DEFAULT_TIMEOUT_MS = 1_000
MAX_TIMEOUT_MS = 60_000
DEFAULT_MEMORY_MB = 64
MAX_MEMORY_MB = 1_024
KEYS = ("code", "timeoutMs", "memoryMb")
RUNNER = Path(__file__).with_name("_jsrunner.py")
# Interpreter start-up on a busy machine; not charged to the script, whose clock starts at "ready".
STARTUP_TIMEOUT_S = 10.0
# QuickJS's own interrupt (in CPU time) normally ends a runaway loop at the limit; the kill comes this much later.
KILL_GRACE_S = 0.25
# The child gets no secrets from the server's environment; these only help the interpreter start.
_PASSED_ENVIRONMENT = ("PATH", "LD_LIBRARY_PATH", "SYSTEMROOT")


# Beyond the result's limit: the status line, an error report (its message is cut at 4,000 characters).
_REPORT_ROOM = 16 * 1024


async def _read_at_most(stream: asyncio.StreamReader, limit: int) -> bytes | None:
    """Everything up to end of file, or None as soon as more than ``limit`` bytes came."""
    chunks, total = [], 0
    while chunk := await stream.read(64 * 1024):
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def config_problems(config: Mapping[str, Any], *, rendered: bool) -> list[str]:
    problems = check_keys(config, ("code",), KEYS)
    problems += check_string(config, "code", rendered=rendered)
    problems += check_int(config, "timeoutMs", rendered=rendered, maximum=MAX_TIMEOUT_MS)
    problems += check_int(config, "memoryMb", rendered=rendered, maximum=MAX_MEMORY_MB)
    return problems


@dataclass(frozen=True)
class ScriptOutcome:
    """What the child reported: ``status`` is ``ok``, ``error``, ``killed`` (deadline), ``too_large`` (its
    output passed the limit, and it was killed) or ``crashed``."""

    status: str
    payload: bytes
    returncode: int | None
    stderr: bytes = b""


class JavaScriptExecutor:
    """Runs ``javascript`` nodes in a fresh QuickJS process per attempt, within hard time and memory limits."""

    type = "javascript"
    task_type = "JAVASCRIPT"

    def validate(self, node: Node) -> list[str]:
        return config_problems(node.config, rendered=False)

    async def execute(self, request: ExecutionRequest, context: SystemTaskContext) -> ExecutionResult | WaitUntil:
        config, secrets = request.config, request.secrets
        require_valid(config_problems(config, rendered=True), secrets)
        code = str(config["code"])
        timeout_ms = int(config.get("timeoutMs", DEFAULT_TIMEOUT_MS))
        memory_mb = int(config.get("memoryMb", DEFAULT_MEMORY_MB))
        recorded = redact({"code": code, "timeoutMs": timeout_ms, "memoryMb": memory_mb}, secrets)
        job = {"code": code, "data": json.dumps(dict(request.data), default=str), "timeoutMs": timeout_ms,
               "memoryMb": memory_mb}  # fmt: skip
        outcome = await run_script(json.dumps(job).encode("utf-8"), timeout_ms / 1000, context.max_body_bytes,
                                   request=recorded)  # fmt: skip

        def failed(message: str) -> ExecutionFailedError:
            return ExecutionFailedError(redact_text(message, secrets), non_retryable=True, request=recorded)

        if outcome.status == "too_large":
            raise failed(f"JavaScript's result is larger than the limit of {context.max_body_bytes} bytes")
        if outcome.status == "ok":
            return ExecutionResult(output=json.loads(outcome.payload), request=recorded)
        if outcome.status == "error":
            report = json.loads(outcome.payload)
            kind, message = report.get("kind"), str(report.get("message", "")).strip()
        elif outcome.status == "killed" or outcome.returncode == -signal.SIGXCPU:  # the CPU rlimit
            kind, message = "timeout", ""
        elif b"MemoryError" in outcome.stderr:
            kind, message = "memory", ""
        else:
            tail = outcome.stderr.decode("utf-8", "replace").strip()[-500:]
            raise failed(f"the JavaScript runtime crashed (exit code {outcome.returncode}): {tail}")
        if kind == "timeout":
            raise failed(f"JavaScript exceeded its time limit of {timeout_ms} ms")
        if kind == "memory":
            raise failed(f"JavaScript exceeded its memory limit of {memory_mb} MB")
        raise failed(f"JavaScript error: {message}")


async def run_script(job: bytes, timeout_s: float, max_output_bytes: int, *, request: object = None) -> ScriptOutcome:
    """Run one job in a child process and collect what it reports; the child never outlives this call.

    Its report is read up to ``max_output_bytes`` (and a little for the status line and error reports),
    never whole first: a script may build a result as large as its memory limit."""
    environment = {key: os.environ[key] for key in _PASSED_ENVIRONMENT if key in os.environ}
    try:
        # -I: no user site, no PYTHON* variables and, above all, not this directory on sys.path (whose
        # email.py and http.py would shadow the standard library's).
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-I", str(RUNNER),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=environment,
            start_new_session=True,  # a Ctrl-C meant for the server must not reach (and fail) the script
        )  # fmt: skip
    except OSError as exc:
        raise ExecutionFailedError(f"could not start the JavaScript runtime: {exc}", request=request) from exc
    try:
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        process.stdin.write(job)
        try:
            await process.stdin.drain()
        except ConnectionError:
            pass  # the child died before reading; its exit status tells why
        process.stdin.close()
        try:
            async with asyncio.timeout(STARTUP_TIMEOUT_S):
                ready = await process.stdout.readline()
        except TimeoutError as exc:
            message = f"the JavaScript runtime did not start within {STARTUP_TIMEOUT_S:g} s"
            raise ExecutionFailedError(message, request=request) from exc
        if ready == b"ready\n":
            try:
                async with asyncio.timeout(timeout_s + KILL_GRACE_S):
                    output = await _read_at_most(process.stdout, max_output_bytes + _REPORT_ROOM)
                    if output is None:
                        return ScriptOutcome("too_large", b"", None)
                    await process.wait()
            except TimeoutError:
                return ScriptOutcome("killed", b"", None)
        else:  # the script never started: the child reports why, or died before it could
            output = ready + (await _read_at_most(process.stdout, _REPORT_ROOM) or b"")
            await process.wait()
            if not output:
                tail = (await process.stderr.read(_REPORT_ROOM)).decode("utf-8", "replace").strip()[-500:]
                message = f"the JavaScript runtime failed to start (exit code {process.returncode}): {tail}"
                raise ExecutionFailedError(message, request=request)
        stderr = await process.stderr.read(_REPORT_ROOM)
        status, _, payload = output.partition(b"\n")
        if process.returncode == 0 and status in (b"ok", b"error"):
            return ScriptOutcome(status.decode(), payload, 0, stderr)
        return ScriptOutcome("crashed", b"", process.returncode, stderr)
    finally:
        if process.returncode is None:
            try:
                process.kill()
            except ProcessLookupError:
                pass  # exited on its own between the check and the kill
            await process.wait()
