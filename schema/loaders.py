"""Per-request DataLoaders: nested fields batch their look-ups, so a page of tasks costs a constant
number of queries however many tasks it holds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader

from engine import (
    DirectoryRepository,
    Document,
    Engine,
    EscalationRepository,
    InstanceRepository,
    ReadSessions,
    StepInstance,
    StepMetrics,
    Task,
    TaskAttempt,
    TaskDetailsRepository,
    TaskEscalation,
    TaskMessage,
    TaskRepository,
    User,
    WorkflowDefinition,
    WorkflowInstance,
    held_signals_of,
    state,
)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _loader(
    sessions: ReadSessions,
    fetch: Callable[[AsyncSession, list[str]], Awaitable[Mapping[str, Any]]],
    default: Callable[[], V],
) -> DataLoader[str, V]:
    async def load(keys: Sequence[str]) -> list[V]:
        async with sessions() as session:
            found = await fetch(session, list(keys))
        return [found.get(key, default()) for key in keys]

    return DataLoader(load_fn=load)


async def load_all(loader: DataLoader[K, V], keys: Iterable[K]) -> dict[K, V]:
    """What ``loader`` holds for each of ``keys``, for a resolver that knows all its keys at once.

    ``load_many`` gives every key a future, a batch entry and a slot in a gather (for a 50-task
    page's steps and assignees, 4% of its CPU). Here the keys the request has not loaded yet go to
    the loader's batch function together, and their values are cached for the request's later loads.
    """
    found: dict[K, V] = {}
    missing = []
    for key in dict.fromkeys(keys):
        cached = loader.cache_map.get(key) if loader.cache else None
        if cached is not None and cached.done() and not cached.cancelled() and cached.exception() is None:
            found[key] = cached.result()
        else:
            missing.append(key)
    if missing:
        loaded: dict[K, V] = {}
        for key, value in zip(missing, await loader.load_fn(missing), strict=True):
            if isinstance(value, BaseException):  # a batch function's way to fail one key (load would raise)
                raise value
            loaded[key] = value
        loader.prime_many(loaded)
        found.update(loaded)
    return found


def _none() -> None:
    return None


@dataclass(frozen=True)
class TitledStep:
    """A step instance with its title from the instance's definition: what a task's ``step`` shows."""

    step: StepInstance
    title: str


class DataLoaders:
    """A request's loaders, each made when first used: a request uses a few of them, and fifteen
    DataLoaders made for each request and again for each query were some 0.2 M instructions of a
    ``{ me { id } }`` (bench.instructions)."""

    def __init__(self, engine: Engine, sessions: ReadSessions | None = None) -> None:
        self.engine = engine
        self.read: ReadSessions = sessions or engine.db.read

    @classmethod
    def create(cls, engine: Engine, sessions: ReadSessions | None = None) -> DataLoaders:
        return cls(engine, sessions)

    @cached_property
    def users(self) -> DataLoader[str, User | None]:
        return _loader(self.read, lambda s, ids: DirectoryRepository(s).get_users(ids), _none)

    @cached_property
    def tasks(self) -> DataLoader[str, Task | None]:
        return _loader(self.read, lambda s, ids: TaskRepository(s).get_many(ids), _none)

    @cached_property
    def instances(self) -> DataLoader[str, WorkflowInstance | None]:
        """Without their data (read as ``{}``): what relations and permission checks need of an instance."""
        return _loader(self.read, lambda s, ids: InstanceRepository(s).get_many(ids, summary=True), _none)

    @cached_property
    def instances_with_data(self) -> DataLoader[str, WorkflowInstance | None]:
        return _loader(self.read, lambda s, ids: InstanceRepository(s).get_many(ids), _none)

    @cached_property
    def steps(self) -> DataLoader[str, StepInstance | None]:
        return _loader(self.read, lambda s, ids: InstanceRepository(s).get_steps(ids), _none)

    @cached_property
    def titled_steps(self) -> DataLoader[str, TitledStep | None]:
        engine = self.engine

        async def titled_steps(session: AsyncSession, ids: list[str]) -> dict[str, TitledStep]:
            # One batch and one statement, not three rounds (steps, their instances, definitions): a
            # 50-task page spent 8 of its 20 ms of CPU there. Definitions come from the engine's cache.
            found = await InstanceRepository(session).get_steps_with_definitions(ids)
            titled = {}
            for step_id, (step, key, version) in found.items():
                definition = await engine.definition(key, version, executor=session)
                titled[step_id] = TitledStep(step, definition.step_title(step.step_key))
            return titled

        return _loader(self.read, titled_steps, _none)

    @cached_property
    def step_metrics(self) -> DataLoader[str, StepMetrics]:
        return _loader(self.read, lambda s, ids: TaskRepository(s).step_metrics(ids), StepMetrics)

    @cached_property
    def instance_tasks(self) -> DataLoader[str, list[Task]]:
        return _loader(self.read, _instance_tasks(summary=False), list)

    @cached_property
    def instance_task_summaries(self) -> DataLoader[str, list[Task]]:
        """Without their values (``input``, ``output``, ``draft``): for a list that shows none of them."""
        return _loader(self.read, _instance_tasks(summary=True), list)

    @cached_property
    def instance_steps(self) -> DataLoader[str, list[StepInstance]]:
        async def instance_steps(session: AsyncSession, ids: list[str]) -> dict[str, list[StepInstance]]:
            grouped: dict[str, list[StepInstance]] = {key: [] for key in ids}
            for step in await InstanceRepository(session).steps_of(ids):
                grouped[step.workflow_instance_id].append(step)
            return grouped

        return _loader(self.read, instance_steps, list)

    @cached_property
    def messages(self) -> DataLoader[str, list[TaskMessage]]:
        return _loader(self.read, lambda s, ids: TaskDetailsRepository(s).messages_of(ids), list)

    @cached_property
    def documents(self) -> DataLoader[str, list[Document]]:
        return _loader(self.read, lambda s, ids: TaskDetailsRepository(s).documents_of(ids), list)

    @cached_property
    def attempts(self) -> DataLoader[str, list[TaskAttempt]]:
        return _loader(self.read, lambda s, ids: TaskDetailsRepository(s).attempts_of(ids), list)

    @cached_property
    def escalations(self) -> DataLoader[str, list[TaskEscalation]]:
        return _loader(self.read, lambda s, ids: EscalationRepository(s).of_tasks(ids), list)

    @cached_property
    def held_signals(self) -> DataLoader[str, list[state.HeldSignal]]:
        """An instance's held signals, applied ones too, oldest first."""
        return _loader(self.read, held_signals_of, list)

    @cached_property
    def definitions(self) -> DataLoader[tuple[str, int], WorkflowDefinition]:
        engine, read = self.engine, self.read

        async def definitions(keys: Sequence[tuple[str, int]]) -> list[WorkflowDefinition]:
            # The engine caches deployed versions (they never change); a cold cache costs one read
            # per distinct version, not one per task asking for it, on the query's own connection.
            async with read() as session:
                found = {key: await engine.definition(*key, executor=session) for key in dict.fromkeys(keys)}
            return [found[key] for key in keys]

        return DataLoader(load_fn=definitions)


def _instance_tasks(summary: bool) -> Callable[[AsyncSession, list[str]], Awaitable[dict[str, list[Task]]]]:
    async def fetch(session: AsyncSession, ids: list[str]) -> dict[str, list[Task]]:
        grouped: dict[str, list[Task]] = {key: [] for key in ids}
        for task in await TaskRepository(session).find_by_instances(ids, summary=summary):
            grouped[task.workflow_instance_id].append(task)
        return grouped

    return fetch
