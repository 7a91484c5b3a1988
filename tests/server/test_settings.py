"""Settings from the environment: each read by its type, a bad value refused with its variable's name."""

from __future__ import annotations

import pytest

from engine import MAX_WEBHOOK_ATTEMPTS
from server.settings import SettingError, Settings, env_name


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

    with pytest.raises(SettingError, match="STEPWISE_HTTP_ALLOW must be .*'127.0.0.1:eighty' is not a host"):
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


def test_every_setting_is_read_from_its_variable_by_its_type() -> None:
    environ = {
        "STEPWISE_MAX_ALIASES": "7", "STEPWISE_BODY_TIMEOUT_SECONDS": "2.5", "STEPWISE_DEV": "on",
        "STEPWISE_JWKS_URL": "https://issuer.test/jwks", "STEPWISE_FILES_DIR": "/srv/files",
        "STEPWISE_SECRETS": '{"token": 42}', "STEPWISE_LOG_LEVEL": "debug", "STEPWISE_METRICS": "0",
        "STEPWISE_JWT_ISSUER": "  ",  # blank is unset
    }  # fmt: skip

    settings = Settings.from_env(environ)

    assert (settings.max_aliases, settings.body_timeout_seconds, settings.dev, settings.metrics) == (
        7,
        2.5,
        True,
        False,
    )
    assert settings.jwks_url == "https://issuer.test/jwks" and str(settings.files_dir) == "/srv/files"
    assert settings.secrets == {"token": "42"} and settings.log_level == "DEBUG" and settings.jwt_issuer is None
    assert env_name("operations_per_user") == "STEPWISE_OPERATIONS_PER_USER"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("STEPWISE_MAX_ALIASES", "lots", "STEPWISE_MAX_ALIASES must be a whole number, e.g. 10, not 'lots'"),
        ("STEPWISE_REQUEST_TIMEOUT_SECONDS", "30s", "STEPWISE_REQUEST_TIMEOUT_SECONDS must be a number, e.g. 2.5"),
        ("STEPWISE_TRACE_SAMPLE_RATIO", "nan", "STEPWISE_TRACE_SAMPLE_RATIO must be a number"),
        ("STEPWISE_DEV", "ture", "STEPWISE_DEV must be true or false"),
        ("STEPWISE_LOG_FORMAT", "xml", "STEPWISE_LOG_FORMAT must be text or json, not 'xml'"),
        ("STEPWISE_TEMPLATE_SETTINGS", "[1]", "STEPWISE_TEMPLATE_SETTINGS must be a JSON object"),
    ],
)
def test_a_bad_value_names_its_variable_and_the_form_expected(name: str, value: str, expected: str) -> None:
    with pytest.raises(SettingError) as refused:
        Settings.from_env({name: value})

    assert str(refused.value).startswith(expected)


def test_a_bad_secret_is_refused_without_showing_it() -> None:
    with pytest.raises(SettingError) as refused:
        Settings.from_env({"STEPWISE_SECRETS": '["hunter2"]'})

    assert str(refused.value) == "STEPWISE_SECRETS must be a JSON object of names and strings"


def test_one_user_may_not_hold_the_database_pool() -> None:
    with pytest.raises(SettingError, match="STEPWISE_OPERATIONS_PER_USER must be at most half"):
        Settings.from_env({"STEPWISE_DB_POOL_SIZE": "6", "STEPWISE_OPERATIONS_PER_USER": "4"})
