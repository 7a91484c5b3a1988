"""An issuer's signing keys (``STEPWISE_JWKS_URL``), fetched without blocking the event loop.

PyJWT's ``PyJWKClient`` fetches with ``urllib`` inside the request's coroutine: one token naming an
unknown ``kid`` stalled every request of the process for as long as the issuer took.
Here the key set is fetched with httpx's async client, with a short timeout
(``STEPWISE_JWKS_TIMEOUT_SECONDS``) and at most ``STEPWISE_MAX_BODY_BYTES`` of it read, and kept:

- it is fetched again when ``STEPWISE_JWKS_CACHE_SECONDS`` old, or for a ``kid`` it does not hold
  (the issuer rotated its keys) — but never more often than once per
  ``STEPWISE_JWKS_REFETCH_SECONDS``, so a flood of tokens with made-up ``kid``s costs one fetch, not
  one each; requests arriving while a fetch runs wait for that one fetch;
- a failed fetch keeps the keys already held; with none held, the request is ``UNAVAILABLE`` (503).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt

from engine import UnavailableError

log = logging.getLogger(__name__)


class SigningKeys:
    def __init__(
        self, url: str, *, timeout_seconds: float, cache_seconds: float, refetch_seconds: float, max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.url = url
        self.timeout_seconds = timeout_seconds
        self.cache_seconds = cache_seconds
        self.refetch_seconds = refetch_seconds
        self.max_bytes = max_bytes
        self.clock = clock
        self.fetches = 0
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # when the last fetch was tried, whatever came of it
        self._fetching: asyncio.Task[None] | None = None

    async def key_for(self, token: str) -> Any:
        """The key that verifies ``token``'s signature (by its header's ``kid``); PyJWT's
        ``InvalidTokenError`` for a token no key of the issuer's can verify."""
        kid = jwt.get_unverified_header(token).get("kid")
        if not isinstance(kid, str | None):
            raise jwt.InvalidTokenError("its `kid` is not a string")
        if self._fetching is not None or self._age() >= self.cache_seconds:
            await self._refresh()  # joins a fetch under way rather than judge by the keys held before it
        found = self._find(kid)
        if found is None and self._age() >= self.refetch_seconds:
            await self._refresh()  # the issuer may have rotated its keys since
            found = self._find(kid)
        if found is None:
            if not self._keys:
                raise UnavailableError("the token issuer's signing keys could not be fetched; try again later")
            raise jwt.InvalidTokenError("it is not signed by one of the issuer's keys")
        return found.key

    def _age(self) -> float:
        return float("inf") if self._fetched_at is None else self.clock() - self._fetched_at

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:  # a token without a kid: the issuer's only key, if it has one
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        if self._fetching is None:
            self._fetched_at = self.clock()
            self._fetching = asyncio.create_task(self._fetch())
            self._fetching.add_done_callback(lambda _: setattr(self, "_fetching", None))
        await asyncio.shield(self._fetching)

    async def _fetch(self) -> None:
        self.fetches += 1
        try:
            async with asyncio.timeout(self.timeout_seconds):  # in all: a trickling issuer is slow too
                document = await self._download()
            keys = jwt.PyJWKSet.from_dict(document).keys
        except (httpx.HTTPError, TimeoutError, ValueError, jwt.PyJWTError) as exc:
            log.warning("the JWKS at %s could not be fetched (%s); keeping %d known keys",
                        self.url, type(exc).__name__, len(self._keys))  # fmt: skip
            return
        self._keys = {key.key_id or "": key for key in keys}

    async def _download(self) -> dict[str, Any]:
        async with (
            httpx.AsyncClient(timeout=self.timeout_seconds, follow_redirects=False, trust_env=False) as http,
            http.stream("GET", self.url, headers={"Accept": "application/json"}) as response,
        ):
            response.raise_for_status()
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self.max_bytes:
                    raise ValueError(f"the JWKS is larger than {self.max_bytes} bytes")
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("the JWKS is not a JSON object")
        return document
