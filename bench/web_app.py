"""7. The web app in headless Chromium: the step page with 50 tasks, and a change reaching another server's page.

Two ``stepwise serve`` processes (the defaults: embedded worker on) share one PostgreSQL database. One
instance's step holds 50 approval tasks (an echo node forks to them).

- **Painted**: a new page in a signed-in browser context opens the step page; the time from navigation
  start to the frame after the 50th task row is in the DOM (``performance.now()`` in a
  ``requestAnimationFrame`` after a ``MutationObserver`` saw it). The first load fills the cache; the
  target is the p95 of the loads after it (a person who has used the app before). Target ≤ 300 ms.
  Beside it, when the step page's read left and when its answer was in (Playwright's request timing,
  from navigation start): the waterfall in two numbers, less moved by the host's load than the total.
- **Shipped**: the bytes of every JavaScript and CSS response of the first load, as sent (gzip), from the
  browser's own accounting. Target ≤ 150 KB for the whole application.
- **Commit → DOM**: the page is open on server B; bob claims each task through server A, one at a time.
  Latency = the moment the page's row shows "In Progress" (``Date.now()`` in a ``MutationObserver``) −
  the task's ``updatedAt`` from the claim's answer (set in the transition, a little before its commit:
  an upper bound of commit → DOM; the same host's clock). Target p95 ≤ 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Page, async_playwright

from bench.common import (
    ServerProcess,
    Target,
    free_port,
    heading,
    line_buffered,
    percentile,
    print_environment,
    print_targets,
    sqlalchemy_url,
    temporary_database,
    venv_bin,
)
from bench.inbox_scaling import bearer, server_env
from engine import Database, Engine, default_registry
from server.demo import load_demo

NAME = "web_app"
PAINT_GOAL_MS, BYTES_GOAL_KB, LATENCY_GOAL_MS = 300.0, 150.0, 250.0
TASKS = 50
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

DEFINITION: dict[str, Any] = {
    "key": "bench_web_step",
    "milestones": [{"key": "m", "title": "Review", "steps": [
        {"key": "s", "title": "Fifty approvals", "nodes": ["fork", *[f"t{n}" for n in range(TASKS)]]}]}],
    "start": "fork",
    "nodes": [{"id": "fork", "type": "echo", "config": {"output": "go"}}] + [
        {"id": f"t{n}", "type": "userTask", "schemaType": "userTask.approval", "name": f"Approval {n}",
         "title": f"Approve item {n:02}", "description": "Item {{ n }} of the batch", "assignToRole": "approver"}
        for n in range(TASKS)
    ],
    "edges": [{"from": "fork", "to": f"t{n}"} for n in range(TASKS)],
}  # fmt: skip

# Test-side instrumentation (Playwright's init script), not the app's code. The rows are watched for from the
# document's start: the app may render them while its modules run, before DOMContentLoaded.
WATCH = """
window.__painted = new Promise((resolve) => {
  const seen = () => document.querySelectorAll("[data-testid=task-row]").length >= ROWS;
  const observer = new MutationObserver(() => {
    if (seen()) { observer.disconnect(); requestAnimationFrame(() => resolve(performance.now())); }
  });
  observer.observe(document, {childList: true, subtree: true});
});
window.__inProgress = {};
new MutationObserver(() => {
  for (const row of document.querySelectorAll("[data-task-id]")) {
    const id = row.dataset.taskId;
    const status = row.querySelector("[data-testid=status]")?.textContent.trim();
    if (!(id in window.__inProgress) && status === "In Progress") {
      window.__inProgress[id] = Date.now();
    }
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
""".replace("ROWS", str(TASKS))


async def _step(engine: Engine) -> str:
    await engine.deploy(DEFINITION, deployed_by="dana")
    instance = await engine.start("bench_web_step", {"n": 1}, "alice")
    return instance.id


async def _wait_for_tasks(url: str, instance_id: str) -> tuple[str, list[str]]:
    query = "query($id: ID!) { workflowInstance(id: $id) { tasks { id kind step { id } } } }"
    async with httpx.AsyncClient(base_url=url, headers=bearer("dana")) as http:
        for _ in range(300):
            body = (await http.post("/graphql", json={"query": query, "variables": {"id": instance_id}})).json()
            tasks = [t for t in body["data"]["workflowInstance"]["tasks"] if t["kind"] == "USER"]
            if len(tasks) == TASKS:
                return tasks[0]["step"]["id"], [t["id"] for t in tasks]
            await asyncio.sleep(0.1)
    raise RuntimeError("the 50 tasks were not created (is the embedded worker running the echo node?)")


def _is_step_read(request: Any) -> bool:
    return bool(request.method == "POST" and "query Step(" in (request.post_data or ""))


async def _open(context: Any, url: str) -> tuple[Page, float, tuple[float, float]]:
    """The page, when its rows were painted, and when its first step read left and was answered (ms from
    navigation start; NaN if the page read no step)."""
    page = await context.new_page()
    reads: list[Any] = []
    page.on("request", lambda request: reads.append(request) if _is_step_read(request) else None)
    await page.goto(url)
    painted: float = await page.evaluate("window.__painted")
    read = (float("nan"), float("nan"))
    if reads:
        response = await reads[0].response()
        if response is not None:
            await response.finished()
        timing, origin = reads[0].timing, await page.evaluate("performance.timeOrigin")
        sent = timing["startTime"] - origin
        read = (sent, sent + timing["responseEnd"])
    return page, painted, read


async def run(loads: int, claims: int) -> list[Target]:
    heading(f"{NAME}: the step page with {TASKS} tasks ({loads} loads) and commit → DOM ({claims} changes)")
    await print_environment()
    with tempfile.TemporaryDirectory() as scratch:
        async with temporary_database("web") as dsn:
            db = Database(sqlalchemy_url(dsn))
            try:
                engine = Engine(db, default_registry())
                await load_demo(engine)
                instance_id = await _step(engine)
            finally:
                await db.dispose()
            env = server_env(dsn, Path(scratch) / "files")
            servers = []
            for tag in ("a", "b"):
                port = free_port()
                servers.append(ServerProcess([venv_bin("stepwise"), "serve", "--port", str(port)], env, port,
                                             Path(scratch) / f"serve-{tag}.log"))  # fmt: skip
            try:
                for server in servers:
                    await server.wait_ready()
                a, b = servers
                step_id, task_ids = await _wait_for_tasks(a.base_url, instance_id)
                return await _measure(a, b, step_id, task_ids[:claims], loads)
            finally:
                for server in servers:
                    server.stop()


async def _measure(a: ServerProcess, b: ServerProcess, step_id: str, task_ids: list[str], loads: int) -> list[Target]:
    token = bearer("carol")["Authorization"].removeprefix("Bearer ")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            await context.add_init_script(script=f"sessionStorage.setItem('stepwise.token', {token!r});")
            await context.add_init_script(script=WATCH)
            shipped: list[int] = []

            async def count(response: Any) -> None:
                if response.request.resource_type in ("script", "stylesheet"):
                    shipped.append((await response.request.sizes())["responseBodySize"])

            url = f"{b.base_url}/app/steps/{step_id}"
            first = await context.new_page()
            first.on("response", lambda r: asyncio.ensure_future(count(r)))
            await first.goto(url)
            cold = await first.evaluate("window.__painted")
            await asyncio.sleep(0.5)  # the last responses' sizes
            kilobytes = sum(shipped) / 1024
            await first.close()
            painted, sent, answered = [], [], []
            for _ in range(loads):
                page, ms, (read_sent, read_answered) = await _open(context, url)
                painted.append(ms)
                sent.append(read_sent)
                answered.append(read_answered)
                await page.close()

            watcher, _, _ = await _open(context, url)
            await watcher.wait_for_selector("[data-testid=live][data-state=live]")
            latencies = []
            async with httpx.AsyncClient(base_url=a.base_url, headers=bearer("bob")) as http:
                claim = """mutation($id: ID!) { claimTask(input: {taskId: $id}) {
                  ... on TaskSuccess { task { updatedAt } } } }"""
                for task_id in task_ids:
                    body = (await http.post("/graphql", json={"query": claim, "variables": {"id": task_id}})).json()
                    updated = datetime.fromisoformat(body["data"]["claimTask"]["task"]["updatedAt"]).timestamp() * 1000
                    deadline = time.monotonic() + 5
                    while time.monotonic() < deadline:
                        shown = await watcher.evaluate(f"window.__inProgress[{task_id!r}] ?? null")
                        if shown is not None:
                            latencies.append(shown - updated)
                            break
                        await asyncio.sleep(0.01)
                    else:
                        latencies.append(float("inf"))
        finally:
            await browser.close()
    p95_paint, p95_latency = percentile(painted, 95), percentile(latencies, 95)
    warm = f"warm p50 {percentile(painted, 50):.0f} ms, p95 {p95_paint:.0f} ms ({loads} loads)"
    print(f"painted: cold {cold:.0f} ms; {warm}")
    read = f"sent at {percentile(sent, 50):.0f} ms, answered at {percentile(answered, 50):.0f} ms"
    print(f"the step read (warm, p50): {read}")
    print(f"shipped: {kilobytes:.1f} KB of JavaScript and CSS in {len(shipped)} responses (compressed, as sent)")
    print(f"commit → DOM on the other server: p50 {percentile(latencies, 50):.0f} ms, p95 {p95_latency:.0f} ms "
          f"({len(latencies)} changes)")  # fmt: skip
    targets = [
        Target("web_step_page_painted_p95", p95_paint, PAINT_GOAL_MS, "ms", False),
        Target("web_app_shipped_compressed", kilobytes, BYTES_GOAL_KB, "KB", False),
        Target("web_commit_to_dom_p95", p95_latency, LATENCY_GOAL_MS, "ms", False),
    ]
    print_targets(targets)
    return targets


def main() -> None:
    line_buffered()
    parser = argparse.ArgumentParser(prog="python -m bench.web_app", description=__doc__)
    parser.add_argument("--loads", type=int, default=40, help="warm loads of the step page")
    parser.add_argument("--claims", type=int, default=TASKS, help=f"changes measured (at most {TASKS})")
    args = parser.parse_args()
    asyncio.run(run(args.loads, min(args.claims, TASKS)))


if __name__ == "__main__":
    main()
