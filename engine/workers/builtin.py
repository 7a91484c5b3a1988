"""System-task executors: one module per node type behind one protocol, registered by type.

Each executor both checks its node's ``config`` at deploy time (``validate``: required keys, unknown keys,
and the types it can check before templates are rendered) and runs one attempt (``execute``). See
:mod:`engine.workers.executor` for the protocol and what an attempt is handed.
"""

from __future__ import annotations

from engine.definitions.registry import Registry
from engine.workers.delay import DelayExecutor
from engine.workers.echo import EchoExecutor
from engine.workers.email import EmailExecutor
from engine.workers.executor import SystemTaskExecutor
from engine.workers.graphql import GraphQLExecutor
from engine.workers.http import HttpExecutor
from engine.workers.javascript import JavaScriptExecutor

BUILTIN_EXECUTORS: tuple[SystemTaskExecutor, ...] = (
    HttpExecutor(),
    GraphQLExecutor(),
    JavaScriptExecutor(),
    EmailExecutor(),
    DelayExecutor(),
    EchoExecutor(),
)

__all__ = [
    "BUILTIN_EXECUTORS",
    "DelayExecutor",
    "EchoExecutor",
    "EmailExecutor",
    "GraphQLExecutor",
    "HttpExecutor",
    "JavaScriptExecutor",
    "register_builtin_system_tasks",
]


def register_builtin_system_tasks(registry: Registry) -> None:
    """Register the built-in executors (``http``, ``graphql``, ``javascript``, ``email``, ``delay``, ``echo``)."""
    for executor in BUILTIN_EXECUTORS:
        registry.register_system_task(executor)
