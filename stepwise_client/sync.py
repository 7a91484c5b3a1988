"""Blocking wrappers for scripts: each call runs the asynchronous client on a private event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from stepwise_client.client import ApprovalHandle, Decision, StepwiseClient

T = TypeVar("T")


class SyncStepwiseClient:
    """:class:`StepwiseClient` without ``await``: ``with SyncStepwiseClient(url, token) as stepwise: …``.

    Not for code already inside an event loop (use the asynchronous client there)."""

    def __init__(self, url: str, token: str, **http_options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = StepwiseClient(url, token, **http_options)

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(work)

    def __enter__(self) -> SyncStepwiseClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self._client.aclose())
            self._loop.close()

    def request_approval(self, action: str, arguments: Mapping[str, Any], **options: Any) -> SyncApprovalHandle:
        """As :meth:`StepwiseClient.request_approval`."""
        return SyncApprovalHandle(self, self._run(self._client.request_approval(action, arguments, **options)))

    def handle(self, task_id: str) -> SyncApprovalHandle:
        return SyncApprovalHandle(self, self._client.handle(task_id))


@dataclass
class SyncApprovalHandle:
    owner: SyncStepwiseClient
    handle: ApprovalHandle

    @property
    def task_id(self) -> str:
        return self.handle.task_id

    def poll(self, wait_seconds: int = 0) -> Decision | None:
        return self.owner._run(self.handle.poll(wait_seconds))

    def decision(self, timeout: float | None = None) -> Decision:
        """As :meth:`ApprovalHandle.decision`."""
        return self.owner._run(self.handle.decision(timeout))
