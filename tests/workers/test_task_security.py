"""Issue 27's engine defects, end to end on both databases: secrets stored, internal hosts reachable,
unbounded sizes, and an email ``to`` entry that held two addresses."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.definitions.builder import WorkflowBuilder
from engine.errors import ValidationError
from engine.state import DeployedDefinition, InstanceStatus, TaskStatus, User
from engine.storage.discussion import TaskDetailsRepository
from engine.storage.instances import DefinitionRepository, InstanceRepository
from engine.storage.models import Base, instances
from engine.storage.tasks import TaskRepository
from engine.tasks.service import TaskService
from engine.transitions.engine import Engine
from engine.workers.builtin import BUILTIN_EXECUTORS
from engine.workers.executor import SystemTaskContext
from engine.workers.hostpolicy import HostPolicy
from engine.workers.worker import Worker
from tests.support import free_port
from tests.workers.support import LOOPBACK_ALLOWED, ServerThread

SECRET = "zq-secret-4f9c2e7b-value"
APPROVER = User("ann", "Ann", roles=frozenset({"approver"}))


class Target:
    """A careless HTTP target on loopback: it echoes every request header back, in its body and its headers."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.server = ServerThread(Starlette(routes=[Route("/reflect", self.reflect, methods=["GET", "POST"]),
                                                     Route("/big", self.big)]))  # fmt: skip

    async def reflect(self, request: Request) -> Response:
        seen = {"headers": dict(request.headers), "query": dict(request.query_params), "body": (await request.body())}
        self.seen.append(seen)
        status = int(request.query_params.get("status", "200"))
        echoed = {f"X-Seen-{k}": v for k, v in request.headers.items() if k.startswith("x-")}
        return JSONResponse({"headers": seen["headers"], "query": seen["query"]}, status_code=status, headers=echoed)

    async def big(self, request: Request) -> Response:
        self.seen.append({"path": "/big"})
        return Response(b"a" * int(request.query_params["bytes"]), media_type="text/plain")

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    target = Target()
    target.server.start()
    try:
        yield target
    finally:
        target.server.stop()


@pytest.fixture
async def contexts() -> AsyncIterator[list[SystemTaskContext]]:
    made: list[SystemTaskContext] = []
    yield made
    for context in made:
        await context.aclose()


def worker_for(engine: Engine, contexts: list[SystemTaskContext], policy: HostPolicy = LOOPBACK_ALLOWED) -> Worker:
    context = SystemTaskContext(clock=engine.clock, host_policy=policy, max_body_bytes=engine.max_json_bytes)
    contexts.append(context)
    executors = {executor.type: executor for executor in BUILTIN_EXECUTORS}
    return Worker(engine, executors, context, secrets={"apiToken": SECRET}, lease=timedelta(seconds=30))


async def tasks_by_node(engine: Engine, instance_id: str) -> dict[str, Any]:
    async with engine.db.read() as session:
        return {t.node_id: t for t in await TaskRepository(session).find_by_instance(instance_id)}


async def every_row(engine: Engine) -> str:
    """Every row of every table, as text."""
    rows = []
    async with engine.db.read() as session:
        for table in Base.metadata.sorted_tables:
            rows += [f"{table.name}: {tuple(row)!r}" for row in (await session.execute(select(table))).all()]
    return "\n".join(rows)


async def deployed_unchecked(engine: Engine, builder: WorkflowBuilder) -> None:
    """Deploy without validation: a definition from before deploys refused ``secrets`` outside HTTP and
    GraphQL configs, which the worker must still not hand them to."""
    async with engine.db.transaction() as session:
        definition = builder.build()
        await DefinitionRepository(session).insert(DeployedDefinition(
            key=definition.key, version=1, title=definition.title, document=definition.to_json(),
            deployed_at=engine.clock.now(), deployed_by=None,
        ))  # fmt: skip


# -- 1: secrets are never stored --------------------------------------------------------------------------


async def test_no_secret_reaches_any_table_or_the_log(
    engine: Engine, target: Target, contexts: list[SystemTaskContext], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    b = WorkflowBuilder("leaky")
    b.system_task(
        "call", "http",
        {"method": "POST", "url": f"{target.url}/reflect?token={{{{ secrets.apiToken }}}}",
         "headers": {"X-Api-Key": "{{ secrets.apiToken }}", "X-Note": "key {{ secrets.apiToken }} here"},
         "json": {"token": "{{ secrets.apiToken }}"}},
        store_as="called",
    )  # fmt: skip
    b.system_task("echo", "echo", {"output": {"all": "{{ secrets }}", "one": "{{ secrets.apiToken }}"}},
                  store_as="echoed")  # fmt: skip
    b.system_task("script", "javascript", {"code": "return {data: JSON.stringify(data), s: '{{ secrets }}'};"},
                  store_as="scripted")  # fmt: skip
    b.system_task("fail", "http", {"url": f"{target.url}/reflect?status=400&token={{{{ secrets.apiToken }}}}"},
                  store_as="failed", retry={"maxAttempts": 1})  # fmt: skip
    b.edge("call", "echo").edge("echo", "script").edge("script", "fail")
    await deployed_unchecked(engine, b)
    instance = await engine.start("leaky", {"note": "no secret in here"}, "alice")

    await worker_for(engine, contexts).run_until_idle()

    tasks = await tasks_by_node(engine, instance.id)
    # The scenario ran as meant: the secret was sent (header, query, body), and nothing else got it.
    assert [tasks[n].status for n in ("call", "echo", "script", "fail")] == [TaskStatus.COMPLETED] * 3 + [
        TaskStatus.FAILED
    ]
    assert target.seen[-2]["headers"]["x-api-key"] == SECRET and target.seen[-2]["query"]["token"] == SECRET
    assert tasks["call"].output["headers"]["x-seen-x-api-key"] == "***"
    assert tasks["echo"].output == {"all": None, "one": None}
    assert tasks["script"].output["s"] == ""
    async with engine.db.read() as session:
        stored = await InstanceRepository(session).get(instance.id)
    assert stored is not None and stored.status is InstanceStatus.FAILED and "token=***" in (stored.error or "")
    for spelling in (SECRET, quote(SECRET, safe="")):
        assert spelling not in await every_row(engine)
        assert spelling not in caplog.text
        assert not [r for r in caplog.records if spelling in r.getMessage()]
    assert "HTTP Request: POST" in caplog.text  # httpx's request line was logged, masked


def test_echo_javascript_and_email_configs_may_not_name_secrets(engine: Engine) -> None:
    cases: list[tuple[str, dict[str, Any]]] = [("echo", {"output": "{{ secrets.apiToken }}"}),
                              ("javascript", {"code": "return '{{ secrets }}';"}),
                              ("email", {"to": ["a@x.test"], "subject": "{{ secrets['apiToken'] }}"})]  # fmt: skip
    for node_type, config in cases:
        b = WorkflowBuilder(f"uses_{node_type}")
        b.system_task("t", node_type, config)
        with pytest.raises(ValidationError) as failure:
            engine.validate(b.build())
        assert "names secrets, which only http and graphql tasks' configs may use" in failure.value.message


# -- 2: internal hosts are not reachable by default ---------------------------------------------------------


async def test_a_task_calling_loopback_fails_for_good_under_the_default_policy(
    engine: Engine, target: Target, contexts: list[SystemTaskContext]
) -> None:
    b = WorkflowBuilder("inside")
    b.system_task("call", "http", {"url": f"{target.url}/reflect"}, store_as="called", retry={"maxAttempts": 3})
    await engine.deploy(b.build())
    instance = await engine.start("inside", {}, "alice")
    seen = len(target.seen)

    await worker_for(engine, contexts, HostPolicy()).run_until_idle()

    call = (await tasks_by_node(engine, instance.id))["call"]
    async with engine.db.read() as session:
        attempts = (await TaskDetailsRepository(session).attempts_of([call.id])).get(call.id, [])
    assert call.status is TaskStatus.FAILED and call.output is None
    assert len(attempts) == 1 and "is not a public address" in (attempts[0].error or "")
    assert len(target.seen) == seen


# -- 3: sizes are bounded ---------------------------------------------------------------------------------


async def test_oversized_input_values_and_payload_are_refused_naming_the_field(engine: Engine) -> None:
    limit = engine.max_json_bytes
    b = WorkflowBuilder("sized")
    b.user_task("fill", title="Fill", assign_to_role="approver", store_as="filled")
    b.user_task("wait", title="Wait", signal="go", assign_to_role="approver")
    b.edge("fill", "wait")
    await engine.deploy(b.build())
    huge = "x" * limit

    with pytest.raises(ValidationError) as started:
        await engine.start("sized", {"text": huge}, "alice")
    instance = await engine.start("sized", {"text": "fits"}, "alice")
    fill = (await tasks_by_node(engine, instance.id))["fill"]
    service = TaskService(engine)
    with pytest.raises(ValidationError) as saved:
        await service.save_progress(APPROVER, fill.id, {"text": huge}, None)
    with pytest.raises(ValidationError) as submitted:
        await service.submit(APPROVER, fill.id, {"text": huge}, None)
    await service.submit(APPROVER, fill.id, {}, None)
    with pytest.raises(ValidationError) as signalled:
        await engine.send_signal(instance.id, "wait", {"text": huge}, "dana")

    for failure, field in [(started, "input"), (saved, "values"), (submitted, "values"), (signalled, "payload")]:
        assert failure.value.code == "VALIDATION_FAILED"
        assert [(e.field, e.code) for e in failure.value.field_errors] == [(field, "TOO_LARGE")]
    async with engine.db.read() as session:
        stored = (await session.execute(select(instances.c.id).where(instances.c.definition_key == "sized"))).all()
    assert [row.id for row in stored] == [instance.id]
    tasks = await tasks_by_node(engine, instance.id)
    assert tasks["fill"].draft is None and tasks["wait"].status is TaskStatus.PENDING


async def test_a_response_or_output_over_the_limit_fails_the_task_for_good(
    engine: Engine, target: Target, contexts: list[SystemTaskContext]
) -> None:
    limit = engine.max_json_bytes
    b = WorkflowBuilder("big")
    b.system_task("fetch", "http", {"url": f"{target.url}/big?bytes={limit + 1}"}, retry={"maxAttempts": 3})
    b2 = WorkflowBuilder("big_script")
    b2.system_task("script", "javascript", {"code": f"return 'x'.repeat({limit * 4});", "memoryMb": 64},
                   retry={"maxAttempts": 3})  # fmt: skip
    b3 = WorkflowBuilder("big_echo")
    b3.system_task("echo", "echo", {"output": ["{{ text }}", "{{ text }}"]}, retry={"maxAttempts": 3})
    for builder in (b, b2, b3):
        await engine.deploy(builder.build())
    fetched = await engine.start("big", {}, "alice")
    scripted = await engine.start("big_script", {}, "alice")
    echoed = await engine.start("big_echo", {"text": "y" * (limit // 2)}, "alice")

    await worker_for(engine, contexts).run_until_idle()

    fetch = (await tasks_by_node(engine, fetched.id))["fetch"]
    script = (await tasks_by_node(engine, scripted.id))["script"]
    assert fetch.status is TaskStatus.FAILED and fetch.attempt_count == 1
    assert f"larger than the limit of {limit} bytes" in (fetch.error or "")
    assert script.status is TaskStatus.FAILED and script.attempt_count == 1
    assert f"JavaScript's result is larger than the limit of {limit} bytes" in (script.error or "")
    echo = (await tasks_by_node(engine, echoed.id))["echo"]
    assert echo.status is TaskStatus.FAILED and echo.attempt_count == 1 and echo.output is None
    assert f"at most {limit} are stored" in (echo.error or "")
    assert "x" * 1000 not in await every_row(engine)


# -- 7: one email entry, one recipient --------------------------------------------------------------------


class _Inbox:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[str, _Inbox]]:
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{controller.port}", inbox
    finally:
        controller.stop()


async def test_a_rendered_to_entry_with_two_addresses_is_sent_to_no_one(
    engine: Engine, contexts: list[SystemTaskContext], smtp: tuple[str, _Inbox]
) -> None:
    url, inbox = smtp
    b = WorkflowBuilder("mail")
    b.system_task("mail", "email", {"to": ["{{ recipient }}"], "subject": "Report"}, retry={"maxAttempts": 3})
    await engine.deploy(b.build())
    two = await engine.start("mail", {"recipient": "boss@x.test, attacker@y.test"}, "alice")
    one = await engine.start("mail", {"recipient": "Boss <boss@x.test>"}, "alice")
    worker = worker_for(engine, contexts)
    worker.context.smtp_url = url
    before = len(inbox.envelopes)

    await worker.run_until_idle()

    refused, sent = (await tasks_by_node(engine, two.id))["mail"], (await tasks_by_node(engine, one.id))["mail"]
    assert refused.status is TaskStatus.FAILED and refused.attempt_count == 1
    assert "'boss@x.test, attacker@y.test' is not exactly one email address" in (refused.error or "")
    assert sent.status is TaskStatus.COMPLETED and sent.output["to"] == ["Boss <boss@x.test>"]
    assert [envelope.rcpt_tos for envelope in inbox.envelopes[before:]] == [["boss@x.test"]]


async def test_rendered_titles_and_descriptions_are_cut_and_a_long_cancel_reason_refused(engine: Engine) -> None:
    b = WorkflowBuilder("wordy")
    b.user_task("read", title="Read {{ text }}", description="{{ text }}{{ text }}", assign_to_role="approver")
    await engine.deploy(b.build())
    instance = await engine.start("wordy", {"text": "w" * 6000}, "alice")

    task = (await tasks_by_node(engine, instance.id))["read"]
    with pytest.raises(ValidationError) as failure:
        await engine.cancel(instance.id, "alice", "r" * 10_001)

    assert len(task.title) == 1000 and task.title.startswith("Read www") and task.title.endswith("…")
    assert len(task.description) == 10_000 and task.description.endswith("…")
    assert [(e.field, e.code) for e in failure.value.field_errors] == [("reason", "TOO_LONG")]
