"""``Settings.from_env``: every ``OSTIARY_*`` variable, validated, and every problem reported by name at once."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from server.settings import Settings, SettingsError, parse_duration

SECRET = "k" * 32 + "-long-enough-to-wrap-keys"


def problems(environ: dict[str, str], **overrides: Any) -> dict[str, str]:
    """The ``{variable: message}`` that ``from_env`` refuses ``environ`` with."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(environ, **overrides)
    return dict(caught.value.problems)


# Defaults: the embedded mode.


def test_no_variables_give_the_embedded_defaults() -> None:
    settings = Settings.from_env({})

    assert settings == Settings()
    assert settings.database_url == "sqlite+aiosqlite:///ostiary.db"
    assert settings.issuer == "http://127.0.0.1:8000"
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.workers == 1
    assert settings.keys_secret is None
    assert settings.keys_dir == Path("keys")
    assert not settings.shared_database
    assert not settings.secure_cookies


def test_empty_variables_mean_the_default() -> None:
    environ = {"OSTIARY_PORT": "", "OSTIARY_ISSUER": "", "OSTIARY_KEYS_SECRET": "", "OSTIARY_KEYS_SECRET_FILE": ""}

    assert Settings.from_env(environ) == Settings()


def test_only_the_given_mapping_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSTIARY_PORT", "9999")
    monkeypatch.setenv("OSTIARY_ISSUER", "https://from-the-process.example")

    settings = Settings.from_env({})

    assert settings.port == 8000
    assert settings.issuer == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("environ", "overrides"),
    [({"OSTIARY_PORT": "9000"}, {}), ({}, {"port": "9000"}), ({"OSTIARY_PORT": "8001"}, {"port": "9000"})],
    ids=["variable", "flag", "flag-over-variable"],
)
def test_an_unset_issuer_follows_the_listen_port(environ: dict[str, str], overrides: dict[str, str]) -> None:
    settings = Settings.from_env(environ, **overrides)

    assert settings.port == 9000
    assert settings.issuer == "http://127.0.0.1:9000"
    assert settings.endpoint("/token") == "http://127.0.0.1:9000/token"


def test_a_set_issuer_stays_whatever_the_port() -> None:
    settings = Settings.from_env({"OSTIARY_ISSUER": "https://id.example.com", "OSTIARY_SMTP_HOST": "mx"}, port="9000")

    assert settings.port == 9000
    assert settings.issuer == "https://id.example.com"


def test_the_shutdown_grace_is_a_duration() -> None:
    assert Settings.from_env({}).shutdown_grace_seconds == 20
    assert Settings.from_env({"OSTIARY_SHUTDOWN_GRACE_SECONDS": "1m"}).shutdown_grace_seconds == 60
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"OSTIARY_SHUTDOWN_GRACE_SECONDS": "soon"})
    assert "OSTIARY_SHUTDOWN_GRACE_SECONDS" in raised.value.render()


def test_unrelated_variables_are_ignored() -> None:
    assert Settings.from_env({"OSTIARY_UNKNOWN": "x", "PORT": "not a number"}) == Settings()


# Every variable: one valid value, read into its field.


@pytest.mark.parametrize(
    ("variable", "raw", "field", "expected"),
    [
        ("OSTIARY_ISSUER", "https://id.example.com", "issuer", "https://id.example.com"),
        ("OSTIARY_DATABASE_URL", "postgresql://u:p@db/ostiary", "database_url", "postgresql+asyncpg://u:p@db/ostiary"),
        ("OSTIARY_KEYS_SECRET", SECRET, "keys_secret", SECRET),
        ("OSTIARY_KEYS_DIR", "/var/lib/ostiary/keys", "keys_dir", Path("/var/lib/ostiary/keys")),
        ("OSTIARY_HOST", "0.0.0.0", "host", "0.0.0.0"),
        ("OSTIARY_HOST", "::", "host", "::"),
        ("OSTIARY_HOST", "auth.internal", "host", "auth.internal"),
        ("OSTIARY_PORT", "9000", "port", 9000),
        ("OSTIARY_PORT", " 65535 ", "port", 65535),
        ("OSTIARY_WORKERS", "4", "workers", 4),
        ("OSTIARY_WORKERS", "64", "workers", 64),
        ("OSTIARY_SIGNING_THREADS", "auto", "signing_threads", -1),
        ("OSTIARY_SIGNING_THREADS", "0", "signing_threads", 0),
        ("OSTIARY_SIGNING_THREADS", "3", "signing_threads", 3),
        ("OSTIARY_ACCESS_TOKEN_TTL", "15m", "access_token_ttl", 900),
        ("OSTIARY_ACCESS_TOKEN_TTL", "60", "access_token_ttl", 60),
        ("OSTIARY_ACCESS_TOKEN_TTL", "1d", "access_token_ttl", 86400),
        ("OSTIARY_JWKS_MAX_AGE", "1h", "jwks_max_age", 3600),
        ("OSTIARY_JWKS_MAX_AGE", "0", "jwks_max_age", 0),
        ("OSTIARY_CLIENT_CACHE_TTL", "0", "client_cache_ttl", 0),
        ("OSTIARY_CLIENT_CACHE_TTL", "5m", "client_cache_ttl", 300),
        ("OSTIARY_MAX_BODY_BYTES", "1048576", "max_body_bytes", 1048576),
        ("OSTIARY_MAX_BODY_BYTES", "1024", "max_body_bytes", 1024),
        ("OSTIARY_DB_POOL_SIZE", "20", "db_pool_size", 20),
        ("OSTIARY_DB_POOL_TIMEOUT", "30s", "db_pool_timeout", 30),
        ("OSTIARY_DB_POOL_TIMEOUT", "2m", "db_pool_timeout", 120),
        ("OSTIARY_RSA_KEY_BITS", "3072", "rsa_key_bits", 3072),
        ("OSTIARY_RSA_KEY_BITS", "4096", "rsa_key_bits", 4096),
        ("OSTIARY_LOG_LEVEL", "debug", "log_level", "DEBUG"),
        ("OSTIARY_LOG_LEVEL", "Warning", "log_level", "WARNING"),
        ("OSTIARY_ACCESS_LOG", "false", "access_log", False),
        ("OSTIARY_ACCESS_LOG", "off", "access_log", False),
        ("OSTIARY_ACCESS_LOG", "0", "access_log", False),
        ("OSTIARY_ACCESS_LOG", "YES", "access_log", True),
        ("OSTIARY_ACCESS_LOG", "on", "access_log", True),
        ("OSTIARY_MFA", "when-requested", "mfa", "when-requested"),
        ("OSTIARY_MFA", "always-if-enrolled", "mfa", "always-if-enrolled"),
        ("OSTIARY_TOTP_ISSUER", " Example Corp ", "totp_issuer", "Example Corp"),
        ("OSTIARY_LOCKOUT_THRESHOLD", "0", "lockout_threshold", 0),
        ("OSTIARY_LOCKOUT_THRESHOLD", "10", "lockout_threshold", 10),
        ("OSTIARY_LOCKOUT_WINDOW_SECONDS", "15m", "lockout_window_seconds", 900),
        ("OSTIARY_LOCKOUT_WINDOW_SECONDS", "3600", "lockout_window_seconds", 3600),
        ("OSTIARY_RATE_LIMIT_LOGIN_PER_MINUTE", "0", "rate_limit_login", 0),
        ("OSTIARY_RATE_LIMIT_TOKEN_PER_MINUTE", "6000", "rate_limit_token", 6000),
        ("OSTIARY_REDIS_URL", "redis://127.0.0.1:6379/0", "redis_url", "redis://127.0.0.1:6379/0"),
        ("OSTIARY_HIBP_URL", "off", "hibp_url", ""),
        ("OSTIARY_HIBP_URL", "http://hibp.internal:8080/", "hibp_url", "http://hibp.internal:8080"),
        ("OSTIARY_HIBP_TIMEOUT", "5", "hibp_timeout", 5),
        ("OSTIARY_PASSWORD_RESET_TTL", "1h", "password_reset_ttl", 3600),
        ("OSTIARY_SMTP_HOST", "mail.example.com", "smtp_host", "mail.example.com"),
        ("OSTIARY_SMTP_PORT", "465", "smtp_port", 465),
        ("OSTIARY_SMTP_SECURITY", "tls", "smtp_security", "tls"),
        ("OSTIARY_SMTP_USER", "ostiary", "smtp_user", "ostiary"),
        ("OSTIARY_MAIL_FROM", "Example <no-reply@example.com>", "mail_from", "Example <no-reply@example.com>"),
        ("OSTIARY_MAIL_POLL_INTERVAL", "0", "mail_poll_interval", 0),
        ("OSTIARY_MAIL_BACKEND", "log", "mail_backend", "log"),
        ("OSTIARY_TRUSTED_PROXIES", "10.0.0.0/8", "trusted_proxies", (ipaddress.ip_network("10.0.0.0/8"),)),
        (
            "OSTIARY_TRUSTED_PROXIES",
            " 192.0.2.7, ::1 ,",
            "trusted_proxies",
            (ipaddress.ip_network("192.0.2.7/32"), ipaddress.ip_network("::1/128")),
        ),
        ("OSTIARY_BODY_TIMEOUT_SECONDS", "5", "body_timeout", 5),
        ("OSTIARY_REAUTH_SECONDS", "10m", "reauth_seconds", 600),
        ("OSTIARY_PENDING_INTERACTIONS_PER_ADDRESS", "20", "pending_interactions_per_address", 20),
    ],
)
def test_a_valid_variable_sets_its_field(variable: str, raw: str, field: str, expected: object) -> None:
    # an https issuer needs a mail server (test_an_https_issuer_without_smtp_refuses_to_start)
    mail = {"OSTIARY_SMTP_HOST": "mail.example.com"} if variable == "OSTIARY_ISSUER" else {}
    settings = Settings.from_env({variable: raw, **mail})

    assert getattr(settings, field) == expected


# Every variable: an invalid value, reported by the variable's name.


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("OSTIARY_ISSUER", "id.example.com"),
        ("OSTIARY_ISSUER", "http://id.example.com"),
        ("OSTIARY_DATABASE_URL", "mysql://u:p@db/ostiary"),
        ("OSTIARY_KEYS_SECRET", "too-short"),
        ("OSTIARY_HOST", "bad host!"),
        ("OSTIARY_HOST", "http://0.0.0.0"),
        ("OSTIARY_PORT", "http"),
        ("OSTIARY_PORT", "0"),
        ("OSTIARY_PORT", "65536"),
        ("OSTIARY_WORKERS", "0"),
        ("OSTIARY_WORKERS", "65"),
        ("OSTIARY_WORKERS", "four"),
        ("OSTIARY_SIGNING_THREADS", "-1"),
        ("OSTIARY_SIGNING_THREADS", "many"),
        ("OSTIARY_ACCESS_TOKEN_TTL", "4"),
        ("OSTIARY_ACCESS_TOKEN_TTL", "2d"),
        ("OSTIARY_ACCESS_TOKEN_TTL", "1.5h"),
        ("OSTIARY_JWKS_MAX_AGE", "2d"),
        ("OSTIARY_JWKS_MAX_AGE", "-1"),
        ("OSTIARY_CLIENT_CACHE_TTL", "6m"),
        ("OSTIARY_MAX_BODY_BYTES", "1023"),
        ("OSTIARY_MAX_BODY_BYTES", "64k"),
        ("OSTIARY_MAX_BODY_BYTES", str(16 * 1024 * 1024 + 1)),
        ("OSTIARY_DB_POOL_SIZE", "0"),
        ("OSTIARY_DB_POOL_SIZE", "101"),
        ("OSTIARY_DB_POOL_TIMEOUT", "0"),
        ("OSTIARY_DB_POOL_TIMEOUT", "3m"),
        ("OSTIARY_RSA_KEY_BITS", "1024"),
        ("OSTIARY_RSA_KEY_BITS", "2048 bits"),
        ("OSTIARY_LOG_LEVEL", "verbose"),
        ("OSTIARY_ACCESS_LOG", "maybe"),
        ("OSTIARY_MFA", "always"),
        ("OSTIARY_TOTP_ISSUER", "Example: Corp"),
        ("OSTIARY_TOTP_ISSUER", "x" * 65),
        ("OSTIARY_TOTP_ISSUER", "tab\there"),
        ("OSTIARY_LOCKOUT_THRESHOLD", "-1"),
        ("OSTIARY_LOCKOUT_THRESHOLD", "1001"),
        ("OSTIARY_LOCKOUT_WINDOW_SECONDS", "5"),
        ("OSTIARY_LOCKOUT_WINDOW_SECONDS", "2d"),
        ("OSTIARY_RATE_LIMIT_LOGIN_PER_MINUTE", "-1"),
        ("OSTIARY_REDIS_URL", "http://127.0.0.1:6379"),
        ("OSTIARY_HIBP_URL", "ftp://mirror"),
        ("OSTIARY_HIBP_TIMEOUT", "60"),
        ("OSTIARY_PASSWORD_RESET_TTL", "1m"),
        ("OSTIARY_SMTP_HOST", "mail server"),
        ("OSTIARY_SMTP_SECURITY", "ssl"),
        ("OSTIARY_MAIL_FROM", "not an address"),
        ("OSTIARY_MAIL_FROM", "a@example.com\r\nBcc: x@example.com"),
        ("OSTIARY_ADMIN_EMAIL", "admin"),
        ("OSTIARY_MAIL_BACKEND", "sendmail"),
        ("OSTIARY_TRUSTED_PROXIES", "10.0.0.0/33"),
        ("OSTIARY_TRUSTED_PROXIES", "10.0.0.1, proxy.internal"),
        ("OSTIARY_BODY_TIMEOUT_SECONDS", "0"),
        ("OSTIARY_REAUTH_SECONDS", "10"),
        ("OSTIARY_PENDING_INTERACTIONS_PER_ADDRESS", "0"),
    ],
)
def test_an_invalid_variable_is_reported_by_its_name(variable: str, raw: str) -> None:
    assert list(problems({variable: raw})) == [variable]


def test_every_invalid_variable_is_reported_in_one_error() -> None:
    environ = {
        "OSTIARY_PORT": "http",
        "OSTIARY_ISSUER": "http://id.example.com",
        "OSTIARY_LOG_LEVEL": "verbose",
        "OSTIARY_WORKERS": "2",
    }

    with pytest.raises(SettingsError) as caught:
        Settings.from_env(environ)

    named = [name for name, _ in caught.value.problems]
    assert sorted(named) == ["OSTIARY_ISSUER", "OSTIARY_LOG_LEVEL", "OSTIARY_PORT"]
    rendered = str(caught.value)
    for name in named:
        assert f"  {name}: " in rendered


def test_a_problem_message_quotes_the_refused_value() -> None:
    assert "'http'" in problems({"OSTIARY_PORT": "http"})["OSTIARY_PORT"]


# Database URL.


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgresql://u:p@db:5432/ostiary", "postgresql+asyncpg://u:p@db:5432/ostiary"),
        ("postgres://u:p@db/ostiary", "postgresql+asyncpg://u:p@db/ostiary"),
        ("postgresql+asyncpg://u:p@db/ostiary", "postgresql+asyncpg://u:p@db/ostiary"),
        ("sqlite:///data/ostiary.db", "sqlite+aiosqlite:///data/ostiary.db"),
        ("sqlite:////var/lib/ostiary.db", "sqlite+aiosqlite:////var/lib/ostiary.db"),
        ("sqlite+aiosqlite:///ostiary.db", "sqlite+aiosqlite:///ostiary.db"),
        ("  sqlite:///ostiary.db  ", "sqlite+aiosqlite:///ostiary.db"),
    ],
)
def test_database_urls_are_normalised_to_the_async_drivers(raw: str, expected: str) -> None:
    assert Settings.from_env({"OSTIARY_DATABASE_URL": raw}).database_url == expected


def test_a_postgresql_url_selects_postgresql() -> None:
    assert Settings.from_env({"OSTIARY_DATABASE_URL": "postgres://db/ostiary"}).shared_database


@pytest.mark.parametrize(
    "raw",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite+aiosqlite://",
        "sqlite+aiosqlite:///:memory:",
        # Still in memory: SQLAlchemy reads the database name before the query string.
        "sqlite:///:memory:?cache=shared",
    ],
)
def test_in_memory_sqlite_is_refused(raw: str) -> None:
    assert "in-memory" in problems({"OSTIARY_DATABASE_URL": raw})["OSTIARY_DATABASE_URL"]


@pytest.mark.parametrize(
    "raw",
    ["mysql://u:p@db/ostiary", "postgresql+psycopg://db/ostiary", "ostiary.db", "POSTGRES://db/ostiary"],
)
def test_unknown_database_schemes_are_refused(raw: str) -> None:
    assert list(problems({"OSTIARY_DATABASE_URL": raw})) == ["OSTIARY_DATABASE_URL"]


# Issuer (OpenID Connect Discovery §2, RFC 8414 §2).


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://id.example.com", "https://id.example.com"),
        ("https://id.example.com/", "https://id.example.com"),
        ("https://id.example.com/tenant/", "https://id.example.com/tenant"),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
        ("http://localhost:8000/", "http://localhost:8000"),
        ("http://[::1]:8000", "http://[::1]:8000"),
    ],
)
def test_an_issuer_is_https_or_loopback_without_a_trailing_slash(raw: str, expected: str) -> None:
    settings = Settings.from_env({"OSTIARY_ISSUER": raw, "OSTIARY_MAIL_BACKEND": "log"})

    assert settings.issuer == expected
    assert settings.endpoint("/token") == expected + "/token"


def test_an_https_issuer_turns_on_secure_cookies() -> None:
    assert Settings.from_env({"OSTIARY_ISSUER": "https://id.example.com", "OSTIARY_SMTP_HOST": "mail"}).secure_cookies


# Mail: reset links in the log only on purpose.


def test_an_https_issuer_without_smtp_refuses_to_start() -> None:
    found = problems({"OSTIARY_ISSUER": "https://id.example.com"})

    assert list(found) == ["OSTIARY_SMTP_HOST"]
    assert "OSTIARY_MAIL_BACKEND=log" in found["OSTIARY_SMTP_HOST"]


def test_an_https_issuer_may_write_mail_to_the_log_when_told_to() -> None:
    settings = Settings.from_env({"OSTIARY_ISSUER": "https://id.example.com", "OSTIARY_MAIL_BACKEND": "log"})

    assert settings.mail_to_log


def test_a_loopback_issuer_without_smtp_writes_mail_to_the_log() -> None:
    assert Settings.from_env({}).mail_to_log
    assert not Settings.from_env({"OSTIARY_SMTP_HOST": "mail.example.com"}).mail_to_log


def test_the_smtp_backend_needs_a_host() -> None:
    assert list(problems({"OSTIARY_MAIL_BACKEND": "smtp"})) == ["OSTIARY_SMTP_HOST"]


def test_the_log_backend_wins_over_an_smtp_host() -> None:
    settings = Settings.from_env({"OSTIARY_SMTP_HOST": "mail.example.com", "OSTIARY_MAIL_BACKEND": "log"})

    assert settings.mail_to_log


@pytest.mark.parametrize(
    "raw",
    [
        "http://id.example.com",
        "http://localhost.example.com",
        "http://127.0.0.1.example.com",
        "http://10.0.0.5:8000",
    ],
)
def test_an_http_issuer_is_refused_unless_loopback(raw: str) -> None:
    assert "https" in problems({"OSTIARY_ISSUER": raw})["OSTIARY_ISSUER"]


@pytest.mark.parametrize(
    "raw",
    [
        "https://id.example.com/?tenant=a",
        "https://id.example.com/#top",
        # An empty query or fragment is still a component (RFC 3986 §3), and would
        # break every endpoint URL built from the issuer.
        "https://id.example.com?",
        "https://id.example.com#",
    ],
)
def test_an_issuer_with_a_query_or_fragment_is_refused(raw: str) -> None:
    assert list(problems({"OSTIARY_ISSUER": raw})) == ["OSTIARY_ISSUER"]


@pytest.mark.parametrize("raw", ["id.example.com", "ftp://id.example.com", "https://", "/issuer"])
def test_an_issuer_must_be_an_absolute_http_url(raw: str) -> None:
    assert list(problems({"OSTIARY_ISSUER": raw})) == ["OSTIARY_ISSUER"]


# The key-encryption secret, from the variable or from a file.


def test_the_keys_secret_comes_from_the_variable() -> None:
    assert Settings.from_env({"OSTIARY_KEYS_SECRET": SECRET}).keys_secret == SECRET


def test_the_keys_secret_file_is_read_and_stripped(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(f"  {SECRET}\n\n", encoding="utf-8")

    assert Settings.from_env({"OSTIARY_KEYS_SECRET_FILE": str(path)}).keys_secret == SECRET


def test_setting_both_the_secret_and_its_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET, encoding="utf-8")

    found = problems({"OSTIARY_KEYS_SECRET": SECRET, "OSTIARY_KEYS_SECRET_FILE": str(path)})

    assert list(found) == ["OSTIARY_KEYS_SECRET"]
    assert "OSTIARY_KEYS_SECRET_FILE" in found["OSTIARY_KEYS_SECRET"]


def test_a_missing_secret_file_is_reported_by_the_file_variable(tmp_path: Path) -> None:
    path = tmp_path / "absent"

    found = problems({"OSTIARY_KEYS_SECRET_FILE": str(path)})

    assert list(found) == ["OSTIARY_KEYS_SECRET_FILE"]
    assert str(path) in found["OSTIARY_KEYS_SECRET_FILE"]


def test_a_secret_file_that_is_a_folder_is_reported_by_the_file_variable(tmp_path: Path) -> None:
    assert list(problems({"OSTIARY_KEYS_SECRET_FILE": str(tmp_path)})) == ["OSTIARY_KEYS_SECRET_FILE"]


def test_a_secret_file_that_is_not_utf8_is_reported_by_the_file_variable(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"\xff" * 40)

    assert list(problems({"OSTIARY_KEYS_SECRET_FILE": str(path)})) == ["OSTIARY_KEYS_SECRET_FILE"]


def test_a_short_secret_is_refused_and_not_echoed() -> None:
    found = problems({"OSTIARY_KEYS_SECRET": "hunter2-hunter2"})

    assert list(found) == ["OSTIARY_KEYS_SECRET"]
    assert "32" in found["OSTIARY_KEYS_SECRET"]
    assert "hunter2" not in found["OSTIARY_KEYS_SECRET"]


def test_a_short_secret_in_a_file_is_reported_by_the_file_variable(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("short\n", encoding="utf-8")

    assert list(problems({"OSTIARY_KEYS_SECRET_FILE": str(path)})) == ["OSTIARY_KEYS_SECRET_FILE"]


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("\n", encoding="utf-8")

    assert list(problems({"OSTIARY_KEYS_SECRET_FILE": str(path)})) == ["OSTIARY_KEYS_SECRET_FILE"]


def test_the_keys_secret_never_appears_in_the_settings_repr() -> None:
    settings = Settings.from_env({"OSTIARY_KEYS_SECRET": SECRET})

    assert settings.keys_secret == SECRET
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)


# Command-line overrides.


def test_overrides_win_over_the_environment() -> None:
    environ = {"OSTIARY_HOST": "10.0.0.1", "OSTIARY_PORT": "9000", "OSTIARY_WORKERS": "2"}

    settings = Settings.from_env(environ, host="0.0.0.0", port=8443, workers=8)

    assert (settings.host, settings.port, settings.workers) == ("0.0.0.0", 8443, 8)


def test_an_override_of_none_keeps_the_environment() -> None:
    settings = Settings.from_env({"OSTIARY_PORT": "9000"}, host=None, port=None, workers=None)

    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 9000, 1)


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("port", 0, "--port"),
        ("port", "http", "--port"),
        ("port", 70000, "--port"),
        ("workers", 0, "--workers"),
        ("workers", 65, "--workers"),
        ("host", "bad host!", "--host"),
        ("host", "", "--host"),
    ],
)
def test_an_invalid_override_is_reported_by_its_flag(field: str, value: object, flag: str) -> None:
    assert list(problems({}, **{field: value})) == [flag]


def test_override_and_environment_problems_are_reported_together() -> None:
    found = problems({"OSTIARY_LOG_LEVEL": "verbose"}, port="http", workers=0)

    assert sorted(found) == ["--port", "--workers", "OSTIARY_LOG_LEVEL"]


# Durations.


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("12h", 43200),
        ("30d", 2592000),
        ("0", 0),
        (" 15 m ", 900),
    ],
)
def test_a_duration_is_seconds_with_an_optional_unit(raw: str, seconds: int) -> None:
    assert parse_duration(raw) == seconds


@pytest.mark.parametrize("raw", ["", "m", "-5", "1.5h", "15M", "15 min", "1w", "1h30m", "ten"])
def test_a_bad_duration_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(raw)


def test_a_command_line_flag_replaces_an_invalid_variable() -> None:
    settings = Settings.from_env({"OSTIARY_PORT": "abc", "OSTIARY_WORKERS": "0"}, port="9000", workers="2")
    assert (settings.port, settings.workers) == (9000, 2)


def test_a_secret_of_whitespace_is_refused() -> None:
    assert "OSTIARY_KEYS_SECRET" in problems({"OSTIARY_KEYS_SECRET": " " * 40})
    padded = Settings.from_env({"OSTIARY_KEYS_SECRET": "  " + "k" * 32 + "\n"})
    assert padded.keys_secret == "k" * 32


def test_the_first_admin_needs_both_an_address_and_a_password() -> None:
    assert list(problems({"OSTIARY_ADMIN_EMAIL": "admin@example.com"})) == ["OSTIARY_ADMIN_PASSWORD"]
    assert list(problems({"OSTIARY_ADMIN_PASSWORD": "a long admin password"})) == ["OSTIARY_ADMIN_EMAIL"]
    settings = Settings.from_env(
        {"OSTIARY_ADMIN_EMAIL": "admin@example.com", "OSTIARY_ADMIN_PASSWORD": "a long admin password"}
    )
    assert settings.admin_email == "admin@example.com"
    assert "a long admin password" not in repr(settings)
