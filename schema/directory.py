"""What a client needs around the task API: the user directory (the assign picker), the live cursor to
subscribe from, and the development sign-in (``STEPWISE_DEV`` only; refused otherwise)."""

from __future__ import annotations

from typing import Annotated

import strawberry

from engine import ForbiddenError, StepwiseError, encode_event_cursor
from schema.context import Info
from schema.errors import Forbidden, NotFound, narrowed
from schema.idempotency import idempotency_key_field
from schema.permissions import IsAuthenticated
from schema.types.user import User

DEV_ONLY = "development sign-in is available only when the server runs with STEPWISE_DEV on"


@strawberry.type(description="The user directory.")
class UserList:
    users: list[User]


UsersResult = Annotated[UserList | Forbidden, strawberry.union("UsersResult")]


@strawberry.type
class DirectoryQueries:
    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="Every user, for assigning tasks: admins and managers only (else Forbidden).",
    )
    async def users(self, info: Info) -> UsersResult:
        try:
            found = await info.context.visibility.users(info.context.user, info.context.read)
        except StepwiseError as exc:
            return narrowed(exc, Forbidden)
        return UserList(users=[User.from_domain(u) for u in found])

    @strawberry.field(
        description="The users `devSignIn` may sign in as; null unless the server runs with STEPWISE_DEV on. "
        "Needs no token."
    )
    async def dev_users(self, info: Info) -> list[User] | None:
        if info.context.dev_tokens is None:
            return None
        return [User.from_domain(u) for u in await info.context.visibility.directory(info.context.read)]

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="The cursor of the last task event this server has read. Read it before a page's data, "
        "then subscribe with `taskEvents(after:)`: whatever commits in between is replayed, nothing is missed.",
    )
    def task_event_cursor(self, info: Info) -> str | None:
        events = info.context.events
        return None if events is None else encode_event_cursor(events.cursor)


@strawberry.input
class DevSignInInput:
    user_id: strawberry.ID
    # Every mutation's input has it (schema.idempotency); signing in writes nothing, so a repeat is one anyway.
    idempotency_key: str | None = idempotency_key_field()


@strawberry.type
class DevSignInSuccess:
    token: str = strawberry.field(description="A bearer token for the user, as `stepwise token USER` prints.")
    user: User


DevSignInResult = Annotated[DevSignInSuccess | NotFound | Forbidden, strawberry.union("DevSignInResult")]


@strawberry.type
class DevSignInMutations:
    @strawberry.mutation(
        description="Development only (STEPWISE_DEV): a token for any directory user, without a password. "
        "Forbidden when the server runs without STEPWISE_DEV."
    )
    async def dev_sign_in(self, info: Info, input: DevSignInInput) -> DevSignInResult:
        issue = info.context.dev_tokens
        if issue is None:
            return Forbidden(message=DEV_ONLY, code=ForbiddenError.code)
        try:
            user = await info.context.visibility.user(input.user_id)
        except StepwiseError as exc:
            return narrowed(exc, NotFound, Forbidden)  # a look-up of one user: absent or not for you
        return DevSignInSuccess(token=issue(user.id), user=User.from_domain(user))
