"""Bearer-token authentication with PyJWT: HS256 with the configured secret, or an RS256/JWKS issuer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

import jwt
from sqlalchemy.ext.asyncio import AsyncSession

from engine import AuthenticationError, DirectoryRepository, Engine, User
from server.settings import Settings


def issue_token(settings: Settings, user_id: str, ttl: timedelta | None = None) -> str:
    """A signed HS256 token for ``user_id`` (what ``stepwise token USER`` prints)."""
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": user_id,
        "iat": now,
        "exp": now + (ttl or timedelta(minutes=settings.token_ttl_minutes)),
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.secret_key, algorithm="HS256")


@lru_cache(maxsize=4)
def _jwks_client(url: str) -> jwt.PyJWKClient:
    return jwt.PyJWKClient(url, cache_keys=True)


def decode_token(settings: Settings, token: str) -> str:
    """The token's subject, or :class:`AuthenticationError` saying what is wrong with it."""
    try:
        if settings.jwks_url:
            key = _jwks_client(settings.jwks_url).get_signing_key_from_jwt(token).key
            algorithms = ["RS256"]
        else:
            key, algorithms = settings.secret_key, [settings.jwt_algorithm]
        claims = jwt.decode(
            token, key, algorithms=algorithms, audience=settings.jwt_audience, issuer=settings.jwt_issuer,
            options={"require": ["sub", "exp"], "verify_aud": settings.jwt_audience is not None},
        )  # fmt: skip
    except jwt.ExpiredSignatureError as exc:
        raise AuthenticationError("the bearer token has expired; get a new one") from exc
    except jwt.PyJWTError as exc:
        raise AuthenticationError(f"the bearer token is invalid: {exc}") from exc
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise AuthenticationError("the bearer token has no subject")
    return subject


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
    user_id = decode_token(settings, token)
    user = await (DirectoryRepository(session).get_user(user_id) if session is not None else engine.user(user_id))
    if user is None:
        raise AuthenticationError("the bearer token's user is not in the directory")
    return user
