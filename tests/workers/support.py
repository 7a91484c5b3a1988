"""Helpers for the executor tests: building an attempt, and running real servers on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import uvicorn
from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.types import ASGIApp

from engine.definitions.model import Node
from engine.workers.executor import ExecutionRequest
from engine.workers.hostpolicy import HostPolicy

TASK_ID = "task-0001"
# The test servers run on loopback, which the default host policy refuses: the tests re-open it as a
# deployment would (STEPWISE_HTTP_ALLOW), explicitly.
LOOPBACK_ALLOWED = HostPolicy(allow=("127.0.0.1", "localhost"))


def attempt(
    node_type: str,
    config: Mapping[str, Any],
    *,
    task_id: str = TASK_ID,
    data: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    created_at: datetime | None = None,
) -> ExecutionRequest:
    """One attempt of a node whose ``config`` is already rendered, as the worker would hand it over."""
    node = Node(id=f"{node_type}_node", type=node_type, config=dict(config))
    return ExecutionRequest(
        task_id=task_id,
        workflow_instance_id="instance-0001",
        node=node,
        attempt=1,
        config=dict(config),
        task_created_at=created_at or datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        data=dict(data or {}),
        secrets=dict(secrets or {}),
    )


class ServerThread:
    """A real uvicorn server on its own thread and event loop, so a busy test loop cannot stall it."""

    def __init__(self, app: ASGIApp) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(app, lifespan="off", ws="none", log_level="warning", access_log=False,
                                timeout_graceful_shutdown=2)  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


class _Inbox:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@dataclass
class Mailbox:
    """The aiosmtpd server and the messages it received."""

    url: str
    inbox: _Inbox

    def messages(self) -> list[EmailMessage]:
        parsed = []
        for envelope in self.inbox.envelopes:
            assert isinstance(envelope.original_content, bytes)
            message = message_from_bytes(envelope.original_content, policy=policy.default)
            assert isinstance(message, EmailMessage)
            parsed.append(message)
        return parsed
