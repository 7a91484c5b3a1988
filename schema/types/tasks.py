"""Tasks, step instances, workflow instances and their connections: one module, as they refer to
each other (each resolves the others at run time, and the import-boundary test counts a deferred import
as the cycle it is). What a task shows of itself alone is its base, ``schema/types/task_fields.py``. Each
keeps its engine dataclass in a private field and resolves relations through the request's DataLoaders."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime

import strawberry
from strawberry.scalars import JSON
from strawberry.types.nodes import Selection

from engine import (
    NotFoundError,
    TaskQuery,
    ValidationError,
    count_beside,
    page_with_cursors,
    permissions,
    state,
    task_search,
)
from schema.context import Info
from schema.inbox import bad_user_input, running
from schema.loaders import TitledStep, load_all
from schema.selections import selected_names, shows_task_values
from schema.sharing import same_for_every_viewer
from schema.types.details import HeldSignal
from schema.types.enums import WorkflowStatus
from schema.types.history import HistoryConnection, instance_history, task_history
from schema.types.paging import PageInfo
from schema.types.task_fields import TaskFields, definition_of
from schema.types.user import User, load_user


async def load_task(info: Info, task_id: str) -> Task:
    """A task already known to be visible to the viewer (e.g. one whose history it reads)."""
    found = await info.context.loaders.tasks.load(task_id)
    assert found is not None, "a task is never deleted"
    return Task.from_domain(found)


@strawberry.type
class StepMetrics:
    total: int
    active: int
    completed: int
    blocked: int


@strawberry.type
class StepInstance:
    id: strawberry.ID
    key: str
    title: str
    milestone_key: str
    source: strawberry.Private[state.StepInstance]

    @classmethod
    async def from_domain(cls, info: Info, step: state.StepInstance) -> StepInstance:
        definition = await definition_of(info, step.workflow_instance_id)
        return cls.titled(TitledStep(step, definition.step_title(step.step_key)))

    @classmethod
    def titled(cls, titled: TitledStep) -> StepInstance:
        step = titled.step
        return cls(id=strawberry.ID(step.id), key=step.step_key, title=titled.title, milestone_key=step.milestone_key,
                   source=step)  # fmt: skip

    @strawberry.field(description="Total, active, completed and blocked tasks (docs/design.md §1).")
    @same_for_every_viewer
    async def metrics(self, info: Info) -> StepMetrics:
        m = await info.context.loaders.step_metrics.load(self.source.id)
        return StepMetrics(total=m.total, active=m.active, completed=m.completed, blocked=m.blocked)

    @strawberry.field(description="The workflow instance the step belongs to.")
    @same_for_every_viewer
    async def workflow_instance(self, info: Info) -> WorkflowInstance:
        # A step is visible exactly when its instance is (engine.tasks.visibility), and every way to a step
        # passes a check of one or the other; the loader has the instance already (the step's title was read
        # from its definition).
        instance = await info.context.loaders.instances.load(self.source.workflow_instance_id)
        assert instance is not None, "a step's instance always exists (foreign key)"
        return WorkflowInstance.from_domain(instance, summary=True)

    @strawberry.field
    async def tasks(
        self, info: Info, assigned_to_me: bool = False, show_completed: bool = True, first: int = 50,
        after: str | None = None,
    ) -> TaskConnection:  # fmt: skip
        query = TaskQuery(
            step_instance_id=self.source.id, assigned_to_me=assigned_to_me, include_completed=show_completed
        )
        return await TaskConnection.search(info, query, first, after)


@strawberry.type
class Task(TaskFields):
    """A task with what relates it to its workflow (its step, its instance, its history) and what the viewer
    may do with it; its own fields are :class:`~schema.types.task_fields.TaskFields`'."""

    @strawberry.field
    @same_for_every_viewer
    async def step(self, info: Info) -> StepInstance:
        titled = await info.context.loaders.titled_steps.load(self.source.step_instance_id)
        assert titled is not None, "a task's step always exists (foreign key)"
        return StepInstance.titled(titled)

    @strawberry.field
    @same_for_every_viewer
    async def workflow_instance(self, info: Info) -> WorkflowInstance:
        instance = await info.context.loaders.instances.load(self.source.workflow_instance_id)
        assert instance is not None
        return WorkflowInstance.from_domain(instance, summary=True)

    @strawberry.field(description="The task's events, oldest first: who did what, when, and what it changed.")
    async def history(self, info: Info, first: int = 50, after: str | None = None) -> HistoryConnection:
        page = await task_history(info, self.source.id, first, after)
        return HistoryConnection.of(page, lambda task_id: load_task(info, task_id))

    @strawberry.field
    def viewer_can_claim(self, info: Info) -> bool:
        return permissions.can_claim(info.context.user, self.source)

    @strawberry.field
    def viewer_can_complete(self, info: Info) -> bool:
        return permissions.can_complete(info.context.user, self.source)

    @strawberry.field
    def viewer_can_assign(self, info: Info) -> bool:
        return permissions.can_assign(info.context.user, self.source)

    @strawberry.field
    def viewer_can_delegate(self, info: Info) -> bool:
        return permissions.can_delegate(info.context.user, self.source)

    @strawberry.field
    def viewer_can_resolve(self, info: Info) -> bool:
        return permissions.can_resolve(info.context.user, self.source)

    @strawberry.field
    def viewer_can_retry(self, info: Info) -> bool:
        return permissions.can_retry(info.context.user, self.source)


@strawberry.type
class TaskEdge:
    cursor: str
    node: Task


@strawberry.type
class TaskConnection:
    edges: list[TaskEdge]
    page_info: PageInfo
    total_count: int

    @classmethod
    async def search(cls, info: Info, query: TaskQuery, first: int, after: str | None) -> TaskConnection:
        """A page of the tasks the viewer may see that match ``query``; bad paging arguments are BAD_USER_INPUT.

        The tasks' values (``input``, ``output``, ``draft``) are read only when selected: each may be as
        large as the size limit, and an inbox page shows none of them. ``totalCount`` is counted only when
        selected, and on a connection of its own while the page is read and built when the pool has one to
        spare (else after the page, on the query's): the count scans the index entries of every matching
        task (at a million tasks, a role's 11,000 open ones: 3-4 ms of PostgreSQL's time,
        bench.inbox_scaling), the page 51 rows.
        """
        try:
            search = task_search(info.context.user, query, first, after)
        except ValidationError as exc:
            raise bad_user_input(exc) from exc
        selections = info.selected_fields[0].selections
        counted = "totalCount" in selected_names(selections, ())
        summary = not shows_task_values(selections, ("edges", "node"))
        async with running(
            count_beside(info.context.engine.db, search, info.context.read) if counted else None
        ) as total:
            async with info.context.read() as session:
                tasks, has_next = await page_with_cursors(session, search, summary=summary)
            return await cls.page(info, selections, tasks, has_next, total)

    @classmethod
    async def page(
        cls, info: Info, selections: list[Selection], tasks: list[tuple[state.Task, str]], has_next: bool,
        total: Awaitable[int] | None,
    ) -> TaskConnection:  # fmt: skip
        """The page, with the relations ``selections`` select on its tasks loaded for all of them at
        once; ``total`` is awaited last (a count that runs meanwhile), and is None when not selected."""
        edges = [TaskEdge(cursor=cursor, node=Task.from_domain(t)) for t, cursor in tasks]
        end = edges[-1].cursor if edges else None
        nodes = [edge.node for edge in edges]
        wanted = selected_names(selections, ("edges", "node")) if nodes else set()
        loaders = info.context.loaders
        if "step" in wanted:
            titled = await load_all(loaders.titled_steps, (node.source.step_instance_id for node in nodes))
            for node in nodes:
                step = titled[node.source.step_instance_id]
                assert step is not None, "a task's step always exists (foreign key)"
                node.prefetched["step"] = StepInstance.titled(step)
        if "assignee" in wanted:
            user_ids = sorted({node.source.assigned_user_id for node in nodes if node.source.assigned_user_id})
            users = await load_all(loaders.users, user_ids)
            for node in nodes:
                user_id = node.source.assigned_user_id
                node.prefetched["assignee"] = None if user_id is None else User.of(users[user_id], user_id)
        total_count = 0 if total is None else await total  # 0: never shown, the query does not select it
        return cls(edges=edges, page_info=PageInfo(has_next_page=has_next, end_cursor=end), total_count=total_count)


@strawberry.type
class Milestone:
    key: str
    title: str
    steps: list[StepInstance]


@strawberry.type
class WorkflowInstance:
    id: strawberry.ID
    definition_key: str
    definition_version: int
    status: WorkflowStatus
    started_at: datetime
    completed_at: datetime | None
    source: strawberry.Private[state.WorkflowInstance]
    summary: strawberry.Private[bool] = False
    """``source`` was read without its data (which may hold every input and output the instance stored)."""

    @classmethod
    def from_domain(cls, instance: state.WorkflowInstance, *, summary: bool = False) -> WorkflowInstance:
        return cls(
            id=strawberry.ID(instance.id), definition_key=instance.definition_key,
            definition_version=instance.definition_version, status=instance.status,
            started_at=instance.started_at, completed_at=instance.completed_at, source=instance, summary=summary,
        )  # fmt: skip

    @strawberry.field
    async def data(self, info: Info) -> JSON:
        if not self.summary:
            return JSON(dict(self.source.data))
        full = await info.context.loaders.instances_with_data.load(self.source.id)
        assert full is not None, "an instance is never deleted"
        return JSON(dict(full.data))

    @strawberry.field
    @same_for_every_viewer
    async def started_by(self, info: Info) -> User:
        user = await load_user(info, self.source.started_by)
        assert user is not None
        return user

    @strawberry.field(description="The milestone timeline: every milestone, with the steps reached so far.")
    @same_for_every_viewer
    async def milestones(self, info: Info) -> list[Milestone]:
        definition = await definition_of(info, self.source.id)
        reached = {s.step_key: s for s in await info.context.loaders.instance_steps.load(self.source.id)}
        timeline = []
        for milestone in definition.milestones:
            steps = [await StepInstance.from_domain(info, reached[s.key]) for s in milestone.steps if s.key in reached]
            timeline.append(Milestone(key=milestone.key, title=milestone.title, steps=steps))
        return timeline

    @strawberry.field(
        description="The events of the instance's tasks that the viewer may see, oldest first (the tasks "
        "`tasks` lists)."
    )
    async def history(self, info: Info, first: int = 50, after: str | None = None) -> HistoryConnection:
        page = await instance_history(info, self.source.id, first, after)
        return HistoryConnection.of(page, lambda task_id: load_task(info, task_id))

    @strawberry.field(description="The business key it was started with (unique per definition).")
    def correlation_key(self) -> str | None:
        return self.source.correlation_key

    @strawberry.field(
        description="Signals sent to nodes before a token reached them, oldest first: applied or still waiting."
    )
    async def held_signals(self, info: Info) -> list[HeldSignal]:
        return [HeldSignal.from_domain(signal) for signal in await self._held_signals(info)]

    @strawberry.field(description="Once the instance has ended: the held signals no token ever came for.")
    async def unused_signals(self, info: Info) -> list[HeldSignal]:
        if not self.source.status.is_final:
            return []
        return [
            HeldSignal.from_domain(signal) for signal in await self._held_signals(info) if signal.applied_at is None
        ]

    async def _held_signals(self, info: Info) -> list[state.HeldSignal]:
        """Whoever may see the instance reads them (docs/permissions.md), checked and read in batches for
        a page of instances: its tasks (when the viewer is neither its starter nor a supervisor) and its
        signals each come from one look-up for the page."""
        user, loaders = info.context.user, info.context.loaders
        if not permissions.can_see_instance(user, self.source, ()):
            tasks = await loaders.instance_task_summaries.load(self.source.id)
            if not permissions.can_see_instance(user, self.source, tasks):
                raise NotFoundError(f"no workflow instance {self.source.id}")
        return await loaders.held_signals.load(self.source.id)

    @strawberry.field(description="The tasks of this instance the viewer may see, oldest first.")
    async def tasks(self, info: Info) -> list[Task]:
        user, loaders = info.context.user, info.context.loaders
        shown = shows_task_values(info.selected_fields[0].selections, ())
        tasks = await (loaders.instance_tasks if shown else loaders.instance_task_summaries).load(self.source.id)
        return [Task.from_domain(t) for t in tasks if permissions.can_see_task(user, t, self.source.started_by)]
