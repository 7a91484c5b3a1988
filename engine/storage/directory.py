"""The directory: users, roles, groups and memberships (docs/design.md §1, §5)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from sqlalchemy import bindparam, delete, literal_column, select, union_all

from engine.state import User
from engine.storage.database import Executor
from engine.storage.lists import any_of
from engine.storage.models import groups, roles, user_groups, user_roles, users

# A user with every membership in one round trip: one row per role or group (kind "r"/"g"), or one
# row with NULLs for a user with neither. Authentication and transitions' starters read users often.
_MEMBERSHIPS = union_all(
    select(user_roles.c.user_id, literal_column("'r'").label("kind"), user_roles.c.role_key.label("member_of")),
    select(user_groups.c.user_id, literal_column("'g'").label("kind"), user_groups.c.group_key.label("member_of")),
).subquery("memberships")
_USERS = (
    select(users.c.id, users.c.name, users.c.email, _MEMBERSHIPS.c.kind, _MEMBERSHIPS.c.member_of)
    .outerjoin(_MEMBERSHIPS, _MEMBERSHIPS.c.user_id == users.c.id)
    .where(any_of(users.c.id, "ids"))
)


# Who holds a role / is in a group (approval policies count them); "key" is the role's or group's.
ROLE_MEMBERS = select(user_roles.c.user_id).where(user_roles.c.role_key == bindparam("key"))
GROUP_MEMBERS = select(user_groups.c.user_id).where(user_groups.c.group_key == bindparam("key"))


class DirectoryRepository:
    def __init__(self, session: Executor) -> None:
        self.session = session

    async def get_users(self, user_ids: Iterable[str]) -> dict[str, User]:
        ids = list(set(user_ids))
        if not ids:
            return {}
        found: dict[str, tuple[str, str | None, set[str], set[str]]] = {}
        for row in await self.session.execute(_USERS, {"ids": ids}):
            name, email, role_keys, group_keys = found.setdefault(row.id, (row.name, row.email, set(), set()))
            if row.kind is not None:
                (role_keys if row.kind == "r" else group_keys).add(row.member_of)
        return {
            user_id: User(id=user_id, name=name, email=email, roles=frozenset(role_keys), groups=frozenset(group_keys))
            for user_id, (name, email, role_keys, group_keys) in found.items()
        }

    async def get_user(self, user_id: str) -> User | None:
        return (await self.get_users([user_id])).get(user_id)

    async def members(self, *, role: str | None = None, group: str | None = None) -> list[str]:
        """The ids of the users who hold ``role`` (or are in ``group``), sorted."""
        statement, key = (ROLE_MEMBERS, role) if role is not None else (GROUP_MEMBERS, group)
        return sorted(row.user_id for row in await self.session.execute(statement, {"key": key}))

    async def list_users(self) -> list[User]:
        ids = [row.id for row in await self.session.execute(select(users.c.id).order_by(users.c.id))]
        found = await self.get_users(ids)
        return [found[user_id] for user_id in ids]

    async def ensure_role(self, key: str, title: str | None = None) -> None:
        if await self.session.scalar(select(roles.c.key).where(roles.c.key == key)) is None:
            await self.session.execute(roles.insert().values(key=key, title=title or key))

    async def ensure_group(self, key: str, title: str | None = None) -> None:
        if await self.session.scalar(select(groups.c.key).where(groups.c.key == key)) is None:
            await self.session.execute(groups.insert().values(key=key, title=title or key))

    async def save_user(
        self,
        user_id: str,
        name: str,
        email: str | None,
        role_keys: Collection[str],
        group_keys: Collection[str],
        now: datetime,
    ) -> bool:
        """Create or update a user and set its memberships; returns whether anything changed."""  # fmt: skip
        existing = await self.get_user(user_id)
        wanted = User(user_id, name, email, frozenset(role_keys), frozenset(group_keys))
        if existing == wanted:
            return False
        for key in role_keys:
            await self.ensure_role(key)
        for key in group_keys:
            await self.ensure_group(key)
        if existing is None:
            await self.session.execute(users.insert().values(id=user_id, name=name, email=email, created_at=now))
        else:
            await self.session.execute(users.update().where(users.c.id == user_id).values(name=name, email=email))
            await self.session.execute(delete(user_roles).where(user_roles.c.user_id == user_id))
            await self.session.execute(delete(user_groups).where(user_groups.c.user_id == user_id))
        for key in sorted(role_keys):
            await self.session.execute(user_roles.insert().values(user_id=user_id, role_key=key))
        for key in sorted(group_keys):
            await self.session.execute(user_groups.insert().values(user_id=user_id, group_key=key))
        return True
