"""7. Webhook delivery throughput: committed task events POSTed, signed, to a receiver on loopback.

A PostgreSQL database gets ``events`` task events (instances started, each task then claimed: two events
per task, which a task's order makes go one after the other) and one webhook. The receiver is a separate
process (Starlette under uvicorn) that verifies every signature (HMAC-SHA256 over ``t.body``) and answers
204. One :class:`engine.WebhookDispatcher`, as a worker runs it, then queues and delivers everything;
events per second is counted from its first round until the last delivery is acknowledged, queueing
included. Target: ≥ 500 events/s. It also prints the dispatcher's CPU time per event (this process's,
which runs nothing else meanwhile), a figure the host's load moves far less than the rate.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import subprocess
import sys
import time
from typing import Any

import httpx
from sqlalchemy import func, select

from bench.common import (
    Target,
    free_port,
    heading,
    line_buffered,
    print_environment,
    print_targets,
    sqlalchemy_url,
    temporary_database,
)
from engine import DeliveryStatus, HostPolicy, Services, User, WebhookDispatcher, WebhookFilter
from engine.catalog import default_registry
from engine.storage.database import Database
from engine.storage.models import webhook_deliveries
from engine.transitions.engine import Engine

NAME = "webhook_delivery"
GOAL = 500.0
ADMIN = User("dana", "Dana", roles=frozenset({"admin"}))
APPROVER = User("bob", "Bob", roles=frozenset({"approver"}))
DEFINITION = {"key": "bench_hooks", "start": "review", "nodes": [
    {"id": "review", "type": "userTask", "assignToRole": "approver"}]}  # fmt: skip


def receiver(port: int, secret: str) -> None:
    """The receiving process: verifies each signature, counts, answers 204 (401 for a bad signature). A bare
    ASGI app, so what is measured is the sender more than a framework on the receiving side."""
    import json

    import uvicorn

    counts = {"verified": 0, "refused": 0}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/count":
            payload = json.dumps(counts).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})  # fmt: skip
            await send({"type": "http.response.body", "body": payload})
            return
        headers = dict(scope["headers"])
        parts = dict(part.split("=", 1) for part in headers[b"stepwise-signature"].decode().split(",")[:2])
        expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
        verified = hmac.compare_digest(expected, parts["v1"])
        counts["verified" if verified else "refused"] += 1
        await send({"type": "http.response.start", "status": 204 if verified else 401, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def _events(engine: Engine, services: Services, events: int) -> None:
    await engine.deploy(DEFINITION)
    for _ in range(events // 2):
        instance = await engine.start("bench_hooks", {}, "alice")
        [token] = instance.tokens
        assert token.task_id is not None
        await services.tasks.claim(APPROVER, token.task_id)
    await engine.sequencer.idle()


async def run(events: int) -> list[Target]:
    heading(f"{NAME}: {events} task events to a signed-webhook receiver on loopback")
    await print_environment()
    async with temporary_database("hooks") as dsn:
        db = Database(sqlalchemy_url(dsn))
        engine = Engine(db, default_registry())
        services = Services.build(engine, host_policy=HostPolicy(allow=("127.0.0.1",)))
        port = free_port()
        process: subprocess.Popen[bytes] | None = None
        try:
            # Created before the events (a webhook gets what commits after it), the receiver started after.
            _, secret = await services.webhooks.create(ADMIN, f"http://127.0.0.1:{port}/hook", (), WebhookFilter())
            await _events(engine, services, events)
            process = subprocess.Popen(
                [sys.executable, "-m", "bench.webhook_delivery", "--receiver", str(port), "--secret", secret]
            )
            async with httpx.AsyncClient() as client:
                for _ in range(200):
                    try:
                        await client.get(f"http://127.0.0.1:{port}/count")
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.05)
            dispatcher = WebhookDispatcher(db, engine.clock, HostPolicy(allow=("127.0.0.1",)), "bench")
            began, cpu_began = time.perf_counter(), time.process_time()
            try:
                while True:
                    await dispatcher.run_once()
                    async with db.read() as session:
                        delivered = await session.scalar(
                            select(func.count()).where(webhook_deliveries.c.status == DeliveryStatus.DELIVERED.value)
                        )
                    if delivered == events:
                        break
            finally:
                await dispatcher.aclose()
            seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - cpu_began
            async with httpx.AsyncClient() as client:
                counts = (await client.get(f"http://127.0.0.1:{port}/count")).json()
        finally:
            if process is not None:
                process.terminate()
                process.wait(timeout=10)
            await db.dispose()
    rate = events / seconds
    print(f"delivered {events} events in {seconds:.2f} s: {rate:.0f} events/s; receiver verified "
          f"{counts['verified']}, refused {counts['refused']}")  # fmt: skip
    # The dispatcher's own CPU moves far less with the host's load than the rate does: compare changes by it.
    print(f"dispatcher CPU {cpu_seconds * 1e6 / events:.0f} µs per event ({cpu_seconds:.2f} s in all)")
    assert counts["verified"] == events and counts["refused"] == 0, counts
    targets = [Target("webhook_delivery_events_per_s", rate, GOAL, "/s", True)]
    print_targets(targets)
    return targets


def main() -> None:
    line_buffered()
    parser = argparse.ArgumentParser(prog="python -m bench.webhook_delivery", description=__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--secret", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver is not None:
        receiver(args.receiver, args.secret)
        return
    asyncio.run(run(args.events))


if __name__ == "__main__":
    main()
