"""A LangGraph-style tool guard in plain Python: the agent's tool asks a person before it runs, and runs
with the approved (possibly edited) arguments, once.

The agent framework calls ``refund(call_id=..., order_id=..., amount=...)`` as it would any tool. The guard:

1. asks Stepwise, with the tool call's id as the idempotency key: an agent that crashed and replays the
   call gets the same request back, never a second one in the approvers' inbox;
2. waits for the decision (``awaitDecision``: a decision made while the agent was down is there when it
   comes back);
3. runs the tool with the decision's arguments if approved or edited, and records that it ran, so a
   replayed call returns the recorded result instead of refunding twice; a rejection or a response
   comes back to the model as the tool's result, for it to read and re-plan.

Run against a server (``make run`` in another shell, then ``stepwise service-account create refund-bot``):

    STEPWISE_URL=http://127.0.0.1:8000/graphql STEPWISE_TOKEN=<token> python examples/tool_guard.py
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from stepwise_client import StepwiseClient

Tool = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class NotApproved:
    """What the model reads instead of the tool's result: the person's decision and their words."""

    decision: str
    feedback: str | None


def guarded(
    client: StepwiseClient, tool: Tool, *, action: str, assign_to_role: str, arguments_schema: dict[str, Any],
    ledger: MutableMapping[str, Any], timeout: float | None = None,
) -> Tool:  # fmt: skip
    """``tool`` behind a person's approval. ``ledger`` remembers each call id's result (keep it durable in a
    real agent: a database row, the framework's checkpoint), which is what makes the run happen once."""

    async def call(call_id: str, **arguments: Any) -> Any:
        if call_id in ledger:  # a replay of a call that already ran: its result, not a second run
            return ledger[call_id]
        handle = await client.request_approval(
            action, arguments, arguments_schema=arguments_schema, assign_to_role=assign_to_role,
            summary=f"{action}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})",
            idempotency_key=f"{action}:{call_id}",
        )  # fmt: skip
        decision = await handle.decision(timeout=timeout)
        if not decision.approved or decision.arguments is None:
            return NotApproved(decision.decision, decision.feedback)
        result = await tool(**decision.arguments)
        ledger[call_id] = result
        return result

    return call


REFUND_SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}, "amount": {"type": "number", "exclusiveMinimum": 0}},
    "required": ["order_id", "amount"],
    "additionalProperties": False,
}


async def refund(order_id: str, amount: float) -> str:
    return f"refunded {amount} on {order_id}"


async def main() -> None:
    async with StepwiseClient(os.environ["STEPWISE_URL"], os.environ["STEPWISE_TOKEN"]) as client:
        tool = guarded(client, refund, action="refund", assign_to_role="approver", arguments_schema=REFUND_SCHEMA,
                       ledger={})  # fmt: skip
        print("waiting for a person to decide in the Stepwise inbox…")
        print(await tool("call-1", order_id="A-17", amount=120))


if __name__ == "__main__":
    asyncio.run(main())
