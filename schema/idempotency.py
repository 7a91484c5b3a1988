"""Every mutation's input has an optional ``idempotencyKey`` (engine.idempotency does the
work; docs/api.md): a repeat with the same key answers as the first did and changes nothing, the same key with
other input is a ``Conflict`` (``IDEMPOTENCY_KEY_REUSED``). A test reads the schema and fails on a
mutation whose input lacks the field."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import strawberry

from engine import IdempotentRequest
from schema.context import Info

T = TypeVar("T")

KEY_DESCRIPTION = (
    "Sent again with the same key (by the same user), the mutation changes nothing and returns what "
    "it returned the first time; with other input it is a Conflict (IDEMPOTENCY_KEY_REUSED). Kept "
    "for STEPWISE_IDEMPOTENCY_KEY_HOURS (24 by default)."
)


def idempotency_key_field() -> Any:
    """The ``idempotencyKey`` field every mutation input declares."""
    return strawberry.field(default=None, description=KEY_DESCRIPTION)


async def idempotent(info: Info, operation: str, input: Any, work: Callable[[], Awaitable[T]]) -> T:
    """``work`` guarded by ``input.idempotency_key`` when it has one."""
    key: str | None = input.idempotency_key
    if key is None:
        return await work()
    asked = {f.name: getattr(input, f.name) for f in dataclasses.fields(input) if f.name != "idempotency_key"}
    request = IdempotentRequest.of(info.context.user.id, key, operation, asked)
    return await info.context.engine.idempotency.run(request, work)
