from __future__ import annotations

import strawberry

from engine import state
from schema.context import Info


@strawberry.type(description="A directory user; `id` is the username.")
class User:
    id: strawberry.ID
    name: str
    email: str | None
    roles: list[str]
    groups: list[str]
    is_service: bool = strawberry.field(
        description="A service account (an AI agent, a script): it asks for approvals and never decides them."
    )

    @classmethod
    def from_domain(cls, user: state.User) -> User:
        return cls(
            id=strawberry.ID(user.id), name=user.name, email=user.email, roles=sorted(user.roles),
            groups=sorted(user.groups), is_service=user.is_service,
        )  # fmt: skip

    @classmethod
    def of(cls, user: state.User | None, user_id: str) -> User:
        """``user_id`` as the directory has it (``user``), or as an unknown user where it has none."""
        return cls.from_domain(user) if user is not None else cls.unknown(user_id)

    @classmethod
    def unknown(cls, user_id: str) -> User:
        """A user that is no longer (or never was) in the directory, e.g. a system actor."""
        return cls(id=strawberry.ID(user_id), name=user_id, email=None, roles=[], groups=[], is_service=False)


async def load_user(info: Info, user_id: str | None) -> User | None:
    if user_id is None:
        return None
    return User.of(await info.context.loaders.users.load(user_id), user_id)
