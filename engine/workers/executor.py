"""The one protocol every system-task executor implements, and what it is handed.

Dependencies (HTTP client, SMTP, clock, JS limits, host policy) reach executors through an
:class:`ExecutionContext`, so tests point them at loopback servers and swap the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import httpx

from engine.clock import Clock
from engine.definitions.model import Node


@dataclass(frozen=True)
class ExecutionRequest:
    """One attempt of one system task. ``config`` is already rendered (secrets included); ``data`` is
    the instance data (what a JavaScript task sees as ``data``)."""

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


@dataclass(frozen=True)
class HostPolicy:
    """Which hosts HTTP and GraphQL tasks may call. Deny wins; an empty allow list allows the rest."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ("169.254.0.0/16", "fe80::/10", "metadata.google.internal")


@dataclass
class ExecutionContext:
    http: httpx.AsyncClient
    clock: Clock
    smtp_url: str | None = None
    host_policy: HostPolicy = field(default_factory=HostPolicy)
    settings: Mapping[str, Any] = field(default_factory=dict)


class SystemTaskExecutor(Protocol):
    """Runs one node type. Raise :class:`engine.errors.ExecutionFailedError` for a failed attempt."""

    type: str
    task_type: str

    def validate(self, node: Node) -> list[str]:
        """Deploy-time problems with the node's ``config``, as messages."""
        ...

    async def execute(self, request: ExecutionRequest, context: ExecutionContext) -> ExecutionResult | WaitUntil: ...
