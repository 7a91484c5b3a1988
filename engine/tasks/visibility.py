"""Who may see a task, a workflow instance, a step instance: each read returns the object, or
``NotFoundError`` for those who may not see it, so that existence does not leak. The rules are
:mod:`engine.tasks.permissions`'; every entry point asks here."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from engine.errors import ForbiddenError, NotFoundError
from engine.state import StepInstance, Task, User, WorkflowInstance
from engine.storage.database import ReadSessions
from engine.storage.directory import DirectoryRepository
from engine.storage.instances import InstanceRepository
from engine.storage.task_events import HistoryPage, TaskEventRepository, history_page_start
from engine.storage.tasks import TaskRepository
from engine.tasks import permissions
from engine.transitions.engine import Engine


class VisibilityService:
    """Each read runs in ``read``'s session (a caller's shared one, e.g. a GraphQL query's), by
    default in one of its own."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def task(self, user: User, task_id: str, read: ReadSessions | None = None) -> Task:
        """The task if ``user`` may see it."""
        async with (read or self.engine.db.read)() as session:
            task = await TaskRepository(session).get_by_id(task_id)
            instances = InstanceRepository(session)
            instance = await instances.get(task.workflow_instance_id, summary=True) if task else None
        if task is None or instance is None or not permissions.can_see_task(user, task, instance.started_by):
            raise NotFoundError(f"no task {task_id}")
        return task

    async def instance(
        self, user: User, workflow_instance_id: str, read: ReadSessions | None = None, *, summary: bool = False
    ) -> WorkflowInstance:
        """The instance if ``user`` may see it (starter, supervisor, or can see one of its tasks);
        ``summary``: without its data (read as ``{}``), for a caller that does not show it."""
        async with (read or self.engine.db.read)() as session:  # NotFound after it: a shared one rolls back on errors
            instance = await InstanceRepository(session).get(workflow_instance_id, summary=summary)
            if instance is not None and not permissions.can_see_instance(user, instance, ()):
                if not permissions.can_see_instance(user, instance, await self._tasks_of(session, instance)):
                    instance = None
        if instance is None:
            raise NotFoundError(f"no workflow instance {workflow_instance_id}")
        return instance

    async def step(
        self, user: User, step_id: str, read: ReadSessions | None = None
    ) -> tuple[StepInstance, WorkflowInstance]:
        """The step instance and its workflow instance (without its data), if ``user`` may see the instance
        (a step page shows what its instance shows)."""
        async with (read or self.engine.db.read)() as session:
            repository = InstanceRepository(session)
            step = await repository.get_step(step_id)
            instance = await repository.get(step.workflow_instance_id, summary=True) if step is not None else None
            assert step is None or instance is not None, "a step's instance always exists (foreign key)"
            if instance is not None and not permissions.can_see_instance(user, instance, ()):
                if not permissions.can_see_instance(user, instance, await self._tasks_of(session, instance)):
                    instance = None
        if step is None or instance is None:
            raise NotFoundError(f"no step instance {step_id}")
        return step, instance

    async def users(self, user: User, read: ReadSessions | None = None) -> list[User]:
        """The directory, for those who may assign tasks to anyone (supervisors: the assign picker)."""
        if not permissions.is_supervisor(user):
            raise ForbiddenError("only admins and managers may list the users")
        return await self.directory(read)

    async def directory(self, read: ReadSessions | None = None) -> list[User]:
        """Every user, unchecked: for the development sign-in's user list (``STEPWISE_DEV``) only."""
        async with (read or self.engine.db.read)() as session:
            return await DirectoryRepository(session).list_users()

    async def user(self, user_id: str, read: ReadSessions | None = None) -> User:
        """One user, unchecked (``NotFoundError`` when the directory has none): the development sign-in."""
        async with (read or self.engine.db.read)() as session:
            found = await DirectoryRepository(session).get_user(user_id)
        if found is None:
            raise NotFoundError(f"no user {user_id}")
        return found

    async def task_history(
        self, user: User, task_id: str, first: int, after: str | None, read: ReadSessions | None = None
    ) -> HistoryPage:
        """A page of the task's events, oldest first, if ``user`` may see the task (who may see a task
        may see its history)."""
        after_id = history_page_start(first, after)
        async with (read or self.engine.db.read)() as session:
            task = await TaskRepository(session).get_by_id(task_id)
            instance = await InstanceRepository(session).get(task.workflow_instance_id, summary=True) if task else None
            if task is None or instance is None or not permissions.can_see_task(user, task, instance.started_by):
                found = None
            else:
                found = await TaskEventRepository(session).history(task_ids=[task.id], after_id=after_id, limit=first)
        if found is None:
            raise NotFoundError(f"no task {task_id}")
        return HistoryPage(*found)

    async def instance_history(
        self, user: User, workflow_instance_id: str, first: int, after: str | None, read: ReadSessions | None = None
    ) -> HistoryPage:
        """A page of the events of the instance's tasks that ``user`` may see, oldest first, if ``user``
        may see the instance (as its ``tasks`` list shows only those tasks)."""
        after_id = history_page_start(first, after)
        async with (read or self.engine.db.read)() as session:
            instance = await InstanceRepository(session).get(workflow_instance_id, summary=True)
            found = None
            if instance is not None:
                events = TaskEventRepository(session)
                if permissions.can_see_instance(user, instance, ()):
                    found = await events.history(workflow_instance_id=instance.id, after_id=after_id, limit=first)
                else:
                    tasks = await self._tasks_of(session, instance)
                    if permissions.can_see_instance(user, instance, tasks):
                        visible = [t.id for t in tasks if permissions.can_see_task(user, t, instance.started_by)]
                        found = await events.history(task_ids=visible, after_id=after_id, limit=first)
        if found is None:
            raise NotFoundError(f"no workflow instance {workflow_instance_id}")
        return HistoryPage(*found)

    @staticmethod
    async def _tasks_of(session: AsyncSession, instance: WorkflowInstance) -> list[Task]:
        return await TaskRepository(session).find_by_instances([instance.id], summary=True)
