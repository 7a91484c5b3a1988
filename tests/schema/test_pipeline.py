"""The operation pipeline's calls to the server's observer and admission, and where it parses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext

from engine.services import Services
from engine.state import User
from engine.transitions.engine import Engine
from schema.context import Context
from schema.loaders import DataLoaders
from schema.schema import build_schema


class Observed:
    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str, str | None]] = []

    def operation_finished(
        self, execution: ExecutionContext, name: str | None, kind: str, seconds: float, failure: GraphQLError | None
    ) -> None:
        assert seconds >= 0
        self.seen.append((name, kind, failure.message if failure else None))


class Admitted:
    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.admitted: list[str] = []
        self.released: list[str] = []

    def admit(self, context: Any, kind: str) -> str | None:
        if self.refuse:
            raise GraphQLError("not now", extensions={"code": "RATE_LIMITED"})
        self.admitted.append(kind)
        return f"slot:{kind}"

    def release(self, taken: str) -> None:
        self.released.append(taken)


def context_of(engine: Engine) -> Context:
    return Context(services=Services.build(engine), loaders=DataLoaders.create(engine),
                   viewer=User(id="alice", name="Alice"))  # fmt: skip


async def test_each_operation_is_observed_once_with_its_name_and_kind(engine: Engine) -> None:
    observed = Observed()
    schema = build_schema(observer=observed)
    assert not (await schema.execute("query Mine { __typename }", context_value=context_of(engine))).errors
    assert (await schema.execute("{ __typename", context_value=context_of(engine))).errors
    named = await schema.execute("query A { __typename } query B { __typename }", context_value=context_of(engine),
                                 operation_name="B")  # fmt: skip
    assert not named.errors
    assert observed.seen[0] == ("Mine", "query", None)
    name, kind, failure = observed.seen[1]
    assert (name, kind) == (None, "unknown") and failure is not None and failure.startswith("Syntax Error")
    assert observed.seen[2] == ("B", "query", None)
    assert len(observed.seen) == 3


async def test_admission_is_asked_before_execution_and_what_it_took_is_released(engine: Engine) -> None:
    admitted = Admitted()
    schema = build_schema(admission=admitted)
    result = await schema.execute("{ __typename }", context_value=context_of(engine))
    assert result.data == {"__typename": "Query"}
    assert admitted.admitted == ["query"] and admitted.released == ["slot:query"]


async def test_a_refused_operation_runs_no_resolver(engine: Engine) -> None:
    observed = Observed()
    schema = build_schema(observer=observed, admission=Admitted(refuse=True))
    result = await schema.execute("{ me { id } }", context_value=context_of(engine))
    assert result.data is None and result.errors is not None
    assert [e.extensions for e in result.errors] == [{"code": "RATE_LIMITED"}]
    assert observed.seen == [(None, "query", "not now")]


class PhaseWatcher(SchemaExtension):
    """Records whether the document was parsed when Strawberry's parsing phase began and ended."""

    parsed_at: list[bool]

    def on_parse(self) -> Iterator[None]:
        self.parsed_at.append(self.execution_context.graphql_document is not None)
        yield
        self.parsed_at.append(self.execution_context.graphql_document is not None)


@pytest.mark.parametrize(("instrumented", "expected"), [(False, [True, True]), (True, [False, True])])
async def test_a_tracer_sees_parsing_inside_its_phase(engine: Engine, instrumented: bool, expected: list[bool]) -> None:
    """Without instruments the pipeline parses before Strawberry's phases (a watcher added after it
    finds the document parsed); with one (a tracer, whose spans time the phases) it parses inside the
    parsing phase, as Strawberry's own parser would."""
    parsed_at: list[bool] = []
    watcher = type("Watcher", (PhaseWatcher,), {"parsed_at": parsed_at})
    schema = build_schema(instruments=[watcher] if instrumented else ())
    if not instrumented:
        schema.extensions = (*schema.extensions, watcher)
    result = await schema.execute("{ __typename }", context_value=context_of(engine))
    assert not result.errors
    assert parsed_at == expected
