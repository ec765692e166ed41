"""Ostiary's configuration: one frozen :class:`Settings`, built from ``OSTIARY_*`` variables.

This is the only module that reads the environment. Every invalid value is collected and
reported together, each by the name of its variable, so an operator fixes them in one pass.
Secrets may also come from ``<NAME>_FILE``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
#: JWS algorithms for signing keys. EdDSA keys use the fully-specified name Ed25519
#: (RFC 9864); the polymorphic "EdDSA" is deprecated there and joserfc warns on it.
SIGNING_ALGS = ("RS256", "ES256", "Ed25519")
#: OSTIARY_MFA: "always-if-enrolled" asks every user who has a second factor for it at each
#: sign-in; "when-requested" only when the request (acr_values, claims) or the client asks.
MFA_POLICIES = ("always-if-enrolled", "when-requested")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class SettingsError(Exception):
    """One or more settings are invalid; ``problems`` lists ``(variable, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        lines = ["invalid configuration:"]
        lines += [f"  {name}: {message}" for name, message in self.problems]
        return "\n".join(lines)


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to know, fixed at startup.

    Defaults serve the embedded mode: a SQLite file and key material generated into
    ``keys/``. Durations are seconds.
    """

    issuer: str = "http://127.0.0.1:8000"
    database_url: str = "sqlite+aiosqlite:///ostiary.db"
    keys_secret: str | None = dataclasses.field(default=None, repr=False)
    #: the previous key-encryption secret, accepted while `ostiary keys rewrap` moves keys off it
    keys_secret_previous: str | None = dataclasses.field(default=None, repr=False)
    keys_rotate_every: int = 0
    keys_poll_interval: int = 5
    access_token_alg: str = "RS256"  # noqa: S105  (an algorithm name)
    keys_dir: Path = Path("keys")
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    #: threads per worker that sign client_credentials tokens; -1: one per core the worker
    #: processes leave free (none when workers >= cores)
    signing_threads: int = -1
    access_token_ttl: int = 3600
    id_token_ttl: int = 3600
    auth_code_ttl: int = 60
    session_ttl: int = 86400
    refresh_token_idle_ttl: int = 30 * 86400
    refresh_family_ttl: int = 90 * 86400
    refresh_reuse_grace_seconds: int = 0
    refresh_reuse_grace_count: int = 0
    cleanup_interval: int = 3600
    interaction_ttl: int = 900
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    password_min_length: int = 12
    #: when a second factor is needed besides what requests and clients ask for
    mfa: str = "always-if-enrolled"
    #: the issuer name authenticator apps show next to the account
    totp_issuer: str = "Ostiary"
    #: failed attempts (per account and factor) that lock it for the rest of the window; 0: off
    lockout_threshold: int = 5
    lockout_window_seconds: int = 900
    #: login attempts (and password-reset requests) per client IP address per minute; 0: off
    rate_limit_login: int = 20
    #: token-endpoint requests per client IP address per minute; 0: off (the default: a hot path)
    rate_limit_token: int = 0
    #: where the counters live instead of the database, when set
    redis_url: str | None = None
    #: Have I Been Pwned's range API (or a mirror); "" turns the breached-password check off
    hibp_url: str = "https://api.pwnedpasswords.com"
    hibp_timeout: int = 2
    password_reset_ttl: int = 1800
    #: no SMTP host: mail is written to the log (development)
    smtp_host: str | None = None
    smtp_port: int = 587
    #: starttls, tls (implicit, usually port 465) or none
    smtp_security: str = "starttls"
    smtp_user: str | None = None
    smtp_password: str | None = dataclasses.field(default=None, repr=False)
    smtp_timeout: int = 10
    #: the From header; default "Ostiary <no-reply@issuer host>"
    mail_from: str | None = None
    mail_poll_interval: int = 5
    #: the first administrator, created once at startup when both are set
    admin_email: str | None = None
    admin_password: str | None = dataclasses.field(default=None, repr=False)
    jwks_max_age: int = 600
    client_cache_ttl: int = 5
    max_body_bytes: int = 64 * 1024
    db_pool_size: int = 5
    db_pool_timeout: int = 5
    rsa_key_bits: int = 2048
    log_level: str = "INFO"
    access_log: bool = True
    #: peers whose Forwarded / X-Forwarded-* headers are believed; empty: none (the peer is the client)
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    #: seconds a request body may take to arrive in full before the answer is 408
    body_timeout: int = 30
    #: how recent a password or second-factor check must be for account changes that affect sign-in
    reauth_seconds: int = 300
    #: "smtp" or "log" (development: mail, reset links included, goes to the log); None: smtp when
    #: OSTIARY_SMTP_HOST is set, else log, which an https issuer refuses unless chosen explicitly
    mail_backend: str | None = None
    #: pending (unfinished) authorization requests one client address may hold at once
    pending_interactions_per_address: int = 100

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql+asyncpg://")

    @property
    def mail_to_log(self) -> bool:
        """Mail is written to the log instead of sent (development)."""
        return self.mail_backend == "log" or (self.mail_backend is None and self.smtp_host is None)

    @property
    def secure_cookies(self) -> bool:
        return self.issuer.startswith("https://")

    @property
    def sender_address(self) -> str:
        """The From header of our mail."""
        return self.mail_from or f"Ostiary <no-reply@{urlsplit(self.issuer).hostname}>"

    def endpoint(self, path: str) -> str:
        """The absolute URL of one of our endpoints (``path`` starts with ``/``)."""
        return self.issuer + path

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> Settings:
        """Build settings from ``environ``; ``overrides`` (e.g. CLI flags) win over it.

        Raises :class:`SettingsError` naming every variable whose value is invalid.
        """
        reader = _Reader(environ)
        values: dict[str, Any] = {
            "issuer": reader.get("OSTIARY_ISSUER", _issuer, cls.issuer),
            "database_url": reader.get("OSTIARY_DATABASE_URL", _database_url, cls.database_url),
            "keys_secret": reader.secret("OSTIARY_KEYS_SECRET", _keys_secret),
            "keys_secret_previous": reader.secret("OSTIARY_KEYS_SECRET_PREVIOUS", _keys_secret),
            "keys_dir": reader.get("OSTIARY_KEYS_DIR", Path, cls.keys_dir),
            "keys_rotate_every": reader.get(
                "OSTIARY_KEYS_ROTATE_EVERY", _duration_or_off(3600, 3650 * 86400), cls.keys_rotate_every
            ),
            "keys_poll_interval": reader.get("OSTIARY_KEYS_POLL_INTERVAL", _duration(1, 300), cls.keys_poll_interval),
            # Ed25519 signs ID tokens only: Authlib's RFC 9068 generator gives joserfc no algorithm
            # list, and joserfc refuses algorithms it does not recommend (Ed25519) without one.
            "access_token_alg": reader.get("OSTIARY_ACCESS_TOKEN_ALG", _choice("RS256", "ES256"), cls.access_token_alg),
            "host": reader.get("OSTIARY_HOST", _host, cls.host),
            "port": reader.get("OSTIARY_PORT", _int_range(1, 65535), cls.port),
            "workers": reader.get("OSTIARY_WORKERS", _int_range(1, 64), cls.workers),
            "signing_threads": reader.get("OSTIARY_SIGNING_THREADS", _int_or_auto(0, 64), cls.signing_threads),
            "access_token_ttl": reader.get("OSTIARY_ACCESS_TOKEN_TTL", _duration(5, 86400), cls.access_token_ttl),
            "id_token_ttl": reader.get("OSTIARY_ID_TOKEN_TTL", _duration(5, 86400), cls.id_token_ttl),
            "auth_code_ttl": reader.get("OSTIARY_AUTH_CODE_TTL", _duration(10, 600), cls.auth_code_ttl),
            "refresh_token_idle_ttl": reader.get(
                "OSTIARY_REFRESH_TOKEN_IDLE_TTL", _duration(60, 365 * 86400), cls.refresh_token_idle_ttl
            ),
            "refresh_family_ttl": reader.get(
                "OSTIARY_REFRESH_FAMILY_TTL", _duration(60, 3650 * 86400), cls.refresh_family_ttl
            ),
            "refresh_reuse_grace_seconds": reader.get(
                "OSTIARY_REFRESH_REUSE_GRACE_SECONDS", _duration(0, 300), cls.refresh_reuse_grace_seconds
            ),
            "refresh_reuse_grace_count": reader.get(
                "OSTIARY_REFRESH_REUSE_GRACE_COUNT", _int_range(0, 1000), cls.refresh_reuse_grace_count
            ),
            "cleanup_interval": reader.get("OSTIARY_CLEANUP_INTERVAL", _duration(0, 7 * 86400), cls.cleanup_interval),
            "session_ttl": reader.get("OSTIARY_SESSION_TTL", _duration(300, 90 * 86400), cls.session_ttl),
            "interaction_ttl": reader.get("OSTIARY_INTERACTION_TTL", _duration(60, 86400), cls.interaction_ttl),
            # OWASP's Argon2id minimum is t=2, m=19 MiB, p=1; the defaults are RFC 9106's second choice.
            "argon2_time_cost": reader.get("OSTIARY_ARGON2_TIME_COST", _int_range(2, 20), cls.argon2_time_cost),
            "argon2_memory_kib": reader.get(
                "OSTIARY_ARGON2_MEMORY_KIB", _int_range(19456, 4 * 1024 * 1024), cls.argon2_memory_kib
            ),
            "argon2_parallelism": reader.get("OSTIARY_ARGON2_PARALLELISM", _int_range(1, 16), cls.argon2_parallelism),
            "password_min_length": reader.get(
                "OSTIARY_PASSWORD_MIN_LENGTH", _int_range(8, 128), cls.password_min_length
            ),
            "mfa": reader.get("OSTIARY_MFA", _choice(*MFA_POLICIES), cls.mfa),
            "totp_issuer": reader.get("OSTIARY_TOTP_ISSUER", _totp_issuer, cls.totp_issuer),
            "lockout_threshold": reader.get("OSTIARY_LOCKOUT_THRESHOLD", _int_range(0, 1000), cls.lockout_threshold),
            "lockout_window_seconds": reader.get(
                "OSTIARY_LOCKOUT_WINDOW_SECONDS", _duration(10, 86400), cls.lockout_window_seconds
            ),
            "rate_limit_login": reader.get(
                "OSTIARY_RATE_LIMIT_LOGIN_PER_MINUTE", _int_range(0, 100000), cls.rate_limit_login
            ),
            "rate_limit_token": reader.get(
                "OSTIARY_RATE_LIMIT_TOKEN_PER_MINUTE", _int_range(0, 10000000), cls.rate_limit_token
            ),
            "redis_url": reader.get("OSTIARY_REDIS_URL", _redis_url, cls.redis_url),
            "hibp_url": reader.get("OSTIARY_HIBP_URL", _hibp_url, cls.hibp_url),
            "hibp_timeout": reader.get("OSTIARY_HIBP_TIMEOUT", _duration(1, 30), cls.hibp_timeout),
            "password_reset_ttl": reader.get(
                "OSTIARY_PASSWORD_RESET_TTL", _duration(300, 86400), cls.password_reset_ttl
            ),
            "smtp_host": reader.get("OSTIARY_SMTP_HOST", _host, cls.smtp_host),
            "smtp_port": reader.get("OSTIARY_SMTP_PORT", _int_range(1, 65535), cls.smtp_port),
            "smtp_security": reader.get("OSTIARY_SMTP_SECURITY", _choice("starttls", "tls", "none"), cls.smtp_security),
            "smtp_user": reader.get("OSTIARY_SMTP_USER", _printable(254), cls.smtp_user),
            "smtp_password": reader.secret("OSTIARY_SMTP_PASSWORD", _printable(1024)),
            "smtp_timeout": reader.get("OSTIARY_SMTP_TIMEOUT", _duration(1, 300), cls.smtp_timeout),
            "mail_from": reader.get("OSTIARY_MAIL_FROM", _mail_from, cls.mail_from),
            "mail_poll_interval": reader.get("OSTIARY_MAIL_POLL_INTERVAL", _duration(0, 3600), cls.mail_poll_interval),
            "admin_email": reader.get("OSTIARY_ADMIN_EMAIL", _email, cls.admin_email),
            "admin_password": reader.secret("OSTIARY_ADMIN_PASSWORD", _printable(1024)),
            "jwks_max_age": reader.get("OSTIARY_JWKS_MAX_AGE", _duration(0, 86400), cls.jwks_max_age),
            "client_cache_ttl": reader.get("OSTIARY_CLIENT_CACHE_TTL", _duration(0, 300), cls.client_cache_ttl),
            "max_body_bytes": reader.get(
                "OSTIARY_MAX_BODY_BYTES", _int_range(1024, 16 * 1024 * 1024), cls.max_body_bytes
            ),
            "db_pool_size": reader.get("OSTIARY_DB_POOL_SIZE", _int_range(1, 100), cls.db_pool_size),
            "db_pool_timeout": reader.get("OSTIARY_DB_POOL_TIMEOUT", _duration(1, 120), cls.db_pool_timeout),
            "rsa_key_bits": reader.get("OSTIARY_RSA_KEY_BITS", _choice_int(2048, 3072, 4096), cls.rsa_key_bits),
            "log_level": reader.get("OSTIARY_LOG_LEVEL", _log_level, cls.log_level),
            "access_log": reader.get("OSTIARY_ACCESS_LOG", _bool, cls.access_log),
            "trusted_proxies": reader.get("OSTIARY_TRUSTED_PROXIES", _networks, cls.trusted_proxies),
            "body_timeout": reader.get("OSTIARY_BODY_TIMEOUT_SECONDS", _duration(1, 3600), cls.body_timeout),
            "reauth_seconds": reader.get("OSTIARY_REAUTH_SECONDS", _duration(30, 86400), cls.reauth_seconds),
            "mail_backend": reader.get("OSTIARY_MAIL_BACKEND", _choice("smtp", "log"), cls.mail_backend),
            "pending_interactions_per_address": reader.get(
                "OSTIARY_PENDING_INTERACTIONS_PER_ADDRESS", _int_range(1, 100000), cls.pending_interactions_per_address
            ),
        }
        flag_names = {"host": "--host", "port": "--port", "workers": "--workers"}
        for field, raw in overrides.items():
            if raw is None:
                continue
            # The flag wins, so the variable it replaces is no longer a problem.
            reader.problems = [p for p in reader.problems if p[0] != f"OSTIARY_{field.upper()}"]
            parser = {"host": _host, "port": _int_range(1, 65535), "workers": _int_range(1, 64)}[field]
            try:
                values[field] = parser(str(raw))
            except ValueError as exc:
                reader.problems.append((flag_names[field], str(exc)))
        if (values["admin_email"] is None) != (values["admin_password"] is None):
            missing = "OSTIARY_ADMIN_PASSWORD" if values["admin_password"] is None else "OSTIARY_ADMIN_EMAIL"
            reader.problems.append((missing, "the first admin needs both OSTIARY_ADMIN_EMAIL and a password"))
        _check_mail(values, reader.problems)
        if reader.problems:
            raise SettingsError(reader.problems)
        return cls(**values)


def _check_mail(values: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    """Mail to the log carries working reset links: fine on a loopback development issuer,
    never by accident on a public one."""
    backend, smtp_host = values["mail_backend"], values["smtp_host"]
    if backend == "smtp" and smtp_host is None:
        problems.append(("OSTIARY_SMTP_HOST", "OSTIARY_MAIL_BACKEND=smtp needs an SMTP host"))
    elif backend is None and smtp_host is None and values["issuer"].startswith("https://"):
        problems.append(
            (
                "OSTIARY_SMTP_HOST",
                "an https issuer needs a mail server: set OSTIARY_SMTP_HOST, or OSTIARY_MAIL_BACKEND=log "
                "to write mail (reset links included) to the log on purpose",
            )
        )


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[tuple[str, str]] = []

    def get(self, name: str, parse: Callable[[str], T], default: T) -> T:
        raw = self.environ.get(name)
        if raw is None or raw == "":
            return default
        try:
            return parse(raw)
        except ValueError as exc:
            self.problems.append((name, str(exc)))
            return default

    def secret(self, name: str, parse: Callable[[str], str]) -> str | None:
        """A secret from ``name`` or from the file named by ``name_FILE`` (not both)."""
        file_name = name + "_FILE"
        direct, path = self.environ.get(name) or None, self.environ.get(file_name) or None
        if direct and path:
            self.problems.append((name, f"set either {name} or {file_name}, not both"))
            return None
        if path:
            try:
                direct = Path(path).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                self.problems.append((file_name, f"cannot read {path!r}: {_reason(exc)}"))
                return None
            name = file_name
        if direct is None:
            return None
        try:
            return parse(direct)
        except ValueError as exc:
            self.problems.append((name, str(exc)))
            return None


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def _issuer(raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an absolute http(s) URL, got {raw!r}")
    if "?" in raw or "#" in raw:
        raise ValueError("must not have a query or a fragment (OpenID Connect Discovery §2)")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"must use https unless the host is loopback (127.0.0.1, ::1, localhost), got {raw!r}")
    return raw.strip().rstrip("/")


def _database_url(raw: str) -> str:
    url = raw.strip()
    for prefix, driver in (
        ("postgresql+asyncpg://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite+aiosqlite://", "sqlite+aiosqlite://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(prefix):
            rest = url[len(prefix) :]
            path, _, query = rest.partition("?")
            if driver.startswith("sqlite") and (path in ("", "/", "/:memory:") or "mode=memory" in query):
                raise ValueError(
                    "an in-memory SQLite database is not supported: every process and connection "
                    "must see the same data; use a file, e.g. sqlite:///ostiary.db"
                )
            return driver + rest
    raise ValueError(f"must be a postgresql:// or sqlite:/// URL, got scheme {url.split(':', 1)[0]!r}")


def _keys_secret(raw: str) -> str:
    raw = raw.strip()
    if len(raw) < 32:
        raise ValueError(
            "must be at least 32 characters (e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    return raw


def _totp_issuer(raw: str) -> str:
    value = raw.strip()
    if not 1 <= len(value) <= 64 or ":" in value or not value.isprintable():
        raise ValueError("1 to 64 printable characters, no colon (it is part of the otpauth label)")
    return value


def _redis_url(raw: str) -> str:
    value = raw.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        raise ValueError(f"must be a redis://, rediss:// or unix:// URL, got {value!r}")
    return value


def _hibp_url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if value.lower() == "off":
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"must be an http(s) URL (the range API's base) or off, got {raw!r}")
    return value


def _printable(limit: int) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if not 1 <= len(raw) <= limit or not raw.isprintable():
            raise ValueError(f"must be 1 to {limit} printable characters")
        return raw

    return parse


_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]+$")


def _email(raw: str) -> str:
    value = raw.strip()
    if not _EMAIL.match(value) or len(value) > 254:
        raise ValueError(f"must be an email address, got {value!r}")
    return value


def _mail_from(raw: str) -> str:
    value = raw.strip()
    _name, address = parseaddr(value)
    if not _EMAIL.match(address) or "\n" in value or "\r" in value:
        raise ValueError(f"must be an address, optionally with a name (Ostiary <no-reply@example.com>), got {value!r}")
    return value


def _host(raw: str) -> str:
    host = raw.strip()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", host):
            raise ValueError(f"must be an IP address or a host name, got {raw!r}") from None
    return host


def _networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated addresses or CIDR blocks (``10.0.0.0/8, 192.0.2.7, ::1``)."""
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"must be comma-separated IP addresses or CIDR blocks, got {item!r}") from None
    return tuple(networks)


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"must be a whole number from {low} to {high}, got {raw!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}, got {value}")
        return value

    return parse


def _int_or_auto(low: int, high: int) -> Callable[[str], int]:
    """A whole number, or ``auto`` (-1)."""
    bounded = _int_range(low, high)

    def parse(raw: str) -> int:
        if raw.strip().lower() == "auto":
            return -1
        try:
            return bounded(raw)
        except ValueError as exc:
            raise ValueError(f"{exc} (or auto)") from None

    return parse


def _choice_int(*choices: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        if raw.strip() not in {str(c) for c in choices}:
            raise ValueError(f"must be one of {', '.join(map(str, choices))}, got {raw!r}")
        return int(raw)

    return parse


def parse_duration(raw: str) -> int:
    """Seconds from ``"90"``, ``"90s"``, ``"15m"``, ``"12h"`` or ``"30d"``."""
    match = _DURATION.match(raw)
    if not match:
        raise ValueError(f"must be a duration such as 90, 90s, 15m, 12h or 30d, got {raw!r}")
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


def _duration(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = parse_duration(raw)
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high} seconds, got {value}")
        return value

    return parse


def _duration_or_off(low: int, high: int) -> Callable[[str], int]:
    """A duration, or 0 / "off" for none."""
    bounded = _duration(low, high)

    def parse(raw: str) -> int:
        if raw.strip().lower() in ("0", "off"):
            return 0
        return bounded(raw)

    return parse


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.strip() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {raw!r}")
        return raw.strip()

    return parse


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {raw!r}")


def _log_level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in _LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}, got {raw!r}")
    return value
