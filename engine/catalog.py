"""The registry a server starts with: every built-in user-task and system-task type."""

from __future__ import annotations

from engine.definitions.registry import Registry
from engine.tasks.action_approvals import ACTION_APPROVAL_TASK
from engine.tasks.approval_requests import RequestAssigner
from engine.tasks.usertasks import register_builtin_user_tasks
from engine.workers.builtin import register_builtin_system_tasks


def default_registry() -> Registry:
    registry = Registry()
    register_builtin_user_tasks(registry)
    registry.register_user_task(ACTION_APPROVAL_TASK)
    registry.register_assigner(RequestAssigner())
    register_builtin_system_tasks(registry)
    return registry
