"""The registry a server starts with: every built-in user-task and system-task type."""

from __future__ import annotations

from engine.definitions.registry import Registry
from engine.tasks.usertasks import register_builtin_user_tasks
from engine.workers.builtin import register_builtin_system_tasks


def default_registry() -> Registry:
    registry = Registry()
    register_builtin_user_tasks(registry)
    register_builtin_system_tasks(registry)
    return registry
