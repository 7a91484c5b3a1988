"""Request bodies are bounded in size and in time, streamed: never buffered whole before they are refused.

A body longer than its limit (``STEPWISE_MAX_BODY_BYTES`` for JSON and everything else,
``STEPWISE_MAX_UPLOAD_BYTES`` for ``multipart/form-data``) is ``413``: at once when its
``Content-Length`` says so, else as soon as the bytes read pass the limit. A body that has not
arrived whole ``STEPWISE_BODY_TIMEOUT_SECONDS`` after its headers is ``408``. Either answer closes
the connection, so the rest of the body is never read.

This bounds what a request may make the server read; *whether* it is read at all is the endpoint's
decision, made before it reads: ``/graphql`` refuses an upload without a valid token before its body
(server.graphql_app).
"""

from __future__ import annotations

import asyncio
import json

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CLOSE = (b"connection", b"close")


class BodyRefused(Exception):
    """The body broke a limit; raised from ``receive`` and answered by :class:`BoundedBodies`."""

    status = 400
    code = "BAD_REQUEST"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BodyTooLarge(BodyRefused):
    status = 413
    code = "BODY_TOO_LARGE"


class BodyTimedOut(BodyRefused):
    status = 408
    code = "BODY_TIMEOUT"


def is_multipart(headers: Headers) -> bool:
    return headers.get("content-type", "").lower().startswith("multipart/")


async def send_refusal(send: Send, status: int, message: str, code: str, headers: list[tuple[bytes, bytes]]) -> None:
    """A JSON error (GraphQL's ``errors`` shape, which every client here reads) that closes the connection."""
    body = json.dumps({"errors": [{"message": message, "extensions": {"code": code}}]}).encode()
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    CLOSE, *headers],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class BoundedBodies:
    def __init__(self, app: ASGIApp, *, max_bytes: int, max_upload_bytes: int, timeout_seconds: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_upload_bytes = max_upload_bytes
        self.timeout_seconds = timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        upload = is_multipart(headers)
        limit = self.max_upload_bytes if upload else self.max_bytes
        what = "an upload" if upload else "a request body"
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await send_refusal(send, 413, f"{what} may be at most {limit} bytes", BodyTooLarge.code, [])
            return
        deadline = asyncio.get_running_loop().time() + self.timeout_seconds
        received = 0
        complete = False
        started = False

        async def bounded_receive() -> Message:
            nonlocal received, complete
            if complete:  # after the body: the wait for a disconnect is not the body's
                return await receive()
            try:
                # A timer, not asyncio.wait_for: that runs each receive as a task of its own (a task and
                # a turn of the event loop per message, some 40k instructions a request, bench.instructions).
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimedOut(f"the request body did not arrive within {self.timeout_seconds:g} s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(f"{what} may be at most {limit} bytes")
                complete = not message.get("more_body", False)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, watched_send)
        except BodyRefused as refused:
            if started:  # the answer is under way: nothing better to do than to end the connection
                raise
            await send_refusal(send, refused.status, refused.message, refused.code, [])
