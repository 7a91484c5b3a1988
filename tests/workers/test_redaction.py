"""Secrets out of recorded attempts: :func:`redact` and :func:`redact_headers`."""

from __future__ import annotations

from engine.workers.redaction import redact, redact_headers


def test_every_occurrence_of_every_secret_anywhere_is_masked() -> None:
    secrets = {"apiToken": "tok-123", "password": "hunter2", "empty": ""}
    value = {
        "url": "https://api.example.com/?token=tok-123&again=tok-123",
        "headers": {"X-Note": "password hunter2"},
        "json": [{"deep": ["tok-123", 7, None, True]}, "no secret here"],
        "tok-123": "as a key too",
    }

    assert redact(value, secrets) == {
        "url": "https://api.example.com/?token=***&again=***",
        "headers": {"X-Note": "password ***"},
        "json": [{"deep": ["***", 7, None, True]}, "no secret here"],
        "***": "as a key too",
    }


def test_a_secret_containing_another_is_masked_whole() -> None:
    assert redact("key=abc and abcdef", {"short": "abc", "long": "abcdef"}) == "key=*** and ***"


def test_url_encoded_secrets_are_masked() -> None:
    assert redact("https://x/?q=a%20b%2Fc&r=a+b%2Fc", {"s": "a b/c"}) == "https://x/?q=***&r=***"


def test_nothing_to_do_without_secrets() -> None:
    value = {"a": ["b"]}
    assert redact(value, {}) is value
    assert redact(value, {"blank": ""}) is value


def test_credential_headers_are_masked_whatever_their_value() -> None:
    headers = {
        "Authorization": "Bearer abc.def",
        "Proxy-Authorization": "Basic dXNlcjpwYXNz",
        "Cookie": "session=1",
        "Set-Cookie": "session=2; HttpOnly",
        "X-Api-Key": "k",
        "X-Auth-Token": "t",
        "Content-Type": "application/json",
        "Idempotency-Key": "task-1",
    }

    assert redact_headers(headers) == {
        "Authorization": "Bearer ***",
        "Proxy-Authorization": "Basic ***",
        "Cookie": "***",
        "Set-Cookie": "***",
        "X-Api-Key": "***",
        "X-Auth-Token": "***",
        "Content-Type": "application/json",
        "Idempotency-Key": "task-1",
    }
