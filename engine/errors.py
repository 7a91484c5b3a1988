"""Every error the engine raises on purpose.

StepwiseError                 base; ``code`` is stable and reaches API clients
├── NotFoundError             NOT_FOUND: no such object, or the actor may not see it
├── ForbiddenError            FORBIDDEN: the actor may see it but not do this
│   ├── SeparationOfDutiesError  SEPARATION_OF_DUTIES: the task's ``excludes`` shut this user out
│   └── ServiceAccountError      SERVICE_ACCOUNT: a service account asks; only people decide
├── ConflictError             CONFLICT: a stale revision, a second signal, a duplicate
│   ├── IdempotencyKeyReusedError  IDEMPOTENCY_KEY_REUSED: the key came before with other input
│   └── SignalAlreadyHeldError     SIGNAL_ALREADY_HELD: a signal already waits for that node
├── InvalidStateError         INVALID_STATE: the object is not in a state that allows this
├── ValidationError           VALIDATION_FAILED: bad input; ``field_errors`` names each field
│   └── DefinitionError       VALIDATION_FAILED: a workflow definition failed validation
├── AuthenticationError       UNAUTHENTICATED: missing, invalid or expired credentials
├── EmailActionRefusedError   LINK_USED, LINK_EXPIRED, LINK_INVALID, LINK_OTHER_USER: an approve-by-email link
├── ConcurrentUpdateError     CONCURRENT_UPDATE: lost an optimistic-lock race; the caller may retry
├── UnavailableError          UNAVAILABLE: a service the request needs (the database, a token issuer) is not answering
├── SubscriptionLimitError    TOO_MANY_SUBSCRIPTIONS: the user already holds as many live subscriptions as allowed
└── SubscriberOverflowError   SUBSCRIBER_OVERFLOW: a subscriber fell too far behind; resume from ``resume_after``

NewerDefinitionDeployed and RememberedStateChanged are not among them: signals between storage and
runner that never leave the engine.
"""

from __future__ import annotations

from dataclasses import dataclass


class StepwiseError(Exception):
    """Base class of the engine's expected errors."""

    code = "ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(StepwiseError):
    """The object does not exist, or the actor may not see it (existence must not leak)."""

    code = "NOT_FOUND"


class ForbiddenError(StepwiseError):
    """The actor may see the object but may not perform the action."""

    code = "FORBIDDEN"


class SeparationOfDutiesError(ForbiddenError):
    """The task's ``excludes`` rule ``rule`` (``starter``, ``previousApprovers``, ``completedBy:<node>``)
    shuts the user out: they may not claim it, be assigned it, have it delegated to them, or decide it,
    whatever their roles (admins too). The API's ``Forbidden`` with this code."""

    code = "SEPARATION_OF_DUTIES"

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


class ServiceAccountError(ForbiddenError):
    """A service account (an API client that is not a person) tried what only people do: decide an
    action approval. Built in, whatever its roles, so an asker can never approve its own request."""

    code = "SERVICE_ACCOUNT"


class EmailActionRefusedError(StepwiseError):
    """An approve-by-email link (engine.tasks.email_actions) that may not act: ``code`` says why
    (``LINK_USED``, ``LINK_EXPIRED``, ``LINK_INVALID``, ``LINK_OTHER_USER``); nothing was changed."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class ConflictError(StepwiseError):
    """The change lost to another: a stale revision, a signal to a completed node."""

    code = "CONFLICT"


class IdempotencyKeyReusedError(ConflictError):
    """An idempotency key the user sent before with other input (engine.idempotency)."""

    code = "IDEMPOTENCY_KEY_REUSED"


class SignalAlreadyHeldError(ConflictError):
    """A signal for a node its instance has not reached, while one sent earlier already waits there."""

    code = "SIGNAL_ALREADY_HELD"


class InvalidStateError(StepwiseError):
    """The object's state does not allow the action (e.g. retrying a task that did not fail)."""

    code = "INVALID_STATE"


@dataclass(frozen=True)
class FieldError:
    """One offending input field: a dotted path, a readable message and a stable code."""

    field: str
    message: str
    code: str = "INVALID"


class ValidationError(StepwiseError):
    """The input is malformed; ``field_errors`` lists every offending field at once."""

    code = "VALIDATION_FAILED"

    def __init__(self, message: str, field_errors: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.field_errors: list[FieldError] = field_errors or []


class DefinitionError(ValidationError):
    """A workflow definition is invalid; each field error's ``field`` names the node or edge."""


class AuthenticationError(StepwiseError):
    """Credentials are missing, malformed, invalid or expired."""

    code = "UNAUTHENTICATED"


class ConcurrentUpdateError(StepwiseError):
    """An optimistic-lock check failed because another transaction changed the row first."""

    code = "CONCURRENT_UPDATE"


class UnavailableError(StepwiseError):
    """Something the request needs is not answering (the database, a token issuer's keys): not the
    client's fault, and worth retrying later (HTTP 503)."""

    code = "UNAVAILABLE"


class SubscriptionLimitError(StepwiseError):
    """The user already holds as many live subscriptions as this server process allows."""

    code = "TOO_MANY_SUBSCRIPTIONS"


class SubscriberOverflowError(StepwiseError):
    """A subscriber did not keep up and its bounded queue overflowed; the subscription has ended.

    ``resume_after`` is the position of the last event it was given (or where it started): subscribing
    again after it misses nothing.
    """

    code = "SUBSCRIBER_OVERFLOW"

    def __init__(self, message: str, resume_after: int) -> None:
        super().__init__(message)
        self.resume_after = resume_after


class ExecutionFailedError(StepwiseError):
    """A system task's attempt failed. ``non_retryable`` skips the remaining attempts (e.g. a
    denied host or a bad configuration); ``request``/``response`` are recorded with the attempt."""

    code = "EXECUTION_FAILED"

    def __init__(
        self, message: str, *, non_retryable: bool = False, request: object = None, response: object = None
    ) -> None:
        super().__init__(message)
        self.non_retryable = non_retryable
        self.request = request
        self.response = response


class NewerDefinitionDeployed(Exception):  # noqa: N818  (a signal to the runner, not an error: it never leaves it)
    """A start ran on the latest version of its definition this process knew of, and a newer one has
    been deployed since (by another process); nothing was written. The runner reads the latest
    version and starts again."""


class RememberedStateChanged(Exception):  # noqa: N818  (a signal to the runner, not an error: it never leaves it)
    """A transition started from the state this process remembered its instance in
    (:mod:`engine.transitions.remembered`), and the instance's open tasks are no longer as remembered; nothing
    was written. The runner reads the instance and runs the transition again."""


class RememberedMembersChanged(Exception):  # noqa: N818  (a signal to the runner, not an error: it never leaves it)
    """A transition counted a role's or group's members as this process remembered them
    (:class:`engine.transitions.remembered.RememberedMembers`), and they are no longer those; nothing was
    written. The runner forgets them and runs the transition again, which reads them."""

    def __init__(self, assumed: list[tuple[str, str]]) -> None:
        super().__init__(f"members changed: {assumed}")
        self.assumed = assumed
        """The ``(kind, key)`` of every membership the transition took as remembered."""
