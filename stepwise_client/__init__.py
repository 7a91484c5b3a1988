"""A small Python client for Stepwise's action approvals (docs/approvals.md): an automated caller (an AI agent,
a script) asks a person before it acts, and acts on the decision.

    async with StepwiseClient("http://127.0.0.1:8000/graphql", token) as stepwise:
        handle = await stepwise.request_approval("refund", {"orderId": "A-17", "amount": 120},
                                                 assign_to_role="approver", idempotency_key="run-7")
        decision = await handle.decision(timeout=3600)
        if decision.approved:
            refund(**decision.arguments)  # as approved, or as the person edited them

:class:`SyncStepwiseClient` is the same for scripts without an event loop.
"""

from stepwise_client.client import (
    ApprovalClosedError,
    ApprovalHandle,
    Decision,
    DecisionTimeoutError,
    StepwiseClient,
    StepwiseClientError,
)
from stepwise_client.sync import SyncApprovalHandle, SyncStepwiseClient

__all__ = [
    "ApprovalClosedError",
    "ApprovalHandle",
    "Decision",
    "DecisionTimeoutError",
    "StepwiseClient",
    "StepwiseClientError",
    "SyncApprovalHandle",
    "SyncStepwiseClient",
]
