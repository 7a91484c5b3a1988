"""The asynchronous client: :class:`StepwiseClient` asks, :class:`ApprovalHandle` waits.

It speaks GraphQL over HTTP (gql on httpx). Waiting is ``awaitDecision``, a long poll the server
answers the moment a person decides (or after at most 60 s, when the client asks again), so a caller
that was away when the decision came gets it on its next wait, and no decision is lost or seen twice.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx
from gql import Client, GraphQLRequest
from gql.client import AsyncClientSession
from gql.transport.httpx import HTTPXAsyncTransport

MAX_WAIT_SECONDS = 60
"""The longest one ``awaitDecision`` call waits on the server; longer waits are several calls."""

REQUEST_APPROVAL = """mutation($input: RequestApprovalInput!) { requestApproval(input: $input) {
  __typename ... on RequestApprovalSuccess { callbackSecret task { id status } }
  ... on ValidationFailed { fieldErrors { field message code } } ... on Error { code message } } }"""
AWAIT_DECISION = """query($taskId: ID!, $timeout: Int!) { awaitDecision(taskId: $taskId, timeoutSeconds: $timeout) {
  __typename ... on AwaitDecisionSuccess { status outcome task { id status } } ... on Error { code message } } }"""


class StepwiseClientError(Exception):
    """The server refused: ``code`` is its stable error code (``VALIDATION_FAILED``, ``FORBIDDEN`` …),
    ``field_errors`` maps each offending input field (``arguments.amount``) to what is wrong with it."""

    def __init__(self, code: str, message: str, field_errors: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.field_errors: dict[str, str] = dict(field_errors or {})


class ApprovalClosedError(StepwiseClientError):
    """The request was cancelled or expired without a decision: do not act."""


class DecisionTimeoutError(TimeoutError):
    """No decision within the time the caller gave; the request stays open (wait again later)."""


@dataclass(frozen=True)
class Decision:
    """A person's decision on an action. Run the action only if :attr:`approved`, with :attr:`arguments`."""

    decision: str
    """``approved``, ``edited`` (approved with the person's arguments), ``rejected`` or ``responded``."""
    arguments: dict[str, Any] | None
    """The arguments to run with: as proposed, or as edited; None when rejected or responded."""
    feedback: str | None
    """Why it was rejected, or the person's answer (``responded``), or a note with an approval."""
    decided_by: str
    decided_at: datetime

    @property
    def approved(self) -> bool:
        return self.decision in ("approved", "edited")

    @classmethod
    def from_outcome(cls, outcome: Mapping[str, Any]) -> Decision:
        arguments = outcome.get("arguments")
        return cls(
            decision=str(outcome["decision"]), arguments=dict(arguments) if arguments is not None else None,
            feedback=outcome.get("feedback"), decided_by=str(outcome["decidedBy"]),
            decided_at=datetime.fromisoformat(str(outcome["decidedAt"])),
        )  # fmt: skip


@dataclass
class ApprovalHandle:
    """One request: its task, and the way to wait for its decision (as often as needed; the same answer)."""

    client: StepwiseClient
    task_id: str
    callback_secret: str | None = None
    """With a ``callback_url``: verify the callback's ``Stepwise-Signature`` with it (``engine.verify_signature``)."""
    _decision: Decision | None = field(default=None, repr=False)

    async def poll(self, wait_seconds: int = 0) -> Decision | None:
        """The decision if there is one, waiting up to ``wait_seconds`` (at most 60) for it; None while pending."""
        if self._decision is not None:
            return self._decision
        data = await self.client.execute(AWAIT_DECISION, {"taskId": self.task_id, "timeout": wait_seconds})
        result = _result(data, "awaitDecision", "AwaitDecisionSuccess")
        if result["status"] == "PENDING":
            return None
        if result["status"] == "CLOSED":
            raise ApprovalClosedError("CLOSED", f"the request was {result['task']['status'].lower()} undecided")
        self._decision = Decision.from_outcome(result["outcome"])
        return self._decision

    async def decision(self, timeout: float | None = None) -> Decision:
        """Wait for the decision, at most ``timeout`` seconds (None: as long as it takes);
        :class:`DecisionTimeoutError` when the time is up."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = MAX_WAIT_SECONDS if deadline is None else max(0, min(MAX_WAIT_SECONDS, deadline - time.monotonic()))
            found = await self.poll(int(left))
            if found is not None:
                return found
            if deadline is not None and time.monotonic() >= deadline:
                raise DecisionTimeoutError(f"no decision on task {self.task_id} within {timeout} s")


class StepwiseClient:
    """A connection to one Stepwise server as one caller (its bearer token: a service account's, say).

    ``url`` is the GraphQL endpoint (``http://host:8000/graphql``). Use it as an async context manager,
    or call :meth:`aclose` when done. ``http_options`` go to the underlying ``httpx.AsyncClient``."""

    def __init__(self, url: str, token: str, **http_options: Any) -> None:
        options: dict[str, Any] = {"timeout": httpx.Timeout(MAX_WAIT_SECONDS + 15.0), **http_options}
        headers = {**options.pop("headers", {}), "Authorization": f"Bearer {token}"}
        self._client = Client(transport=HTTPXAsyncTransport(url, headers=headers, **options))
        self._session: AsyncClientSession | None = None
        self._connection = AsyncExitStack()

    async def __aenter__(self) -> StepwiseClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._session = None
        await self._connection.aclose()

    async def execute(self, query: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        """One GraphQL operation; its ``data``."""
        if self._session is None:
            session = await self._connection.enter_async_context(self._client)
            assert isinstance(session, AsyncClientSession)  # an async transport's session
            self._session = session
        data: dict[str, Any] = await self._session.execute(GraphQLRequest(query, variable_values=dict(variables)))
        return data

    async def request_approval(
        self,
        action: str,
        arguments: Mapping[str, Any],
        *,
        assign_to_role: str | None = None,
        assign_to_user: str | None = None,
        assign_to_group: str | None = None,
        arguments_schema: Mapping[str, Any] | None = None,
        summary: str | None = None,
        priority: str = "NORMAL",
        due_in: str | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
    ) -> ApprovalHandle:
        """Ask for approval of ``action`` with ``arguments``; exactly one ``assign_to_*`` says who decides.

        Give an ``idempotency_key`` that survives your process (a run id, a tool-call id): asked again with
        it, after a crash say, the server returns the same request, never a second one. ``arguments_schema``
        (JSON Schema) is what any edit must match; ``due_in`` an ISO 8601 duration (``PT4H``)."""
        request: dict[str, Any] = {
            "action": action, "arguments": dict(arguments), "summary": summary, "priority": priority,
            "assignTo": {"role": assign_to_role, "user": assign_to_user, "group": assign_to_group},
            "argumentsSchema": dict(arguments_schema) if arguments_schema is not None else None, "dueIn": due_in,
            "idempotencyKey": idempotency_key, "callbackUrl": callback_url,
        }  # fmt: skip
        data = await self.execute(REQUEST_APPROVAL, {"input": {k: v for k, v in request.items() if v is not None}})
        result = _result(data, "requestApproval", "RequestApprovalSuccess")
        return ApprovalHandle(self, str(result["task"]["id"]), result.get("callbackSecret"))

    def handle(self, task_id: str) -> ApprovalHandle:
        """A handle for a request made earlier (its task id kept across a restart)."""
        return ApprovalHandle(self, task_id)


def _result(data: Mapping[str, Any], field_name: str, success: str) -> dict[str, Any]:
    result: dict[str, Any] = data[field_name]
    if result["__typename"] != success:
        errors = {e["field"]: e["message"] for e in result.get("fieldErrors", ())}
        raise StepwiseClientError(result.get("code", result["__typename"]), result.get("message", ""), errors)
    return result
