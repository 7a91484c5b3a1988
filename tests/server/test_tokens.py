"""What a bearer token must be beyond a valid signature.

Before: a string ``exp`` ("9999999999", which PyJWT reads as a time), a token living for decades, an
``iss`` or ``aud`` no one configured were all accepted; a NUL in ``sub`` was a 500 on PostgreSQL; and
PyJWT's reason for a refusal was shown to anyone.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import httpx
import jwt
import pytest

from server.auth import decode_token, issue_token
from server.settings import Settings

ME = {"query": "{ me { id } }"}


def signed(settings: Settings, **claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "alice", "iat": now, "exp": now + 600, **claims}, settings.secret_key, algorithm="HS256")


def refusals(settings: Settings) -> dict[str, str]:
    now = int(time.time())
    day = 24 * 3600
    return {
        "a string exp": signed(settings, exp=str(now + 600)),
        "a string iat": signed(settings, iat=str(now)),
        "a lifetime over the maximum": signed(settings, exp=now + day + 60),
        "no iat and an exp beyond the maximum": jwt.encode(
            {"sub": "alice", "exp": now + 10 * 365 * day}, settings.secret_key, algorithm="HS256"
        ),  # fmt: skip
        "an issuer when none is configured": signed(settings, iss="https://elsewhere.example"),
        "an audience when none is configured": signed(settings, aud="someone-else"),
        "no exp": jwt.encode({"sub": "alice"}, settings.secret_key, algorithm="HS256"),
    }


async def test_tokens_pyjwt_accepts_and_stepwise_does_not(client: httpx.AsyncClient, settings: Settings) -> None:
    for case, token in refusals(settings).items():
        response = await client.post("/graphql", json=ME, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, case
        [error] = response.json()["errors"]
        assert error["extensions"]["code"] == "UNAUTHENTICATED", case
        assert error["message"] == "the bearer token is invalid", case  # the reason is not the caller's to read
    good = signed(settings)
    response = await client.post("/graphql", json=ME, headers={"Authorization": f"Bearer {good}"})
    assert response.json() == {"data": {"me": {"id": "alice"}}}


async def test_the_reason_is_shown_in_development(settings: Settings) -> None:
    dev = replace(settings, dev=True)
    reasons = {
        "a string exp": "`exp` is not a number",
        "a lifetime over the maximum": "lives longer than 1440 minutes",
        "an issuer when none is configured": "names an issuer",
        "an audience when none is configured": "names an audience",
        "no exp": 'Token is missing the "exp" claim',
    }
    tokens = refusals(dev)
    for case, words in reasons.items():
        with pytest.raises(Exception, match="the bearer token is invalid: ") as refused:
            await decode_token(dev, tokens[case])
        assert words in str(refused.value), case


@pytest.mark.parametrize("subject", ["al\x00ice", "\ud800", "x" * 65, "tab\there"])
async def test_a_subject_no_user_could_have_is_unauthenticated(
    client: httpx.AsyncClient, settings: Settings, subject: str
) -> None:
    """A NUL in ``sub`` reached PostgreSQL, which refuses it: a 500. Now it never reaches a query."""
    token = jwt.encode({"sub": subject, "exp": int(time.time()) + 60}, settings.secret_key, algorithm="HS256")
    response = await client.post("/graphql", json=ME, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_issued_tokens_fit_the_lifetime_the_server_accepts(settings: Settings) -> None:
    claims = jwt.decode(issue_token(settings, "alice"), settings.secret_key, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] <= settings.max_token_lifetime_minutes * 60
