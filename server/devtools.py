"""Development conveniences behind ``STEPWISE_DEV`` (``make run`` turns it on), so the demo's system
tasks have something real to talk to on a bare machine:

- a local SMTP mailbox (aiosmtpd) that email tasks deliver to when ``STEPWISE_SMTP_URL`` is unset,
  readable at ``GET /dev/mailbox``;
- ``POST /dev/notify``, an HTTP endpoint that answers with what it received (the demo's notify hook).
Never enable it in production: the mailbox shows every message to anyone who can reach the server.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import message_from_bytes, policy
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

log = logging.getLogger(__name__)
MAILBOX_SIZE = 100


class Mailbox:
    """Keeps the last messages received, newest last."""

    def __init__(self) -> None:
        self.messages: deque[dict[str, Any]] = deque(maxlen=MAILBOX_SIZE)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        parsed = message_from_bytes(envelope.content if isinstance(envelope.content, bytes) else b"",
                                    policy=policy.default)  # fmt: skip
        body = parsed.get_body(preferencelist=("plain", "html")) if parsed.is_multipart() else parsed
        text = body.get_content() if body is not None else ""
        entry = {"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "subject": parsed["subject"], "body": text}
        self.messages.append(entry)
        log.info("dev mailbox: %s → %s: %s", entry["from"], ", ".join(entry["to"]), entry["subject"])
        return "250 Message accepted for delivery"


@asynccontextmanager
async def running_mailbox(mailbox: Mailbox, port: int) -> AsyncIterator[None]:
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    try:
        controller.start()
    except (OSError, RuntimeError) as exc:  # with --workers, the first process owns the port
        log.warning("dev mailbox not started on port %s: %s", port, exc)
        yield
        return
    try:
        yield
    finally:
        controller.stop()


def dev_routes(mailbox: Mailbox) -> list[Route]:
    async def notify(request: Request) -> JSONResponse:
        try:
            received = await request.json()
        except ValueError:
            received = (await request.body()).decode(errors="replace")
        return JSONResponse({"received": received, "idempotencyKey": request.headers.get("idempotency-key")})

    async def messages(request: Request) -> JSONResponse:
        return JSONResponse({"messages": list(mailbox.messages)})

    return [Route("/dev/notify", notify, methods=["POST"]), Route("/dev/mailbox", messages)]
