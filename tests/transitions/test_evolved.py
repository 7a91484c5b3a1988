"""The transition's copy of a task or an instance with some fields changed is what dataclasses.replace makes."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime
from typing import Any

from engine.definitions.model import Priority
from engine.state import InstanceStatus, Task, TaskKind, TaskStatus, Token, WorkflowInstance
from engine.transitions.transition import _evolved

NOW = datetime(2026, 1, 5, 9, tzinfo=UTC)


def test_a_changed_task_and_instance_equal_their_replace_and_leave_the_original() -> None:
    task = Task(
        id="t-1", workflow_instance_id="i-1", step_instance_id="s-1", token_id="k-1", node_id="approve",
        kind=TaskKind.USER, type="APPROVAL", schema_type="userTask.approval", name="Approve", title="Approve",
        description=None, signal_name=None, assigned_role="approver", assigned_user_id=None, assigned_group=None,
        status=TaskStatus.PENDING, priority=Priority.HIGH, input={}, output=None, draft=None, revision=0,
        created_at=NOW, updated_at=NOW,
    )  # fmt: skip
    changes: dict[str, Any] = {"status": TaskStatus.COMPLETED, "revision": 1, "output": {"decision": "approved"}}
    changed = _evolved(task, **changes)
    assert changed == replace(task, **changes)
    assert task.status is TaskStatus.PENDING and task.revision == 0, "the original is unchanged"
    assert all(getattr(changed, f.name) == getattr(replace(task, **changes), f.name) for f in fields(Task))

    instance = WorkflowInstance(
        id="i-1", definition_key="approval", definition_version=1, status=InstanceStatus.RUNNING, data={},
        tokens=(Token(id="k-1", node_id="approve"),), started_by="alice", started_at=NOW, updated_at=NOW,
    )  # fmt: skip
    finished = _evolved(instance, status=InstanceStatus.COMPLETED, tokens=(), revision=1)
    assert finished == replace(instance, status=InstanceStatus.COMPLETED, tokens=(), revision=1)
    assert instance.tokens and instance.revision == 0
