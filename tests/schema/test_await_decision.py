"""``awaitDecision`` where the schema runs without an event hub (an in-process execution, not the server)."""

from __future__ import annotations

from engine.services import Services
from engine.state import User
from engine.transitions.engine import Engine
from schema.context import Context
from schema.loaders import DataLoaders
from schema.schema import build_schema


async def test_waiting_without_an_event_hub_is_unavailable_as_every_outage_is(engine: Engine) -> None:
    """Not the task's state (InvalidState) but something the request needs that is not there: the
    top-level ``UNAVAILABLE`` every other resolver answers for an outage (schema/failures.py)."""
    context = Context(services=Services.build(engine), loaders=DataLoaders.create(engine),
                      viewer=User(id="alice", name="Alice"))  # fmt: skip
    query = '{ awaitDecision(taskId: "any", timeoutSeconds: 0) { __typename ... on Error { code } } }'
    result = await build_schema().execute(query, context_value=context)
    assert result.data is None and result.errors is not None
    [error] = result.errors
    assert error.extensions == {"code": "UNAVAILABLE"} and "event" in error.message, error
    assert error.path == ["awaitDecision"]
