"""A real webhook receiver for the tests: Starlette under uvicorn on 127.0.0.1, on its own thread.

It verifies each request's signature with the secrets it was told, records what arrived (in arrival order),
and answers with the status the test sets, or holds requests until released (a receiver that hangs).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine import SIGNATURE_HEADER, verify_signature


@dataclass(frozen=True)
class Received:
    delivery_id: str
    body: dict[str, Any]
    raw: bytes
    signature: str
    verified_with: tuple[int, ...]
    """The indexes of the known secrets the signature verified with."""
    answered: int
    connection: str = ""
    """The sender's address and port: requests on one kept-alive connection share it."""


@dataclass
class Receiver:
    now: Callable[[], int]
    """The receiver's clock, for the signature's timestamp check (the test's clock)."""
    secrets: list[str] = field(default_factory=list)
    status: int = 200
    fail_next: int = 0
    """Answer 500 to this many requests first."""
    hold: threading.Event | None = None
    """While set to an unset event, requests are recorded, held until it is set, then answered 503."""
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            raw = await request.body()
            signature = request.headers.get(SIGNATURE_HEADER, "")
            with self._lock:
                verified = tuple(i for i, secret in enumerate(self.secrets)
                                 if verify_signature(signature, raw, secret, now=self.now()))  # fmt: skip
                if self.fail_next > 0:
                    self.fail_next -= 1
                    status = 500
                else:
                    status = self.status if verified else 401
                hold = self.hold
                if hold is not None:
                    status = 503  # whenever it is let go, it was not acknowledged: the sender may be gone
                peer = f"{request.client.host}:{request.client.port}" if request.client else ""
                self.received.append(Received(request.headers.get("stepwise-delivery", ""), json.loads(raw), raw,
                                              signature, verified, status, peer))  # fmt: skip
            if hold is not None:
                await anyio.to_thread.run_sync(hold.wait)
            return Response(status_code=status)

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def acknowledged(self) -> list[Received]:
        return [r for r in self.snapshot() if 200 <= r.answered < 300]


class ReceiverServer:
    """Serves a :class:`Receiver` on a port that stays the same across stop and start (a receiver that goes
    down and comes back)."""

    def __init__(self, receiver: Receiver, port: int | None = None) -> None:
        self.receiver = receiver
        if port is None:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = int(probe.getsockname()[1])
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        listening = socket.socket()
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(("127.0.0.1", self.port))
        config = uvicorn.Config(self.receiver.app(), lifespan="off", ws="none", log_level="warning",
                                access_log=False, timeout_graceful_shutdown=1)  # fmt: skip
        self._server = server = uvicorn.Server(config)
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the receiver did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._server = self._thread = None
