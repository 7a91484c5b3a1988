"""Every expected error a mutation can answer with is a member of its result union.

Each mutation hands its work to one method of the app's services (``engine.Services``). Here that
method raises, in turn, each engine error the schema turns into a typed result, and the mutation
must answer with that result, a member of its union — or, for the few errors its service can never
raise (``CANNOT_RAISE``, each with the reason), the union must not list the member and the mutation
answers as for a bug (a top-level error). Before this test, ``startWorkflow``,
``deployWorkflowDefinition`` and ``postTaskMessage`` turned a lost race (``ConcurrentUpdateError``:
every transition and deploy gives up after a few) into ``Conflict``, which their unions did not
include: GraphQL failed to resolve the union's type.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from starlette.applications import Starlette

from engine import (
    ConcurrentUpdateError,
    ConflictError,
    FieldError,
    ForbiddenError,
    InvalidStateError,
    NotFoundError,
    Services,
    StepwiseError,
    ValidationError,
)
from server.settings import Settings
from tests.server.conftest import GraphQL

ERRORS: list[StepwiseError] = [
    ValidationError("bad input", [FieldError("input", "is bad")]),
    NotFoundError("no such thing"),
    ForbiddenError("not you"),
    ConflictError("someone else was first"),
    ConcurrentUpdateError("too busy"),
    InvalidStateError("not now"),
]
TYPENAME = {
    ValidationError: "ValidationFailed",
    NotFoundError: "NotFound",
    ForbiddenError: "Forbidden",
    ConflictError: "Conflict",
    ConcurrentUpdateError: "Conflict",
    InvalidStateError: "InvalidState",
}


@dataclass(frozen=True)
class Mutation:
    name: str
    service: str
    """The attribute of :class:`engine.Services` whose method does the work."""
    method: str
    input: dict[str, Any]
    cannot_raise: dict[type[StepwiseError], str] = field(default_factory=dict)
    """Errors the service never raises for this mutation, with the reason."""
    answers_instead: dict[str, str] = field(default_factory=dict)
    """A result the mutation answers with in place of another (by type name)."""


# devSignIn only reads the directory, and issues a token.
READ_ONLY = "a look-up of one user writes nothing"

# A webhook is a row written outside any workflow: it has no state. (Conflict: an idempotency key reused.)
WEBHOOKS_NEVER: dict[type[StepwiseError], str] = {InvalidStateError: "a webhook has no state"}

# A bulk action answers each item's error in that item; the mutation itself refuses only a bad list.
PER_ITEM: dict[type[StepwiseError], str] = {
    kind: "an item's error is answered in its item"
    for kind in (NotFoundError, ForbiddenError, ConflictError, ConcurrentUpdateError, InvalidStateError)
}
MUTATIONS = [
    Mutation("saveTaskProgress", "tasks", "save_progress", {"taskId": "t", "values": {}}),
    Mutation("submitTask", "tasks", "submit", {"taskId": "t"}),
    Mutation("approveTask", "tasks", "decide", {"taskId": "t"}),
    Mutation("rejectTask", "tasks", "decide", {"taskId": "t"}),
    Mutation("claimTask", "tasks", "claim", {"taskId": "t"}),
    Mutation("assignTask", "tasks", "assign", {"taskId": "t", "userId": "bob"}),
    Mutation("retryTask", "tasks", "retry", {"taskId": "t"}),
    Mutation("delegateTask", "tasks", "delegate", {"taskId": "t", "to": "bob"}),
    Mutation("resolveTask", "tasks", "resolve", {"taskId": "t"}),
    Mutation("postTaskMessage", "tasks", "post_message", {"taskId": "t", "body": "hello"},
             cannot_raise={InvalidStateError: "a message may be posted on a task in any state"}),
    Mutation("startWorkflow", "workflows", "start", {"definitionKey": "expense_approval"},
             cannot_raise={InvalidStateError: "a new instance is in no state yet"}),
    Mutation("cancelWorkflow", "workflows", "cancel", {"workflowInstanceId": "w"}),
    Mutation("sendSignal", "workflows", "send_signal", {"workflowInstanceId": "w", "nodeId": "n"}),
    Mutation("correlate", "workflows", "correlate", {"definitionKey": "d", "correlationKey": "c", "nodeId": "n"}),
    Mutation("deployWorkflowDefinition", "workflows", "deploy", {"definition": {}},
             cannot_raise={NotFoundError: "a deploy looks nothing up", InvalidStateError: "a deploy has no state"}),
    *(Mutation(name, "bulk", method, {"taskIds": ["t"], **extra}, cannot_raise=PER_ITEM)
      for name, method, extra in (("claimTasks", "claim", {}), ("assignTasks", "assign", {"userId": "bob"}),
                                  ("decideTasks", "decide", {"decision": "APPROVED"}))),
    Mutation("uploadTaskDocuments", "documents", "upload", {"taskId": "t", "requirementKey": "r", "files": []},
             answers_instead={"Conflict": "InvalidState"}),  # the task changed under the upload: its state
    Mutation("createWebhook", "webhooks", "create", {"url": "https://93.184.215.14/hook"},
             cannot_raise={NotFoundError: "a new webhook looks nothing up", **WEBHOOKS_NEVER}),
    Mutation("updateWebhook", "webhooks", "update", {"id": "w", "enabled": False}, cannot_raise=WEBHOOKS_NEVER),
    Mutation("deleteWebhook", "webhooks", "delete", {"id": "w"},
             cannot_raise=WEBHOOKS_NEVER),  # ValidationFailed: an over-long idempotencyKey
    Mutation("rotateWebhookSecret", "webhooks", "rotate_secret", {"id": "w"},
             cannot_raise=WEBHOOKS_NEVER),  # ValidationFailed: an over-long idempotencyKey
    Mutation("devSignIn", "visibility", "user", {"userId": "alice"},
             cannot_raise={ValidationError: "an id is all it takes", ConflictError: READ_ONLY,
                           ConcurrentUpdateError: READ_ONLY, InvalidStateError: READ_ONLY}),
    Mutation("redeliverWebhook", "webhooks", "redeliver", {"deliveryId": "d"},
             cannot_raise=WEBHOOKS_NEVER),  # ValidationFailed: an over-long idempotencyKey
    Mutation("requestApproval", "approval_requests", "request",
             {"action": "refund", "arguments": {}, "assignTo": {"role": "approver"}},
             cannot_raise={NotFoundError: "a new request looks nothing up", InvalidStateError: "it has no state yet"}),
    Mutation("decideActionApproval", "tasks", "decide_action", {"taskId": "t", "decision": "APPROVED"}),
]  # fmt: skip


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Room for every mutation × error in one burst (the default burst is 100 a user), and development
    on, for devSignIn (with a mail server named, so no development mailbox is started)."""
    return replace(settings, mutation_burst=1000, dev=True, smtp_url="smtp://127.0.0.1:9")


MUTATIONS_QUERY = (
    "{ __schema { mutationType { fields { name args { type { ofType { name } } } type { ofType { name } } } } } }"
)
MEMBERS_QUERY = "query($name: String!) { __type(name: $name) { possibleTypes { name } } }"


async def mutation_types(gql: GraphQL) -> dict[str, tuple[str, set[str], set[str]]]:
    """Each mutation's input type, its union's members, and those of them that implement ``Error``
    (introspected a level at a time: graphql-core limits how deep one introspection may go)."""

    async def members(name: str) -> set[str]:
        body = await gql(MEMBERS_QUERY, user="alice", name=name)
        return {member["name"] for member in body["data"]["__type"]["possibleTypes"]}

    errors = await members("Error")
    body = await gql(MUTATIONS_QUERY, user="alice")
    found = {}
    for mutation in body["data"]["__schema"]["mutationType"]["fields"]:
        [argument] = mutation["args"]
        union = await members(mutation["type"]["ofType"]["name"])
        found[mutation["name"]] = (argument["type"]["ofType"]["name"], union, union & errors)
    return found


async def test_every_mutation_is_checked(gql: GraphQL) -> None:
    assert set(await mutation_types(gql)) == {mutation.name for mutation in MUTATIONS}


async def test_every_member_of_a_result_union_but_its_success_is_an_error(gql: GraphQL) -> None:
    for name, (_, members, errors) in (await mutation_types(gql)).items():
        assert len(members - errors) == 1, f"{name}: {sorted(members - errors)} are not all one success type"


async def test_each_error_a_mutation_can_meet_is_a_member_of_its_union(
    gql: GraphQL, app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    services: Services = app.state.services
    types = await mutation_types(gql)
    wrong = []
    for mutation in MUTATIONS:
        input_type, members, _ = types[mutation.name]
        query = f"""mutation($input: {input_type}!) {{ {mutation.name}(input: $input) {{
            __typename ... on Error {{ code message }} }} }}"""
        for error in ERRORS:

            async def fail(*args: Any, error: StepwiseError = error, **kwargs: Any) -> Any:
                raise error

            monkeypatch.setattr(getattr(services, mutation.service), mutation.method, fail)
            body = await gql(query, user="dana", input=mutation.input)
            expected = TYPENAME[type(error)]
            expected = mutation.answers_instead.get(expected, expected)
            if type(error) in mutation.cannot_raise:
                if expected in members:
                    wrong.append(f"{mutation.name}: {expected} is in the union; {type(error).__name__} is not excluded")
                if not body.get("errors"):
                    wrong.append(f"{mutation.name}: an impossible {type(error).__name__} did not read as a bug: {body}")
                continue
            result = (body.get("data") or {}).get(mutation.name)
            if expected not in members or result is None or result["__typename"] != expected:
                wrong.append(f"{mutation.name}: {type(error).__name__} answered {body}, not a {expected} member")
    assert wrong == []


async def test_an_over_long_idempotency_key_is_validation_failed_in_every_union(gql: GraphQL) -> None:
    types = await mutation_types(gql)
    wrong = []
    for mutation in MUTATIONS:
        if mutation.name == "devSignIn":
            continue  # signing in writes nothing, so it ignores the key
        input_type = types[mutation.name][0]
        query = f"""mutation($input: {input_type}!) {{ {mutation.name}(input: $input) {{
            __typename ... on ValidationFailed {{ fieldErrors {{ field code }} }} }} }}"""
        body = await gql(query, user="dana", input={**mutation.input, "idempotencyKey": "k" * 256})
        result = (body.get("data") or {}).get(mutation.name)
        if result is None or result.get("fieldErrors") != [{"field": "idempotencyKey", "code": "INVALID_LENGTH"}]:
            wrong.append(f"{mutation.name}: {body}")
    assert wrong == []
