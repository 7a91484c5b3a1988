"""Settings from the environment: the host policy's entries and the size limit (issue 27)."""

from __future__ import annotations

import pytest

from engine import MAX_WEBHOOK_ATTEMPTS
from server.settings import Settings


def test_host_entries_and_the_size_limit_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPWISE_HTTP_ALLOW", "127.0.0.1:8000, 10.0.0.0/8,[::1]:8000")
    monkeypatch.setenv("STEPWISE_HTTP_DENY", "*.example.com")
    monkeypatch.setenv("STEPWISE_MAX_JSON_BYTES", "1024")

    settings = Settings.from_env()

    assert settings.http_allow == ("127.0.0.1:8000", "10.0.0.0/8", "[::1]:8000")
    assert settings.http_deny == ("*.example.com",)
    assert settings.max_json_bytes == 1024


def test_the_defaults_allow_no_private_address_and_limit_values_to_256_kb(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STEPWISE_HTTP_ALLOW", "STEPWISE_HTTP_DENY", "STEPWISE_MAX_JSON_BYTES"):
        monkeypatch.delenv(name, raising=False)

    settings = Settings.from_env()

    assert (settings.http_allow, settings.http_deny, settings.max_json_bytes) == ((), (), 256 * 1024)


def test_an_entry_that_is_not_a_host_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPWISE_HTTP_ALLOW", "127.0.0.1:eighty")

    with pytest.raises(ValueError, match="STEPWISE_HTTP_ALLOW: '127.0.0.1:eighty' is not a host"):
        Settings.from_env()


def test_a_size_limit_below_a_kilobyte_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPWISE_MAX_JSON_BYTES", "10")

    with pytest.raises(ValueError, match="at least 1024"):
        Settings.from_env()


@pytest.mark.parametrize("attempts", ["0", str(MAX_WEBHOOK_ATTEMPTS + 1)])
def test_webhook_attempts_out_of_bounds_are_refused(monkeypatch: pytest.MonkeyPatch, attempts: str) -> None:
    monkeypatch.setenv("STEPWISE_WEBHOOK_MAX_ATTEMPTS", attempts)

    with pytest.raises(ValueError, match=f"STEPWISE_WEBHOOK_MAX_ATTEMPTS must be 1 to {MAX_WEBHOOK_ATTEMPTS}"):
        Settings.from_env()
