"""The one protocol every system-task executor implements, and what it is handed.

Dependencies (HTTP client, SMTP, clock, JS limits, host policy) reach executors through an
:class:`SystemTaskContext`, so tests point them at loopback servers and swap the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import httpx

from engine.calendars import Calendars
from engine.clock import Clock
from engine.definitions.model import Node
from engine.definitions.validation import DEFAULT_MAX_JSON_BYTES
from engine.workers.hostpolicy import HostPolicy, task_http_client


@dataclass(frozen=True)
class ExecutionRequest:
    """One attempt of one system task. ``config`` is already rendered (with secrets, for an executor that
    ``uses_secrets``); ``data`` is the instance data (what a JavaScript task sees as ``data``); ``secrets``
    are what to redact from anything recorded."""

    task_id: str
    workflow_instance_id: str
    node: Node
    attempt: int
    config: Mapping[str, Any]
    task_created_at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecutionResult:
    """A successful attempt: ``output`` goes under ``storeAs``; ``request``/``response`` are recorded."""

    output: Any
    request: Any = None
    response: Any = None


@dataclass(frozen=True)
class WaitUntil:
    """The task is not done yet and should run again at ``until`` (a durable timer)."""

    until: datetime
    request: Any = None


@dataclass
class SystemTaskContext:
    """What executors run with. ``http`` is built from ``host_policy`` on first use, never handed in, so
    no caller can give tasks a client that skips the policy; :meth:`aclose` (or ``async with``) closes it."""

    clock: Clock
    smtp_url: str | None = None
    host_policy: HostPolicy = field(default_factory=HostPolicy)
    settings: Mapping[str, Any] = field(default_factory=dict)
    max_body_bytes: int = DEFAULT_MAX_JSON_BYTES
    calendars: Calendars = field(default_factory=Calendars)
    """What business durations count in (a delay's ``duration``)."""
    _http: httpx.AsyncClient | None = field(default=None, init=False, repr=False)

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = task_http_client(self.host_policy, self.max_body_bytes)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> SystemTaskContext:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class SystemTaskExecutor(Protocol):
    """Runs one node type. Raise :class:`engine.errors.ExecutionFailedError` for a failed attempt.

    Its config's templates see ``secrets`` only if the executor says ``uses_secrets = True`` (the HTTP and
    GraphQL ones); whatever it returns is redacted before it is stored, but a secret it reshapes (encodes,
    splits) cannot be recognised, so no other executor is handed them."""

    type: str
    task_type: str

    def validate(self, node: Node) -> list[str]:
        """Deploy-time problems with the node's ``config``, as messages."""
        ...

    async def execute(self, request: ExecutionRequest, context: SystemTaskContext) -> ExecutionResult | WaitUntil: ...
