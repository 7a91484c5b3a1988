"""SIGTERM to a real ``stepwise serve`` on PostgreSQL: what it acknowledged survives, subscriptions are
closed with a code clients reconnect on, and the worker hands back what it was running."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from websockets.typing import Subprotocol

from engine.catalog import default_registry
from engine.storage.database import Database
from engine.transitions.engine import Engine
from server.auth import issue_token
from server.demo import load_demo
from server.settings import Settings
from tests.server.live import TRANSPORT_WS, wait_until
from tests.support import free_port, kill
from tests.workers.support import ServerThread

SECRET_KEY = "shutdown-secret-key-of-at-least-32-bytes"
START = """mutation($input: JSON) { startWorkflow(input: {definitionKey: "expense_approval", input: $input}) {
  __typename ... on StartWorkflowSuccess { workflowInstance { id } } } }"""
pytestmark = pytest.mark.postgres_only


@asynccontextmanager
async def served(env: dict[str, str], log: Path) -> AsyncIterator[tuple[subprocess.Popen[bytes], str]]:
    """``stepwise serve`` as a child process, once it answers ``/healthz``; killed if still alive at the end."""
    port = free_port()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "stepwise"), "serve", "--port", str(port)],
            env={**os.environ, "STEPWISE_SECRET_KEY": SECRET_KEY, **env}, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, log.read_text()
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.05)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def exited(process: subprocess.Popen[bytes], log: Path) -> int:
    try:
        return await asyncio.wait_for(asyncio.to_thread(process.wait), 30)
    except TimeoutError:
        raise AssertionError(f"the server did not exit after SIGTERM: {log.read_text()}") from None


async def with_demo(database_url: str, work: Any = None) -> Any:
    db = Database(database_url)
    try:
        engine = Engine(db, default_registry())
        await load_demo(engine)
        return await work(engine) if work is not None else None
    finally:
        await db.dispose()


async def test_sigterm_mid_burst_loses_nothing_acknowledged(database_url: str, tmp_path: Path) -> None:
    await with_demo(database_url)
    token = issue_token(Settings(secret_key=SECRET_KEY), "alice")
    log = tmp_path / "serve.log"
    env = {"STEPWISE_DATABASE_URL": database_url, "STEPWISE_FILES_DIR": str(tmp_path / "files"),
           "STEPWISE_SHUTDOWN_SECONDS": "10", "STEPWISE_MUTATIONS_PER_MINUTE": "0"}  # fmt: skip
    acknowledged: list[str] = []
    refused = 0
    async with served(env, log) as (process, url):
        socket = await websockets.connect(
            url.replace("http", "ws") + "/graphql", subprotocols=[Subprotocol(TRANSPORT_WS)]
        )
        await socket.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        await socket.send(json.dumps({"id": "1", "type": "subscribe",
                                      "payload": {"query": "subscription { taskEvents { cursor } }"}}))  # fmt: skip

        async def client(number: int) -> None:
            nonlocal refused
            async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {token}"}) as http:
                sent = 0
                while True:
                    variables = {"input": {"entityName": f"burst {number}-{sent}", "amount": 10 + sent}}
                    sent += 1
                    try:
                        response = await http.post("/graphql", json={"query": START, "variables": variables})
                    except httpx.TransportError:  # no longer accepting: this client's burst is over
                        refused += 1
                        return
                    assert response.status_code == 200, response.text
                    result = response.json()["data"]["startWorkflow"]
                    assert result["__typename"] == "StartWorkflowSuccess", result
                    acknowledged.append(result["workflowInstance"]["id"])

        clients = [asyncio.create_task(client(number)) for number in range(6)]
        await wait_until(lambda: len(acknowledged) >= 30, "30 acknowledged starts")
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(*clients), 30)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(socket.recv(), 30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012  # "service restart": reconnect
        assert await exited(process, log) in (0, -signal.SIGTERM)
    assert refused == 6

    db = Database(database_url)
    try:
        async with db.read() as session:
            rows = await session.execute(
                text(
                    "SELECT i.id, count(t.id) FROM workflow_instances i LEFT JOIN tasks t "
                    "ON t.workflow_instance_id = i.id GROUP BY i.id"
                )  # fmt: skip
            )
            stored = dict(rows.tuples().all())
    finally:
        await db.dispose()
    missing = [instance for instance in acknowledged if instance not in stored]
    assert missing == [], f"{len(missing)} of {len(acknowledged)} acknowledged starts were lost"
    assert all(stored[instance] >= 1 for instance in acknowledged)  # each with its first task


@pytest.fixture
async def hanging_target() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """An HTTP target that accepts a call and never answers (until the test ends)."""
    called = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def hook(request: Request) -> JSONResponse:
        loop.call_soon_threadsafe(called.set)
        await asyncio.sleep(3600)
        return JSONResponse({})

    server = ServerThread(Starlette(routes=[Route("/hook", hook)]))
    server.start()
    try:
        yield f"{server.url}/hook", called
    finally:
        server.stop()


SLOW_FLOW = {
    "key": "slow_call", "start": "call",
    "nodes": [
        {"id": "call", "type": "http",
         "config": {"method": "GET", "url": "{{ settings.target }}", "timeoutMs": 300000}},
        {"id": "check", "type": "userTask", "title": "Check", "assignToRole": "approver"},
    ],
    "edges": [{"from": "call", "to": "check"}],
}  # fmt: skip


@pytest.mark.parametrize("command", ["serve", "worker"])
async def test_sigterm_hands_back_the_tasks_the_worker_was_running(
    database_url: str, tmp_path: Path, hanging_target: tuple[str, asyncio.Event], command: str
) -> None:
    target, called = hanging_target

    async def start(engine: Engine) -> str:
        await engine.deploy(SLOW_FLOW)
        return (await engine.start("slow_call", {}, "alice")).id

    instance_id = await with_demo(database_url, start)
    log = tmp_path / "stepwise.log"
    env = {"STEPWISE_DATABASE_URL": database_url, "STEPWISE_FILES_DIR": str(tmp_path / "files"),
           "STEPWISE_TEMPLATE_SETTINGS": json.dumps({"target": target}), "STEPWISE_WORKER_LEASE_SECONDS": "600",
           "STEPWISE_HTTP_ALLOW": "127.0.0.1", "STEPWISE_SHUTDOWN_SECONDS": "1"}  # fmt: skip
    async with AsyncExitStack() as stack:
        if command == "serve":
            process, _ = await stack.enter_async_context(served(env, log))
        else:
            output = stack.enter_context(log.open("wb"))
            process = subprocess.Popen([str(Path(sys.executable).parent / "stepwise"), "worker"],
                                       env={**os.environ, **env}, stdout=output, stderr=subprocess.STDOUT)  # fmt: skip
            stack.callback(kill, process)
        await asyncio.wait_for(called.wait(), 30)
        process.send_signal(signal.SIGTERM)
        # The call would hang for five minutes, the lease is ten: exiting at all means the grace applied.
        assert await exited(process, log) in (0, -signal.SIGTERM)

    db = Database(database_url)
    try:
        async with db.read() as session:
            row = (
                await session.execute(
                    text(
                        "SELECT status, attempt_count, lease_owner, next_run_at <= now() AS due FROM tasks "
                        "WHERE workflow_instance_id = :id AND node_id = 'call'"
                    ),
                    {"id": instance_id},
                )  # fmt: skip
            ).one()
            attempts = await session.scalar(text("SELECT count(*) FROM task_attempts"))
    finally:
        await db.dispose()
    assert (row.status, row.attempt_count, row.lease_owner, row.due) == ("PENDING", 0, None, True)
    assert attempts == 0
    assert "handed back" in log.read_text()
