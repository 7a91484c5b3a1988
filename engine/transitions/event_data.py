"""What a transition's task events record of a task's change, so a task's history shows it as it
happened (the log's readers see the task only as it is now)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.definitions.model import APPROVAL_SCHEMA_TYPE
from engine.state import Task, TaskStatus
from engine.tasks import policies


def created_data(task: Task) -> dict[str, Any]:
    """What a ``CREATED`` event records: the status and assignee the task starts with."""
    data: dict[str, Any] = {"status": {"from": None, "to": task.status.value}, "revision": task.revision}
    if task.assigned_user_id is not None:
        data["assignee"] = {"from": None, "to": task.assigned_user_id}
    return data


def changes_between(before: Task, after: Task) -> dict[str, Any]:
    """What an event records of a task's change, so its history shows it as it happened (the log's
    readers see the task only as it is now): the status and assignee from and to where they changed,
    the revision the change made (a saved draft's revision), and an approval's decision."""
    data: dict[str, Any] = {"revision": after.revision}
    if before.status is not after.status:
        data["status"] = {"from": before.status.value, "to": after.status.value}
    if before.assigned_user_id != after.assigned_user_id:
        data["assignee"] = {"from": before.assigned_user_id, "to": after.assigned_user_id}
    if before.delegated_to != after.delegated_to:
        data["delegatedTo"] = {"from": before.delegated_to, "to": after.delegated_to}
    made = policies.decisions(after)[len(policies.decisions(before)) :]
    if made:  # one approver's decision under an approval policy: who decided what, at which level
        last = made[-1]
        data["approverDecision"] = {"by": last.by, "decision": last.decision, "comment": last.comment,
                                    "level": last.level}  # fmt: skip
    if after.schema_type == APPROVAL_SCHEMA_TYPE and after.status is TaskStatus.COMPLETED:
        output = after.output if isinstance(after.output, Mapping) else {}
        data["decision"] = output.get("decision")
        if output.get("comment") is not None:
            data["comment"] = output["comment"]
    return data
