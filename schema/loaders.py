"""Per-request DataLoaders: nested fields batch their look-ups, so a page of tasks costs a constant
number of queries however many tasks it holds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
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


@dataclass
class DataLoaders:
    users: DataLoader[str, User | None]
    tasks: DataLoader[str, Task | None]
    instances: DataLoader[str, WorkflowInstance | None]
    """Without their data (read as ``{}``): what relations and permission checks need of an instance."""
    instances_with_data: DataLoader[str, WorkflowInstance | None]
    steps: DataLoader[str, StepInstance | None]
    titled_steps: DataLoader[str, TitledStep | None]
    step_metrics: DataLoader[str, StepMetrics]
    instance_tasks: DataLoader[str, list[Task]]
    instance_task_summaries: DataLoader[str, list[Task]]
    """Without their values (``input``, ``output``, ``draft``): for a list that shows none of them."""
    instance_steps: DataLoader[str, list[StepInstance]]
    messages: DataLoader[str, list[TaskMessage]]
    documents: DataLoader[str, list[Document]]
    attempts: DataLoader[str, list[TaskAttempt]]
    escalations: DataLoader[str, list[TaskEscalation]]
    held_signals: DataLoader[str, list[state.HeldSignal]]
    """An instance's held signals, applied ones too, oldest first."""
    definitions: DataLoader[tuple[str, int], WorkflowDefinition]

    @classmethod
    def create(cls, engine: Engine, sessions: ReadSessions | None = None) -> DataLoaders:
        read = sessions or engine.db.read

        async def definitions(keys: Sequence[tuple[str, int]]) -> list[WorkflowDefinition]:
            # The engine caches deployed versions (they never change); a cold cache costs one read
            # per distinct version, not one per task asking for it, on the query's own connection.
            async with read() as session:
                found = {key: await engine.definition(*key, executor=session) for key in dict.fromkeys(keys)}
            return [found[key] for key in keys]

        def instance_tasks(summary: bool) -> Callable[[AsyncSession, list[str]], Awaitable[dict[str, list[Task]]]]:
            async def fetch(session: AsyncSession, ids: list[str]) -> dict[str, list[Task]]:
                grouped: dict[str, list[Task]] = {key: [] for key in ids}
                for task in await TaskRepository(session).find_by_instances(ids, summary=summary):
                    grouped[task.workflow_instance_id].append(task)
                return grouped

            return fetch

        async def instance_steps(session: AsyncSession, ids: list[str]) -> dict[str, list[StepInstance]]:
            grouped: dict[str, list[StepInstance]] = {key: [] for key in ids}
            for step in await InstanceRepository(session).steps_of(ids):
                grouped[step.workflow_instance_id].append(step)
            return grouped

        async def titled_steps(session: AsyncSession, ids: list[str]) -> dict[str, TitledStep]:
            # One batch and one statement, not three rounds (steps, their instances, definitions): a
            # 50-task page spent 8 of its 20 ms of CPU there. Definitions come from the engine's cache.
            found = await InstanceRepository(session).get_steps_with_definitions(ids)
            titled = {}
            for step_id, (step, key, version) in found.items():
                definition = await engine.definition(key, version, executor=session)
                titled[step_id] = TitledStep(step, definition.step_title(step.step_key))
            return titled

        return cls(
            users=_loader(read, lambda s, ids: DirectoryRepository(s).get_users(ids), _none),
            tasks=_loader(read, lambda s, ids: TaskRepository(s).get_many(ids), _none),
            instances=_loader(read, lambda s, ids: InstanceRepository(s).get_many(ids, summary=True), _none),
            instances_with_data=_loader(read, lambda s, ids: InstanceRepository(s).get_many(ids), _none),
            steps=_loader(read, lambda s, ids: InstanceRepository(s).get_steps(ids), _none),
            titled_steps=_loader(read, titled_steps, _none),
            step_metrics=_loader(read, lambda s, ids: TaskRepository(s).step_metrics(ids), StepMetrics),
            instance_tasks=_loader(read, instance_tasks(summary=False), list),
            instance_task_summaries=_loader(read, instance_tasks(summary=True), list),
            instance_steps=_loader(read, instance_steps, list),
            messages=_loader(read, lambda s, ids: TaskDetailsRepository(s).messages_of(ids), list),
            documents=_loader(read, lambda s, ids: TaskDetailsRepository(s).documents_of(ids), list),
            attempts=_loader(read, lambda s, ids: TaskDetailsRepository(s).attempts_of(ids), list),
            escalations=_loader(read, lambda s, ids: EscalationRepository(s).of_tasks(ids), list),
            held_signals=_loader(read, held_signals_of, list),
            definitions=DataLoader(load_fn=definitions),
        )
