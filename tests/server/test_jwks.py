"""An issuer's keys (STEPWISE_JWKS_URL) are fetched off the event loop, briefly, and rarely.

Before, PyJWT's synchronous ``PyJWKClient`` ran inside the request: one token with an unknown ``kid``
stalled every request for as long as the issuer took, and each unknown ``kid`` fetched again. The
issuer here is a real HTTP server on loopback that holds its answer until the test lets it go.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from engine.clock import ManualClock
from server.app import create_app
from server.demo import load_demo
from server.settings import Settings
from tests.server.live import TIMEOUT, serving
from tests.support import free_port

ME = {"query": "{ me { id } }"}


@dataclass
class Issuer:
    """A JWKS endpoint: counts its fetches, and answers each only once ``release`` is set."""

    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537,
                                                                                    key_size=2048))  # fmt: skip
    kid: str = "key-1"
    fetches: int = 0
    asked: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> Starlette:
        async def jwks(request: Request) -> JSONResponse:
            self.fetches += 1
            self.asked.set()
            await self.release.wait()
            public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
            return JSONResponse({"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]})

        return Starlette(routes=[Route("/jwks.json", jwks)])

    def token(self, user: str, kid: str | None = None, key: rsa.RSAPrivateKey | None = None) -> str:
        now = int(time.time())
        return jwt.encode({"sub": user, "iat": now, "exp": now + 600}, key or self.key, algorithm="RS256",
                          headers={"kid": kid or self.kid})  # fmt: skip


@pytest.fixture
async def issuer() -> AsyncIterator[tuple[Issuer, str]]:
    found = Issuer()
    async with serving(found.app()) as url:
        yield found, url.replace("ws://", "http://").replace("/graphql", "/jwks.json")


@pytest.fixture
async def http_for(settings: Settings, clock: ManualClock) -> Any:
    """``async with http_for(jwks_url) as http``: an httpx client of a real server on that issuer."""

    def make(jwks_url: str, **more: Any) -> Any:
        @asynccontextmanager
        async def running() -> AsyncIterator[httpx.AsyncClient]:
            app = create_app(replace(settings, jwks_url=jwks_url, **more), clock=clock)
            async with app.router.lifespan_context(app):
                await load_demo(app.state.engine)
                async with serving(app) as url:
                    base = url.replace("ws://", "http://").removesuffix("/graphql")
                    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
                        yield http

        return running()

    return make


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_slow_issuer_stalls_no_other_request(issuer: tuple[Issuer, str], http_for: Any) -> None:
    keys, url = issuer
    async with http_for(url) as http:
        waiting = asyncio.create_task(http.post("/graphql", json=ME, headers=bearer(keys.token("alice"))))
        await asyncio.wait_for(keys.asked.wait(), TIMEOUT)
        # the issuer has not answered: everything else goes on meanwhile
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.post("/graphql", json={"query": "{ __typename }"})).json() == {
            "data": {"__typename": "Query"}
        }
        assert not waiting.done()
        keys.release.set()
        assert (await waiting).json() == {"data": {"me": {"id": "alice"}}}


async def test_unknown_kids_cannot_make_it_fetch_again_and_again(issuer: tuple[Issuer, str], http_for: Any) -> None:
    keys, url = issuer
    keys.release.set()
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    async with http_for(url) as http:
        answers = await asyncio.gather(*(
            http.post("/graphql", json=ME, headers=bearer(keys.token("alice", kid=uuid.uuid4().hex, key=stranger)))
            for _ in range(40)
        ))  # fmt: skip
        for answer in answers:
            error = answer.json()["errors"][0]
            assert error == {"message": "the bearer token is invalid", "locations": error["locations"],
                             "path": ["me"], "extensions": {"code": "UNAUTHENTICATED"}}  # fmt: skip
        assert keys.fetches <= 2  # the first fetch, and at most one for a kid it did not hold
        known = await http.post("/graphql", json=ME, headers=bearer(keys.token("bob")))
        assert known.json() == {"data": {"me": {"id": "bob"}}}
        assert keys.fetches <= 2


async def test_an_issuer_that_cannot_be_reached_is_503(http_for: Any) -> None:
    async with http_for(f"http://127.0.0.1:{free_port()}/jwks.json", jwks_timeout_seconds=0.5) as http:
        token = Issuer().token("alice")
        for _ in range(3):
            answer = await http.post("/graphql", json=ME, headers=bearer(token))
            assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
            assert answer.json()["errors"][0]["extensions"]["code"] == "UNAVAILABLE"
        download = await http.get(f"/files/documents/{uuid.uuid4()}", headers=bearer(token))
        assert download.status_code == 503
