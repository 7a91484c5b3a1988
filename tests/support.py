"""Helpers every kind of test shares: a free loopback port, polling until something holds, stopping a
child process for good, and the end of its log for a failure message."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path

import pytest


def free_port() -> int:
    """A loopback port nobody listens on now (the caller binds it soon after)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float, failure: Callable[[], str], poll: float = 0.05
) -> None:
    """Poll ``check`` until it holds; fail the test with ``failure()`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(failure())
        await asyncio.sleep(poll)


def kill(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL ``process`` if it still runs (no chance to clean up: what a crash test wants), and reap it."""
    if process is None:
        return
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` of a child's log, for a failure message."""
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])
