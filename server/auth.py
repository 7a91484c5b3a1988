"""Bearer-token authentication with PyJWT: HS256 with the configured secret, or an RS256/JWKS issuer."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from sqlalchemy.ext.asyncio import AsyncSession

from engine import AuthenticationError, DirectoryRepository, Engine, UnavailableError, User, database_unavailable
from server.jwks import SigningKeys
from server.settings import Settings

log = logging.getLogger(__name__)
INVALID_TOKEN = "the bearer token is invalid"
_USER_ID = re.compile(r"[^\x00-\x1f\x7f\ud800-\udfff]{1,64}")


SERVICE_CLAIM = "service"
"""``"service": true``: the subject is a service account (an automated caller), not a person."""


def issue_token(settings: Settings, user_id: str, ttl: timedelta | None = None, *, service: bool = False) -> str:
    """A signed HS256 token for ``user_id`` (what ``stepwise token USER`` prints); ``service`` marks the
    subject as a service account (``stepwise service-account create``)."""
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": user_id,
        "iat": now,
        "exp": now + (ttl or timedelta(minutes=settings.token_ttl_minutes)),
    }
    if service:
        claims[SERVICE_CLAIM] = True
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.secret_key, algorithm="HS256")


_signing_keys: dict[tuple[str, float, float, float, int], SigningKeys] = {}


def signing_keys(settings: Settings) -> SigningKeys:
    """The process's one :class:`SigningKeys` for the configured issuer (its cache is the point)."""
    assert settings.jwks_url is not None
    key = (settings.jwks_url, settings.jwks_timeout_seconds, settings.jwks_cache_seconds,
           settings.jwks_refetch_seconds, settings.max_body_bytes)  # fmt: skip
    if key not in _signing_keys:
        _signing_keys[key] = SigningKeys(
            settings.jwks_url, timeout_seconds=settings.jwks_timeout_seconds, cache_seconds=settings.jwks_cache_seconds,
            refetch_seconds=settings.jwks_refetch_seconds, max_bytes=settings.max_body_bytes,
        )  # fmt: skip
    return _signing_keys[key]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_claims(settings: Settings, claims: dict[str, Any]) -> str | None:
    """What PyJWT lets through and Stepwise does not; None when the claims are acceptable."""
    for name in ("exp", "iat", "nbf"):
        if name in claims and not _is_number(claims[name]):
            return f"`{name}` is not a number"  # PyJWT takes "9999999999" as a time
    if settings.jwt_issuer is None and "iss" in claims:
        return "it names an issuer and none is configured"
    if settings.jwt_audience is None and "aud" in claims:
        return "it names an audience and none is configured"
    issued = claims["iat"] if "iat" in claims else datetime.now(UTC).timestamp()
    if claims["exp"] - issued > settings.max_token_lifetime_minutes * 60:
        return f"it lives longer than {settings.max_token_lifetime_minutes} minutes"
    return None


async def decode_token(settings: Settings, token: str) -> str:
    """The token's subject, or :class:`AuthenticationError` saying what is wrong with it. PyJWT's
    reason reaches the client only under ``STEPWISE_DEV``; the log line has it always."""
    subject: str = (await decode_claims(settings, token))["sub"]
    return subject


async def decode_claims(settings: Settings, token: str) -> dict[str, Any]:
    """The token's checked claims (its subject a valid user id), as :func:`decode_token`."""
    try:
        if settings.jwks_url:
            key: Any = await signing_keys(settings).key_for(token)
            algorithms = ["RS256"]
        else:
            key, algorithms = settings.secret_key, [settings.jwt_algorithm]
        claims = jwt.decode(
            token, key, algorithms=algorithms, audience=settings.jwt_audience, issuer=settings.jwt_issuer,
            options={"require": ["sub", "exp"], "verify_aud": settings.jwt_audience is not None},
        )  # fmt: skip
        reason = _check_claims(settings, claims)
    except jwt.ExpiredSignatureError as exc:
        raise AuthenticationError("the bearer token has expired; get a new one") from exc
    except jwt.PyJWTError as exc:
        reason = str(exc)
    if reason is not None:
        log.info("bearer token refused: %s", reason)
        raise AuthenticationError(f"the bearer token is invalid: {reason}" if settings.dev else INVALID_TOKEN)
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise AuthenticationError("the bearer token has no subject")
    if not _USER_ID.fullmatch(subject):  # a NUL (PostgreSQL refuses it), a lone surrogate, a novel: no user
        raise AuthenticationError("the bearer token's user is not in the directory")
    return claims


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` value; None when there is no header at all."""
    if header is None or not header.strip():
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("the Authorization header must be 'Bearer <token>'")
    return token.strip()


async def authenticate(
    engine: Engine, settings: Settings, header: str | None, session: AsyncSession | None = None
) -> User | None:
    """The user behind an Authorization header: None without one, an error for a bad one. Looked up
    in ``session`` when given (a request that goes on reading there), else in a read of its own."""
    token = bearer_token(header)
    if token is None:
        return None
    claims = await decode_claims(settings, token)
    user_id = claims["sub"]
    try:
        user = await (DirectoryRepository(session).get_user(user_id) if session is not None else engine.user(user_id))
    except Exception as exc:
        if database_unavailable(exc):
            raise UnavailableError("the database is not answering; try again shortly") from exc
        raise
    if user is None:
        raise AuthenticationError("the bearer token's user is not in the directory")
    if claims.get(SERVICE_CLAIM) is True and not user.is_service:
        # A token that says "service" for a person is not what was issued for them: the directory decides.
        raise AuthenticationError("the bearer token names a service account the directory does not have")
    return user
