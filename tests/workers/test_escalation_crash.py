"""Escalation steps fire exactly once across a ``kill -9`` of a real ``stepwise worker`` process and a
restart: the first worker fires the reminders and dies while their emails are in flight (the SMTP server
holds them); the second sends them and fires the rest of every ladder.

The tasks are created by an engine whose injected clock is three days behind, so every step is overdue
for the workers' real clocks, and nothing waits for a step's time.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select

from engine.catalog import default_registry
from engine.clock import ManualClock
from engine.state import EscalationStatus, InstanceStatus, TaskEventKind
from engine.storage.database import Database
from engine.storage.models import instances, task_escalations, task_events
from engine.transitions.engine import Engine
from tests.support import eventually, free_port, kill, tail
from tests.workers.test_escalations import review, seed_people
from tests.workers.test_worker_crash import SECRET_KEY, STEPWISE

TASKS = 5


class HoldingInbox:
    """Accepts messages, but holds every one received while ``holding`` until it is released."""

    def __init__(self) -> None:
        self.holding = threading.Event()
        self.holding.set()
        self._lock = threading.Lock()
        self.held = 0
        self.message_ids: list[str] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        if self.holding.is_set():
            with self._lock:
                self.held += 1
            while self.holding.is_set():
                await asyncio.sleep(0.05)
            return "451 try again later"  # the sender is dead by now; nothing it sent was delivered
        content = envelope.original_content or b""
        header = next(line for line in content.decode().splitlines() if line.lower().startswith("message-id:"))
        with self._lock:
            self.message_ids.append(header.split(":", 1)[1].strip())
        return "250 accepted"


@contextmanager
def smtp_server(inbox: HoldingInbox) -> Iterator[str]:
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}"
    finally:
        inbox.holding.clear()
        controller.stop()


def spawn_worker(database_url: str, smtp_url: str, log: Path) -> subprocess.Popen[bytes]:
    """``stepwise worker`` in its own process: 3 s leases, 0.2 s polls, output to ``log``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("STEPWISE_")}
    env.update(
        STEPWISE_DATABASE_URL=database_url, STEPWISE_SECRET_KEY=SECRET_KEY, STEPWISE_SMTP_URL=smtp_url,
        STEPWISE_WORKER_LEASE_SECONDS="3", STEPWISE_WORKER_POLL_SECONDS="0.2", PYTHONUNBUFFERED="1",
    )  # fmt: skip
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen([str(STEPWISE), "worker"], env=env, stdout=out, stderr=subprocess.STDOUT)


async def test_each_step_fires_once_across_a_kill_and_a_restart(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    assert STEPWISE.exists(), f"{STEPWISE} is missing: install the project into the venv"
    clock = ManualClock(datetime.now(UTC) - timedelta(days=3))
    engine = Engine(db, default_registry(), clock=clock)
    await seed_people(db, clock, "crash.test")
    await engine.deploy(review().build())
    instance_ids = [(await engine.start("review", {"item": str(n)}, "alice")).id for n in range(TASKS)]
    inbox = HoldingInbox()
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    with smtp_server(inbox) as smtp_url:
        first = second = None
        try:
            first = spawn_worker(database_url, smtp_url, first_log)

            async def reminders_in_flight() -> bool:
                assert first is not None and first.poll() is None, tail(first_log)
                return inbox.held == TASKS

            await eventually(reminders_in_flight, 30, lambda: f"the reminders never went out:\n{tail(first_log)}")
            kill(first)
            at_kill = await step_statuses(db)
            inbox.holding.clear()
            second = spawn_worker(database_url, smtp_url, second_log)

            async def all_done() -> bool:
                assert second is not None and second.poll() is None, tail(second_log)
                found = await step_statuses(db)
                if found != Counter({(EscalationStatus.FIRED.value, False): 3 * TASKS}):
                    return False
                async with db.read() as session:  # and the echo after each review ran
                    done = await session.execute(select(instances.c.status))
                    return {row.status for row in done} == {InstanceStatus.COMPLETED.value}

            await eventually(all_done, 60, lambda: f"the ladders never finished:\n{tail(second_log)}")
        finally:
            kill(first)
            kill(second)

    # At the kill every reminder had fired, once, and was waiting to be sent; nothing else had.
    assert at_kill == Counter({(EscalationStatus.FIRED.value, True): TASKS,
                               (EscalationStatus.SCHEDULED.value, False): 2 * TASKS})  # fmt: skip
    async with db.read() as session:
        rows = await session.execute(select(task_events.c.task_id, task_events.c.kind, task_events.c.data))
        events = [(row.task_id, row.kind, (row.data or {}).get("step")) for row in rows]
        steps = {row.id for row in await session.execute(select(task_escalations.c.id))}
        statuses = {row.status for row in await session.execute(select(instances.c.status))}
    escalated = Counter(
        (task_id, kind, step)
        for task_id, kind, step in events
        if kind in (TaskEventKind.REMINDED, TaskEventKind.ESCALATED)
    )
    assert len(escalated) == 3 * TASKS and set(escalated.values()) == {1}, escalated
    completed = Counter(task_id for task_id, kind, _ in events if kind == TaskEventKind.COMPLETED)
    assert len(completed) == 2 * TASKS and set(completed.values()) == {1}  # the review and the echo after it
    assert statuses == {InstanceStatus.COMPLETED.value}
    # Every reminder arrived, from the second worker, under its step's own Message-ID.
    reminder_ids = {mid.strip("<>").split("@")[0] for mid in inbox.message_ids}
    assert len(inbox.message_ids) == TASKS and reminder_ids <= steps
    assert len(instance_ids) == TASKS


async def step_statuses(db: Database) -> Counter[tuple[str, bool]]:
    async with db.read() as session:
        rows = await session.execute(select(task_escalations.c.status, task_escalations.c.notify_pending))
        return Counter((row.status, bool(row.notify_pending)) for row in rows)
