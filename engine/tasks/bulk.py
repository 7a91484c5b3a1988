"""Bulk actions: claim, assign or decide up to :data:`MAX_BULK_TASKS` tasks at once.

Each item goes through the ordinary :class:`~engine.tasks.service.TaskService` — the same permissions,
approval policies and separation of duties, its own transition — so one refusal undoes nothing else, and
each item reports its own outcome: the task as it is after, or its typed error (a database outage during
the item too, as :class:`~engine.errors.UnavailableError`). A dry run rehearses each
item in the same way and rolls it back: what it reports is what would happen (the rules are checked on the
task as it is now), and nothing is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import FieldError, StepwiseError, UnavailableError, ValidationError
from engine.idempotency import MAX_KEY_LENGTH, IdempotentRequest
from engine.state import Task, User
from engine.storage.outages import database_unavailable
from engine.tasks.service import TaskService

MAX_BULK_TASKS = 500
CONCURRENCY = 8
"""Items run side by side, this many at a time: each holds a connection for its transition."""
DECISIONS = ("approved", "rejected")
MAX_BULK_KEY_LENGTH = MAX_KEY_LENGTH - 37  # "#" and a task id


@dataclass(frozen=True)
class BulkItem:
    """One task's outcome: ``task`` after the action (or, in a dry run, as it would be), or ``error``."""

    task_id: str
    task: Task | None = None
    error: StepwiseError | None = None


class BulkTaskService:
    def __init__(self, tasks: TaskService) -> None:
        self.tasks = tasks
        self.rehearsal = tasks.rehearsal()

    async def claim(
        self, user: User, task_ids: Sequence[str], *, dry_run: bool = False, idempotency_key: str | None = None
    ) -> list[BulkItem]:
        service = self.rehearsal if dry_run else self.tasks
        return await self._each(
            user, task_ids, "claimTasks", {}, idempotency_key, dry_run, lambda task_id: service.claim(user, task_id)
        )

    async def assign(
        self, user: User, task_ids: Sequence[str], assignee_id: str | None, *, dry_run: bool = False,
        idempotency_key: str | None = None,
    ) -> list[BulkItem]:  # fmt: skip
        service = self.rehearsal if dry_run else self.tasks
        return await self._each(
            user,
            task_ids,
            "assignTasks",
            {"userId": assignee_id},
            idempotency_key,
            dry_run,
            lambda task_id: service.assign(user, task_id, assignee_id),
        )

    async def decide(
        self, user: User, task_ids: Sequence[str], decision: str, comment: str | None, *, dry_run: bool = False,
        idempotency_key: str | None = None,
    ) -> list[BulkItem]:  # fmt: skip
        if decision not in DECISIONS:
            raise ValidationError(f"decision must be one of {', '.join(DECISIONS)}",
                                  [FieldError("decision", "must be approved or rejected", "INVALID")])  # fmt: skip
        service = self.rehearsal if dry_run else self.tasks
        return await self._each(
            user,
            task_ids,
            "decideTasks",
            {"decision": decision, "comment": comment},
            idempotency_key,
            dry_run,
            lambda task_id: service.decide(user, task_id, decision, comment, None, None),
        )

    async def _each(
        self, user: User, task_ids: Sequence[str], operation: str, shared_input: dict[str, Any], key: str | None,
        dry_run: bool, act: Callable[[str], Awaitable[Task]],
    ) -> list[BulkItem]:  # fmt: skip
        _check_ids(task_ids)
        if key is not None and not dry_run and not 0 < len(key) <= MAX_BULK_KEY_LENGTH:
            problem = f"must be 1 to {MAX_BULK_KEY_LENGTH} characters"  # each item's key is it plus the task id
            raise ValidationError(
                f"idempotencyKey {problem}", [FieldError("idempotencyKey", problem, "INVALID_LENGTH")]
            )
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(task_id: str) -> BulkItem:
            async with gate:
                try:
                    if key is None or dry_run:
                        return BulkItem(task_id, task=await act(task_id))
                    # Each item is exactly-once on its own: a repeat of the whole request answers each
                    # item as its first run did, and runs again only the items that failed then. The
                    # fingerprint is the item's whole input, so a repeat with another one is refused.
                    item_input = {"taskId": task_id, **shared_input}
                    request = IdempotentRequest.of(user.id, f"{key}#{task_id}", operation, item_input)
                    return BulkItem(
                        task_id, task=await self.tasks.engine.idempotency.run(request, lambda: act(task_id))
                    )
                except StepwiseError as error:
                    return BulkItem(task_id, error=error)
                except Exception as error:
                    if not database_unavailable(error):
                        raise
                    # This item's outage, not the request's: the items before it may have committed.
                    outage = UnavailableError("the database is not answering; try this task again shortly")
                    outage.__cause__ = error
                    return BulkItem(task_id, error=outage)

        return list(await asyncio.gather(*(one(task_id) for task_id in task_ids)))


def _check_ids(task_ids: Sequence[str]) -> None:
    problem: str | None = None
    if not task_ids:
        problem, code = "name at least one task", "REQUIRED"
    elif len(task_ids) > MAX_BULK_TASKS:
        problem, code = f"at most {MAX_BULK_TASKS} tasks at once, not {len(task_ids)}", "TOO_MANY"
    elif len(set(task_ids)) != len(task_ids):
        problem, code = "names a task more than once", "DUPLICATE"
    if problem is not None:
        raise ValidationError(f"taskIds {problem}", [FieldError("taskIds", problem, code)])
