"""What a transition reads, and that the shortcuts taken for speed keep the behaviour.

The starter's directory entry is read only when something may use more than ``startedBy.id``; the
latest definition is the latest one even when another process deployed it; a step is created once
per instance and found again without a read of its own; a signal is one read and one write, on
PostgreSQL without BEGIN or COMMIT (one write when its process remembers the instance:
tests/transitions/test_remembered.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import event, text

from engine.catalog import default_registry
from engine.clock import ManualClock
from engine.definitions.builder import WorkflowBuilder
from engine.definitions.model import WorkflowDefinition
from engine.definitions.registry import Assignment, NodeContext, UserTaskConfig
from engine.state import Task, TaskStatus, User
from engine.storage.database import Database
from engine.storage.directory import DirectoryRepository
from engine.storage.discussion import TaskDetailsRepository
from engine.storage.instances import InstanceRepository
from engine.storage.tasks import TaskRepository
from engine.tasks.service import TaskService
from engine.transitions.engine import Engine
from engine.transitions.variables import reads_starter_details

# What a transition that wrote events sends after its commit on PostgreSQL (or shares with others
# committing meanwhile): the numbering round of engine.events.numbering.
NUMBERING = "SELECT stepwise_number_events($1, $2) AS latest"


@dataclass
class Sent:
    statements: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    """BEGIN, COMMIT, ROLLBACK: the transaction's own round trips."""

    def add(self, sql: str) -> None:
        is_command = sql.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK"))
        (self.commands if is_command else self.statements).append(sql)

    @property
    def begun(self) -> int:
        return sum(command.lstrip().upper().startswith("BEGIN") for command in self.commands)


@asynccontextmanager
async def statements(db: Database) -> AsyncIterator[Sent]:
    """What went to the database, in order: SQLAlchemy's statements (its cursor events) and, on
    PostgreSQL, what SQLAlchemy does not see — a transition's last statement, which runs on the
    driver's own connection, and asyncpg's BEGIN and COMMIT (asyncpg's query loggers)."""
    sent = Sent()

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.add(statement)

    def log(query: Any) -> None:
        sent.add(query.query)

    def on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if db.dialect == "postgresql":
            dbapi_connection.driver_connection.add_query_logger(log)

    def on_checkin(dbapi_connection: Any, record: Any) -> None:
        if db.dialect == "postgresql" and dbapi_connection is not None:
            dbapi_connection.driver_connection.remove_query_logger(log)

    listeners: list[tuple[Any, str, Callable[..., None]]] = [(db.engine.sync_engine, "before_cursor_execute", record),
                 (db.engine.sync_engine.pool, "checkout", on_checkout),
                 (db.engine.sync_engine.pool, "checkin", on_checkin)]  # fmt: skip
    for listener in listeners:
        event.listen(*listener)
    try:
        yield sent
        await asyncio.sleep(0.05)  # asyncpg calls its loggers soon after a query, not during it
    finally:
        for listener in listeners:
            event.remove(*listener)


def reads_users(sent: Sent) -> bool:
    return any("FROM users" in statement for statement in sent.statements)


async def add_alice(db: Database, clock: ManualClock) -> None:
    async with db.transaction() as session:
        await DirectoryRepository(session).save_user("alice", "Alice Adams", "alice@example.com", ["requester"],
                                                     ["finance"], clock.now())  # fmt: skip


def one_task(title: str, *, when: str | None = None, **options: Any) -> WorkflowDefinition:
    builder = WorkflowBuilder("costs")
    builder.user_task("first", title="First", assign_to_role="clerk")
    builder.user_task("review", title=title, assign_to_role="clerk", **options)
    builder.edge("first", "review", when=when)
    return builder.build()


@pytest.mark.parametrize(
    ("title", "when", "reads"),
    [
        ("Review for {{ startedBy.id }}", None, False),
        ("Review {{ entityName }}", "amount > `10`", False),
        ("Review for {{ startedBy.name }}", None, True),
        ("Review for {{ startedBy['id'] }}", None, True),
        ("Review for {{ startedBy }}", None, True),
        ("Review for {{ startedBy.identity }}", None, True),
        ("Review", "startedBy.id == 'alice'", False),
        ("Review", "contains(startedBy.roles, 'vip')", True),
        ("Review", "length(keys(@)) > `3`", True),
        ("Review", "values(*) != `[]`", True),
    ],
)
def test_what_counts_as_reading_the_starter(title: str, when: str | None, reads: bool) -> None:
    assert reads_starter_details(one_task(title, when=when)) is reads


async def test_a_transition_reads_no_starter_when_only_its_id_is_used(
    engine: Engine, db: Database, clock: ManualClock
) -> None:
    await add_alice(db, clock)
    await engine.deploy(one_task("Review for {{ startedBy.id }}"))
    async with statements(db) as sent:
        instance = await engine.start("costs", {}, "alice")
        await engine.send_signal(instance.id, "first", {}, "alice")
    assert not reads_users(sent)
    async with db.read() as session:
        titles = [t.title for t in await TaskRepository(session).find_by_instance(instance.id)]
    assert titles == ["First", "Review for alice"]


async def test_a_transition_reads_the_starter_a_template_uses(engine: Engine, db: Database, clock: ManualClock) -> None:
    await add_alice(db, clock)
    await engine.deploy(one_task("Review for {{ startedBy.name }} ({{ startedBy.groups | join(',') }})"))
    async with statements(db) as sent:
        instance = await engine.start("costs", {}, "alice")
        await engine.send_signal(instance.id, "first", {}, "alice")
    assert reads_users(sent)
    async with db.read() as session:
        titles = [t.title for t in await TaskRepository(session).find_by_instance(instance.id)]
    assert titles == ["First", "Review for Alice Adams (finance)"]


async def test_a_condition_over_the_starter_sees_it(engine: Engine, db: Database, clock: ManualClock) -> None:
    await add_alice(db, clock)
    await engine.deploy(one_task("Review", when="contains(startedBy.roles, 'requester')"))
    instance = await engine.start("costs", {}, "alice")
    finished = await engine.send_signal(instance.id, "first", {}, "alice")
    assert [token.node_id for token in finished.tokens] == ["review"]


@dataclass(frozen=True)
class StarterEmail:
    """An assigner whose code reads the starter: the engine cannot see that in the definition."""

    name: str = "starterEmail"

    async def assign(self, context: NodeContext) -> Assignment:
        return Assignment(user_id=str(context.variables["startedBy"].get("email")))


@dataclass(frozen=True)
class StarterTitled:
    """A custom user-task executor whose code reads the starter."""

    schema_type: str = "userTask.custom"
    name: str = "Custom"
    task_type: str = "FORM"

    def validate(self, node: Any) -> list[str]:
        return []

    async def configure(self, context: NodeContext) -> UserTaskConfig:
        starter = context.variables["startedBy"]
        node = context.node
        return UserTaskConfig(title=f"For {starter.get('name')}", description=None,
                              assignment=Assignment(role="clerk"), priority=node.priority, input={})  # fmt: skip


async def test_code_that_may_read_the_starter_gets_it(db: Database, clock: ManualClock) -> None:
    await add_alice(db, clock)
    registry = default_registry()
    registry.register_assigner(StarterEmail())
    registry.register_user_task(StarterTitled())
    engine = Engine(db, registry, clock=clock)
    builder = WorkflowBuilder("coded")
    builder.user_task("assigned", title="Assigned", assign_with="starterEmail")
    builder.user_task("custom", schema_type="userTask.custom")
    builder.edge("assigned", "custom")
    await engine.deploy(builder.build())
    instance = await engine.start("coded", {}, "alice")
    await engine.send_signal(instance.id, "assigned", {}, "alice")
    async with db.read() as session:
        assigned, custom = await TaskRepository(session).find_by_instance(instance.id)
    assert assigned.assigned_user_id == "alice@example.com"
    assert custom.title == "For Alice Adams"


async def test_start_uses_a_version_another_process_deployed(db: Database, clock: ManualClock) -> None:
    here = Engine(db, default_registry(), clock=clock)
    elsewhere = Engine(Database(db.url), default_registry(), clock=clock)
    try:
        await here.deploy(one_task("Version one"))
        first = await here.start("costs", {}, "alice")
        await elsewhere.deploy(one_task("Version two"))
        second = await here.start("costs", {}, "alice")  # on PostgreSQL its first attempt fails: v1
    finally:
        await elsewhere.db.dispose()
    assert (first.definition_version, second.definition_version) == (1, 2)
    async with db.read() as session:  # the failed attempt left nothing behind
        started = (await session.execute(text("SELECT definition_version FROM workflow_instances"))).scalars()
        tasks = (await session.execute(text("SELECT workflow_instance_id FROM tasks"))).scalars()
        assert (sorted(started), sorted(tasks)) == ([1, 2], sorted([first.id, second.id]))
    finished = await here.send_signal(second.id, "first", {}, "alice")
    assert finished.definition_version == 2
    async with db.read() as session:
        [review] = [t for t in await TaskRepository(session).find_by_instance(second.id) if t.node_id == "review"]
    assert review.title == "Version two"


def rework_loop() -> WorkflowDefinition:
    """draft (step "write") → review (step "check") → back to draft when rejected, else done."""
    builder = WorkflowBuilder("rework")
    with builder.milestone("m", "M"):
        with builder.step("write", "Write"):
            builder.user_task("draft", title="Draft", assign_to_role="clerk", store_as="draft")
        with builder.step("check", "Check"):
            builder.user_task("review", title="Review", assign_to_role="clerk", store_as="review")
    builder.edge("draft", "review")
    builder.edge("review", "draft", when="review.decision == 'rework'")
    return builder.build()


async def test_a_step_is_created_once_and_found_again_by_a_loop(engine: Engine, db: Database) -> None:
    await engine.deploy(rework_loop())
    instance = await engine.start("rework", {}, "alice")
    await engine.send_signal(instance.id, "draft", {"text": "v1"}, "alice")
    async with statements(db) as sent:
        looped = await engine.send_signal(instance.id, "review", {"decision": "rework"}, "alice")
    assert [token.node_id for token in looped.tokens] == ["draft"]
    assert not [s for s in sent.statements if "step_instances" in s and "workflow_instances" not in s]  # read with it
    async with db.read() as session:
        steps = await InstanceRepository(session).steps_of([instance.id])
        tasks = await TaskRepository(session).find_by_instance(instance.id)
    assert [step.step_key for step in steps] == ["write", "check"]
    write = steps[0].id
    assert [(task.node_id, task.step_instance_id == write) for task in tasks] == [
        ("draft", True), ("review", False), ("draft", True)
    ]  # fmt: skip


async def test_a_signal_reads_once_and_writes_once(engine: Engine, db: Database) -> None:
    """Steps and open tasks come with the instance; the task's update, the new step and task ride in
    the last statement on PostgreSQL, in autocommit, then a numbering round (SQLite writes them just
    before it, one by one, in a transaction, and numbers its events there)."""
    await engine.deploy(rework_loop())
    instance = await engine.start("rework", {}, "alice")
    engine.remembered.forget([instance.id])  # as another process would find it (test_remembered.py: without)
    await engine.sequencer.idle()
    async with statements(db) as sent:
        await engine.send_signal(instance.id, "draft", {"text": "v1"}, "alice")
        await engine.sequencer.idle()  # its numbering round runs after it returned
    if db.dialect == "postgresql":
        read, last, numbering = sent.statements
        assert "FOR UPDATE" not in read and "FROM workflow_instances" in read and numbering == NUMBERING
        assert all(f"{write} " in last for write in ("INSERT INTO step_instances", "INSERT INTO tasks",
                                                     "UPDATE tasks", "UPDATE workflow_instances"))  # fmt: skip
        assert sent.commands == []
    else:
        assert [s.split()[0] for s in sent.statements] == ["SELECT", "INSERT", "INSERT", "UPDATE", "UPDATE", "INSERT",
                                                           "UPDATE"]  # fmt: skip
        assert sent.statements[-1].startswith("UPDATE task_events SET position = id")
        assert [c.split()[0] for c in sent.commands] == ["BEGIN"]


async def test_a_task_action_is_one_transition_that_returns_the_task_as_stored(engine: Engine, db: Database) -> None:
    """Claim, post a message, save progress and submit through the task service: each returns the task as the
    database then holds it, and on PostgreSQL each runs once, in autocommit (no transaction, no
    second attempt: the task is not read back after the action's deferred writes), and without a read to
    find the task's instance (``engine.task_homes``: this process created the task)."""
    builder = WorkflowBuilder("note")
    with builder.milestone("m", "M"), builder.step("write", "Write"):
        builder.user_task("write", title="Write", assign_to_role="clerk", store_as="note",
                          form=[{"key": "text", "type": "text", "label": "Text"}])  # fmt: skip
    await engine.deploy(builder.build())
    [token] = (await engine.start("note", {}, "alice")).tokens
    task_id = token.task_id
    assert task_id is not None
    carol, tasks = User("carol", "Carol", roles=frozenset({"clerk"})), TaskService(engine)

    posted = []

    async def post() -> Task:
        message, task = await tasks.post_message(carol, task_id, "on it")
        posted.append(message)
        return task

    actions: list[Callable[[], Awaitable[Task]]] = [lambda: tasks.claim(carol, task_id), post,
               lambda: tasks.save_progress(carol, task_id, {"text": "v0"}, 1),
               lambda: tasks.submit(carol, task_id, {"text": "v1"}, 2)]  # fmt: skip
    for action in actions:
        async with statements(db) as sent:
            returned = await action()
        async with db.read() as session:
            assert returned == await TaskRepository(session).get_by_id(task_id)
        if db.dialect == "postgresql":  # no BEGIN: this process created the task, so it knows its instance
            assert sent.begun == 0 and not [s for s in sent.statements if "FOR UPDATE" in s], sent.statements
    assert (returned.status, returned.revision, returned.output) == (TaskStatus.COMPLETED, 3, {"text": "v1"})
    async with db.read() as session:
        assert (await TaskDetailsRepository(session).messages_of([task_id]))[task_id] == posted


async def test_users_with_and_without_memberships_in_one_read(db: Database, clock: ManualClock) -> None:
    async with db.transaction() as session:
        directory = DirectoryRepository(session)
        await directory.save_user("alice", "Alice", "a@example.com", ["requester", "clerk"], ["finance"], clock.now())
        await directory.save_user("bob", "Bob", None, [], [], clock.now())
        await directory.save_user("carol", "Carol", None, [], ["ops", "finance"], clock.now())
    async with statements(db) as sent:
        async with db.read() as session:
            found = await DirectoryRepository(session).get_users(["alice", "bob", "carol", "nobody"])
    assert len([s for s in sent.statements if "users" in s]) == 1
    assert set(found) == {"alice", "bob", "carol"}
    assert found["alice"].roles == {"requester", "clerk"} and found["alice"].groups == {"finance"}
    assert found["bob"].roles == frozenset() and found["bob"].groups == frozenset() and found["bob"].email is None
    assert found["carol"].roles == frozenset() and found["carol"].groups == {"ops", "finance"}
