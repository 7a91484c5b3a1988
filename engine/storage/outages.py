"""Which exceptions mean "the database is not answering" rather than a bug or a bad request.

A request that meets one gets ``UNAVAILABLE`` (HTTP 503: try again later) and one log line, not a
masked "Unexpected error." and a traceback: connection refused or reset, the pool exhausted, a
server shutting down, a statement cancelled by ``statement_timeout``.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import exc

# SQLSTATE classes: 08 connection exception, 53 insufficient resources, 57 operator intervention
# (57014 query_canceled: statement_timeout; 57P01 admin_shutdown), 58 system error.
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57", "58")


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` (or what it wraps) says the database cannot serve the request now."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, exc.TimeoutError | exc.DisconnectionError | OSError | asyncio.TimeoutError):
            return True  # the pool had no connection to give, or the socket failed
        sqlstate = getattr(current, "sqlstate", None) or getattr(getattr(current, "orig", None), "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATE_CLASSES):
            return True
        if isinstance(current, exc.InterfaceError | exc.OperationalError) and sqlstate is None:
            return True  # a driver that reports no SQLSTATE: the connection, not the statement
        current = current.__cause__ or getattr(current, "orig", None)
    return False
