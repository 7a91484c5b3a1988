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

from starlette.responses import JSONResponse
from starlette.types import Message, Receive

TIMEOUT = "TIMEOUT"


class RequestTimeout:
    """``seconds`` of work on a request, not counting the time its body takes to arrive (module docstring).

    Run the request inside :attr:`clock` (``async with``; it counts from when this is made), reading its
    body through :meth:`receive`. The :class:`asyncio.Timeout` itself rather than a context manager
    around one, which took some 30 of the 3,500 Python calls of ``{ me { id } }`` (bench.instructions)."""

    def __init__(self, seconds: float, receive: Receive) -> None:
        self.clock = asyncio.timeout_at(asyncio.get_running_loop().time() + seconds)
        self.seconds = seconds
        self._receive = receive
        self._body_complete = False

    async def receive(self) -> Message:
        if self._body_complete:
            return await self._receive()
        clock = self.clock
        clock.reschedule(None)  # waiting for the client: the body deadline's business
        try:
            message = await self._receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                self._body_complete = True  # the last byte, or the client gone: nothing more to wait for
        finally:  # the clock starts again, in full (it cannot have run out while stopped)
            clock.reschedule(asyncio.get_running_loop().time() + self.seconds)
        return message

    def response(self) -> JSONResponse:
        """``503`` with ``Retry-After``: the server took too long, the client did nothing wrong."""
        seconds = f"{self.seconds:g}"
        return JSONResponse(
            {"errors": [{"message": f"the request took longer than {seconds} s", "extensions": {"code": TIMEOUT}}]},
            status_code=503,
            headers={"Retry-After": "5"},
        )
