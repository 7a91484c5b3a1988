"""``STEPWISE_REQUEST_TIMEOUT_SECONDS`` bounds the server's work on a request, not the client's upload.

A body still arriving has a size limit and a deadline of its own (server.bodies:
``STEPWISE_MAX_UPLOAD_BYTES``, ``STEPWISE_BODY_TIMEOUT_SECONDS``). Counted against the request
timeout as well, an upload well within both (40 s of a 60 s body deadline) was cut at 30 s with a
``503`` the client could do nothing about but send it all again, slower no faster. So the clock
stops while the request waits for its body's bytes and starts again, in full, once the last one
has arrived: the request timeout is what the server may spend *after* it has everything it needs.
A request without a body (``GET``) is timed from its start.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.responses import JSONResponse
from starlette.types import Message, Receive

TIMEOUT = "TIMEOUT"


class RequestTimeout:
    """``seconds`` of work on a request, not counting the time its body takes to arrive (module docstring).

    Run the request inside :meth:`running`, reading its body through :meth:`receive`."""

    def __init__(self, seconds: float, receive: Receive) -> None:
        self.seconds = seconds
        self._receive = receive
        self._body_complete = False
        self._timeout: asyncio.Timeout | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with asyncio.timeout(self.seconds) as self._timeout:
            yield

    @property
    def expired(self) -> bool:
        return self._timeout is not None and self._timeout.expired()

    async def receive(self) -> Message:
        if self._body_complete or self._timeout is None:
            return await self._receive()
        self._timeout.reschedule(None)  # waiting for the client: the body deadline's business
        try:
            message = await self._receive()
        except BaseException:
            self._restart()
            raise
        if message["type"] != "http.request" or not message.get("more_body", False):
            self._body_complete = True  # the last byte, or the client gone: nothing more to wait for
        self._restart()
        return message

    def _restart(self) -> None:
        if self._timeout is not None and not self._timeout.expired():
            self._timeout.reschedule(asyncio.get_running_loop().time() + self.seconds)

    def response(self) -> JSONResponse:
        """``503`` with ``Retry-After``: the server took too long, the client did nothing wrong."""
        seconds = f"{self.seconds:g}"
        return JSONResponse(
            {"errors": [{"message": f"the request took longer than {seconds} s", "extensions": {"code": TIMEOUT}}]},
            status_code=503,
            headers={"Retry-After": "5"},
        )
