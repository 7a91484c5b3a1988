"""The child process of a ``javascript`` task: evaluates one script in QuickJS and exits.

Run as ``python -I _jsrunner.py`` by :mod:`engine.workers.javascript`, never imported: it reads the job
(``{"code", "data", "timeoutMs", "memoryMb"}``, JSON) from stdin, prints ``ready``, runs the code, then prints
``ok`` and the result as JSON, or ``error`` and ``{"kind", "message"}``. Standard library and ``quickjs``
only, so the process starts in a few tens of milliseconds.

Inside, QuickJS enforces the memory limit and (in CPU time) the time limit. The parent kills the process at
the wall-clock deadline regardless, which also stops what QuickJS cannot interrupt (a catastrophically
backtracking regular expression), and the CPU rlimit below ends the process even if the parent is gone.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import quickjs

try:
    import resource
except ImportError:  # not a POSIX system: QuickJS's limits and the parent's kill remain
    resource = None  # type: ignore[assignment]

MB = 1024 * 1024

# The user's code becomes a function of ``data`` via ``new Function``, so it cannot step outside its body.
# The harness holds its own references to Promise and JSON: the code may overwrite the globals.
HARNESS = """
(() => {
  const resolve = Promise.resolve.bind(Promise);
  const stringify = JSON.stringify;
  const fn = new Function("data", globalThis.__stepwise_code);
  const data = JSON.parse(globalThis.__stepwise_data);
  delete globalThis.__stepwise_code;
  delete globalThis.__stepwise_data;
  let state = { done: false };
  let value;
  try {
    value = fn(data);
  } catch (error) {
    state = { done: true, error };
  }
  if (!state.done) {
    resolve(value).then(
      (result) => { state = { done: true, result }; },
      (error) => { state = { done: true, error }; },
    );
  }
  globalThis.__stepwise_finish = () => {
    if (!state.done) throw new Error("the returned promise never settled");
    if ("error" in state) throw state.error;
    const text = stringify(state.result === undefined ? null : state.result);
    return text === undefined ? "null" : text;
  };
})();
"""


def _limit(name: str, soft: int) -> None:
    kind: int | None = getattr(resource, name, None) if resource is not None else None
    if kind is None:
        return  # a platform without this limit still has QuickJS's limits and the parent's kill
    try:
        _, hard = resource.getrlimit(kind)
        cap = soft if hard == resource.RLIM_INFINITY else min(soft, hard)
        resource.setrlimit(kind, (cap, hard))
    except (ValueError, OSError):
        pass  # e.g. a hard limit below what we ask for: keep the one in force


# Stack frames of the harness above, which mean nothing to the author of the code.
_HARNESS_FRAMES = ("at <anonymous> (<input>", "at <eval> (<input>", "at Function (native)", "at stringify (native)")


def _classify(exc: Exception) -> tuple[str, str]:
    lines = str(exc).splitlines()
    message = "\n".join(line for line in lines if not line.strip().startswith(_HARNESS_FRAMES)).strip()
    if isinstance(exc, quickjs.StackOverflow):
        return "error", "stack overflow (too much recursion)"
    if message.startswith("InternalError: interrupted"):
        return "timeout", message
    if message.startswith("InternalError: out of memory"):
        return "memory", message
    return "error", message


def _reply(status: str, payload: str) -> None:
    # Bytes, not the text layer: the child runs with an empty environment, so no locale to trust.
    sys.stdout.flush()
    sys.stdout.buffer.write((status + "\n" + payload).encode("utf-8", errors="replace"))
    sys.stdout.buffer.flush()


def main() -> int:
    job: dict[str, Any] = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    timeout_s = job["timeoutMs"] / 1000
    memory = job["memoryMb"] * MB
    # Backstops should QuickJS's own limits fail: CPU seconds, and address space beyond the interpreter's own
    # footprint plus room for the heap and a copy of the result.
    _limit("RLIMIT_CPU", math.ceil(timeout_s) + 2)
    _limit("RLIMIT_AS", 3 * memory + 256 * MB)

    try:
        context = quickjs.Context()
        context.set_memory_limit(memory)
        context.set("__stepwise_code", job["code"])
        context.set("__stepwise_data", job["data"])
        print("ready", flush=True)
        context.set_time_limit(timeout_s)
        context.eval(HARNESS)
        while context.execute_pending_job():  # settle promises an async function body returns
            pass
        result = context.eval("__stepwise_finish()")
    except quickjs.JSException as exc:  # StackOverflow is a JSException too
        kind, message = _classify(exc)
        _reply("error", json.dumps({"kind": kind, "message": message[:4000]}))
        return 0
    except MemoryError:
        _reply("error", json.dumps({"kind": "memory", "message": "out of memory"}))
        return 0
    _reply("ok", str(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
