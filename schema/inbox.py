"""What the inbox's resolvers share that is not a GraphQL type: a query's bad argument as a top-level
error, and work (the inbox's count) that runs while the page is read and built."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from graphql import GraphQLError

from engine import ValidationError

T = TypeVar("T")


def bad_user_input(exc: ValidationError) -> GraphQLError:
    """A query's bad argument: a top-level error (queries have no result union) the client must fix.

    ``extensions.code`` is ``BAD_USER_INPUT`` (so it is not masked as a bug) and ``fieldErrors``
    names each offending argument, like ``ValidationFailed`` does for mutations.
    """
    field_errors = [{"field": f.field, "message": f.message, "code": f.code} for f in exc.field_errors]
    return GraphQLError(exc.message, extensions={"code": "BAD_USER_INPUT", "fieldErrors": field_errors})


@asynccontextmanager
async def running(work: Coroutine[Any, Any, T] | None) -> AsyncIterator[asyncio.Task[T] | None]:
    """``work`` running as a task while the block runs (the block awaits it for its result). A block
    that ends early still waits for it to end: a read is not cut off mid-statement, and its error is
    taken (the block's own error is the one to report)."""
    if work is None:
        yield None
        return
    task = asyncio.create_task(work)
    try:
        yield task
    finally:
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()
