"""Approve by email: links that decide a task as the person they were sent to, once.

A link carries a token (a JWT, HS256 under the server's secret key, via PyJWT) naming one user and one
task, with an expiry and a random id. Following it shows a confirmation page (a GET changes nothing: mail
scanners fetch links); confirming POSTs it, and the task is decided through :class:`TaskService` as that
user, with every rule a decision in the app meets. The token's id is then recorded as used, so the link
works once. A used, expired, altered or someone else's link (the request carries another user's
credentials) is refused before anything is written.

Expiry is checked against the engine's clock (tests inject one), not PyJWT's wall clock.
"""

from __future__ import annotations

import secrets as random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import jwt
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from engine.errors import EmailActionRefusedError, NotFoundError
from engine.idempotency import Guard, IdempotentRequest
from engine.state import Task, User
from engine.storage.directory import DirectoryRepository
from engine.storage.models import email_action_uses
from engine.storage.tasks import TaskRepository
from engine.tasks import policies
from engine.tasks.service import TaskService
from engine.transitions.engine import Engine

AUDIENCE = "stepwise:email-action"
ALGORITHM = "HS256"
DEFAULT_TTL = timedelta(hours=72)


class EmailAction(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    OPEN = "open"

    @property
    def decision(self) -> str | None:
        return {EmailAction.APPROVE: "approved", EmailAction.REJECT: "rejected"}.get(self)


@dataclass(frozen=True)
class EmailActionClaim:
    """What a valid token says: who may act on which task, until when; ``token_id`` makes it single-use."""

    token_id: str
    user_id: str
    task_id: str
    expires_at: datetime


@dataclass(frozen=True)
class EmailActionPage:
    """What a confirmation page shows: the task, as whom, and which decisions the link may make."""

    claim: EmailActionClaim
    user: User
    task: Task
    decisions: tuple[EmailAction, ...]
    why_not: str | None = None
    """Why the user may not decide it (now), when ``decisions`` is empty."""


class EmailActionTokens:
    """Issues and reads the links' tokens."""

    def __init__(self, engine: Engine, secret_key: str, ttl: timedelta = DEFAULT_TTL) -> None:
        self.engine, self.secret_key, self.ttl = engine, secret_key, ttl

    def issue(self, user_id: str, task_id: str) -> str:
        now = self.engine.clock.now()
        claims = {"aud": AUDIENCE, "sub": user_id, "task": task_id, "jti": random.token_urlsafe(16),
                  "iat": int(now.timestamp()), "exp": int((now + self.ttl).timestamp())}  # fmt: skip
        return jwt.encode(claims, self.secret_key, algorithm=ALGORITHM)

    def read(self, token: str) -> EmailActionClaim:
        try:
            # The audience keeps a session token from passing for a link, and a link for a session token
            # (the server's tokens carry no such audience, and PyJWT refuses an audience it was not told).
            claims = jwt.decode(token, self.secret_key, algorithms=[ALGORITHM], audience=AUDIENCE,
                                options={"verify_exp": False, "require": ["exp", "sub", "jti", "task"]})  # fmt: skip
        except jwt.PyJWTError as exc:
            raise _invalid() from exc
        values = (claims.get("jti"), claims.get("sub"), claims.get("task"), claims.get("exp"))
        if not all(isinstance(v, str) for v in values[:3]) or not isinstance(values[3], int):
            raise _invalid()
        claim = EmailActionClaim(str(values[0]), str(values[1]), str(values[2]),
                                 datetime.fromtimestamp(int(values[3]), self.engine.clock.now().tzinfo))  # fmt: skip
        if self.engine.clock.now() >= claim.expires_at:
            raise EmailActionRefusedError("this link has expired; open the task in Stepwise instead", "LINK_EXPIRED")
        return claim


class EmailActionService:
    """What the links do: :meth:`page` for the confirmation page, :meth:`decide` for its form."""

    def __init__(self, engine: Engine, tasks: TaskService, tokens: EmailActionTokens) -> None:
        self.engine, self.tasks, self.tokens = engine, tasks, tokens

    async def page(self, token: str, signed_in: User | None = None) -> EmailActionPage:
        claim = self.tokens.read(token)
        _check_signed_in(claim, signed_in)
        async with self.engine.db.read() as session:
            if await session.scalar(
                select(email_action_uses.c.token_id).where(email_action_uses.c.token_id == claim.token_id)
            ):
                raise _used()
            user = await DirectoryRepository(session).get_user(claim.user_id)
            task = await TaskRepository(session).get_by_id(claim.task_id)
        if user is None or task is None:
            raise NotFoundError("the task or its user no longer exists")
        # The API's eligibleToDecide: approval policies, delegation and separation of duties included.
        eligibility = policies.decision_eligibility(user, task)
        decisions = (EmailAction.APPROVE, EmailAction.REJECT) if eligibility.eligible else ()
        return EmailActionPage(claim, user, task, decisions, eligibility.reason)

    async def decide(self, token: str, action: EmailAction, signed_in: User | None = None) -> Task:
        """Decide the token's task as its user; the token is used up only if the decision commits."""
        decision = action.decision
        if decision is None:
            raise EmailActionRefusedError("this link opens the task; it decides nothing", "LINK_INVALID")
        claim = self.tokens.read(token)
        _check_signed_in(claim, signed_in)
        async with self.engine.db.read() as session:
            user = await DirectoryRepository(session).get_user(claim.user_id)
        if user is None:
            raise NotFoundError("the link's user no longer exists")
        # The decision's own transition stores the link's use as an idempotency key, so the two commit
        # together: a decision that breaks off in any way (a lost connection, a cancellation) leaves the
        # link unused. The use row after it keeps the link used once that key expires.
        request = IdempotentRequest.of(user.id, f"email:{claim.token_id}", "emailAction", {"task": claim.task_id})
        if await self._used(claim) or await self.engine.idempotency.stored(Guard(request)):
            raise _used()
        task = await self.engine.idempotency.run(
            request, lambda: self.tasks.decide(user, claim.task_id, decision, None, None, None)
        )
        try:
            async with self.engine.db.transaction() as session:
                await session.execute(insert(email_action_uses).values(
                    token_id=claim.token_id, task_id=claim.task_id, user_id=claim.user_id, action=action.value,
                    used_at=self.engine.clock.now(),
                ))  # fmt: skip
        except IntegrityError:  # a second POST of the link at the same moment: the key answered it
            pass
        return task

    async def _used(self, claim: EmailActionClaim) -> bool:
        async with self.engine.db.read() as session:
            found = await session.scalar(
                select(email_action_uses.c.token_id).where(email_action_uses.c.token_id == claim.token_id)
            )
        return found is not None


def _check_signed_in(claim: EmailActionClaim, signed_in: User | None) -> None:
    if signed_in is not None and signed_in.id != claim.user_id:
        raise EmailActionRefusedError(
            "this link was sent to someone else; it acts only as the person it was sent to", "LINK_OTHER_USER"
        )


def _invalid() -> EmailActionRefusedError:
    return EmailActionRefusedError("this link is not valid: it was altered or cut short", "LINK_INVALID")


def _used() -> EmailActionRefusedError:
    return EmailActionRefusedError("this link was used already: each link decides once", "LINK_USED")
