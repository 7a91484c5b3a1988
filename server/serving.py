"""uvicorn's HTTP protocol with a deadline for a request's headers.

uvicorn times out an idle keep-alive connection, but once a byte of a request has arrived it waits
for the rest of the headers for ever: a client sending one header byte every few seconds holds a
connection (and its memory) as long as it likes, and enough of them hold them all. Here a request's
headers must be complete ``STEPWISE_HEADER_TIMEOUT_SECONDS`` after the connection opened or the
previous response ended; else the connection is closed. The body has its own deadline
(server.bodies).

The deadline comes from the settings ``stepwise serve`` was started with (:func:`http_protocol`),
not from the environment when this module is imported.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any, cast

# uvicorn offers no header deadline (only keep-alive's idle one) and no public hook into its parser,
# so this subclasses its httptools protocol, a class it does not document: the override is the four
# parser callbacks below and nothing else, and an upgrade of uvicorn is checked by
# tests/server/test_request_bodies.py (headers that never end lose their connection under a real server).
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from server.settings import Settings


def http_protocol(settings: Settings) -> type[asyncio.Protocol]:
    """What ``uvicorn.run(http=…)`` takes: the protocol with ``settings``' header deadline.

    A ``partial`` of a module-level class, so that it pickles into ``--workers`` processes; uvicorn
    only ever calls what it is given, so a factory serves where its annotation says a class."""
    return cast(
        "type[asyncio.Protocol]", partial(HeaderDeadlineProtocol, header_timeout=settings.header_timeout_seconds)
    )


class HeaderDeadlineProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self._header_deadline: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        if self.header_timeout > 0:
            self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        waiting_for_next = not self.pipeline  # a pipelined request's headers are already here
        super().on_response_complete()
        if waiting_for_next and not self.transport.is_closing():
            self._arm()
