"""System-task executors: one module per node type behind one protocol, registered by type."""

from __future__ import annotations

from dataclasses import dataclass

from engine.definitions import Node
from engine.registry import Registry


@dataclass(frozen=True)
class ConfigKeys:
    """Deploy-time check of a built-in system task's ``config``: required and allowed keys."""

    type: str
    task_type: str
    required: frozenset[str]
    allowed: frozenset[str]

    def validate(self, node: Node) -> list[str]:
        problems = [f"config needs {key!r}" for key in sorted(self.required - set(node.config))]
        problems += [f"config key {key!r} is not known" for key in sorted(set(node.config) - self.allowed)]
        return problems


BUILTIN_CONFIGS = (
    ConfigKeys("http", "HTTP", frozenset({"url"}),
               frozenset({"method", "url", "headers", "query", "json", "body", "timeoutMs", "expectStatus"})),
    ConfigKeys("graphql", "GRAPHQL", frozenset({"url", "query"}),
               frozenset({"url", "query", "variables", "headers", "operationName", "timeoutMs"})),
    ConfigKeys("javascript", "JAVASCRIPT", frozenset({"code"}), frozenset({"code", "timeoutMs", "memoryMb"})),
    ConfigKeys("email", "EMAIL", frozenset({"to", "subject"}), frozenset({"to", "cc", "subject", "body", "html"})),
    ConfigKeys("delay", "DELAY", frozenset(), frozenset({"duration", "until"})),
    ConfigKeys("echo", "ECHO", frozenset({"output"}), frozenset({"output"})),
)  # fmt: skip


def register_builtin_system_tasks(registry: Registry) -> None:
    for config in BUILTIN_CONFIGS:
        registry.register_system_task(config)
