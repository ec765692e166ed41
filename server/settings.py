"""Ostiary's configuration: one frozen :class:`Settings`, built from ``OSTIARY_*`` variables.

This is the only module that reads the environment. Each setting is declared once, as a
field of :class:`Settings` made by :func:`setting`: its variable, the cast that parses and
checks a value, its default and a line of documentation, from which :meth:`Settings.from_env`
reads it and :func:`settings_table` writes the README's table. Every invalid value is
collected and reported together, each by the name of its variable, so an operator fixes
them in one pass. Secrets may also come from ``<NAME>_FILE``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import formataddr, parseaddr
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from . import brand, i18n

T = TypeVar("T")

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
#: JWS algorithms for signing keys. EdDSA keys use the fully-specified name Ed25519
#: (RFC 9864); the polymorphic "EdDSA" is deprecated there and joserfc warns on it.
SIGNING_ALGS = ("RS256", "PS256", "ES256", "Ed25519")
#: what access tokens may be signed with: not Ed25519, which resource-server libraries
#: (and joserfc without an explicit algorithm list) do not accept by default
ACCESS_TOKEN_ALGS = ("RS256", "PS256", "ES256")
#: OSTIARY_MFA: "always-if-enrolled" asks every user who has a second factor for it at each
#: sign-in; "when-requested" only when the request (acr_values, claims) or the client asks.
MFA_POLICIES = ("always-if-enrolled", "when-requested")


class SettingsError(Exception):
    """One or more settings are invalid; ``problems`` lists ``(variable, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        lines = ["invalid configuration:"]
        lines += [f"  {name}: {message}" for name, message in self.problems]
        return "\n".join(lines)


# Casts: each parses one raw value, or raises ValueError with a message for the operator.
# They come first because the declarations in Settings call them.


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


def _aaguids(raw: str) -> tuple[str, ...]:
    """Authenticator models (AAGUIDs, as UUIDs), comma- or space-separated."""
    found = []
    for part in raw.replace(",", " ").split():
        try:
            found.append(str(uuid.UUID(part)))
        except ValueError:
            raise ValueError(f"{part!r} is not an AAGUID (a UUID: 08987058-cadc-4b81-b6e1-30de50dcbe96)") from None
    return tuple(found)


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


def _geoip_database(raw: str) -> Path:
    """A MaxMind City or Country database (``.mmdb``) that can be opened here; it is read
    again, once per process, by the account page's place lookup."""
    path = Path(raw.strip())
    try:
        import maxminddb
    except ImportError:  # pragma: no cover - a dependency; only a broken install lacks it
        raise ValueError("needs the maxminddb package (pip install maxminddb)") from None
    try:
        with maxminddb.open_database(str(path)) as reader:
            kind = reader.metadata().database_type
    except (OSError, ValueError) as exc:  # a missing file; InvalidDatabaseError is a RuntimeError
        raise ValueError(f"cannot read {str(path)!r}: {_reason(exc)}") from None
    except RuntimeError as exc:
        raise ValueError(f"{str(path)!r} is not a MaxMind database: {exc}") from None
    if "City" not in kind and "Country" not in kind:
        raise ValueError(f"must be a City or Country database (GeoLite2-City, GeoIP2-Country, ...), got {kind!r}")
    return path


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


def _port_or_off(raw: str) -> int:
    """A TCP port, or ``off`` (0)."""
    if raw.strip().lower() in ("0", "off", ""):
        return 0
    try:
        return _int_range(1, 65535)(raw)
    except ValueError as exc:
        raise ValueError(f"{exc} (or off)") from None


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


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.strip() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {raw!r}")
        return raw.strip()

    return parse


def _locale(raw: str) -> str:
    found = i18n.match(raw)
    if found is None or found != raw.strip().lower():
        raise ValueError(f"must be one of {', '.join(i18n.supported())}, got {raw!r}")
    return found


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {raw!r}")


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _log_level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in _LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}, got {raw!r}")
    return value


_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(raw: str) -> int:
    """Seconds from ``"90"``, ``"90s"``, ``"15m"``, ``"12h"`` or ``"30d"``."""
    match = _DURATION.match(raw)
    if not match:
        raise ValueError(f"must be a duration such as 90, 90s, 15m, 12h or 30d, got {raw!r}")
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


@dataclass(frozen=True)
class _Duration:
    """A duration from ``low`` to ``high`` seconds; with ``off``, also 0 or "off" for none.

    A class rather than a closure so that the settings table can show its default as one.
    """

    low: int
    high: int
    off: bool = False

    def __call__(self, raw: str) -> int:
        if self.off and raw.strip().lower() in ("0", "off"):
            return 0
        value = parse_duration(raw)
        if not self.low <= value <= self.high:
            raise ValueError(f"must be from {self.low} to {self.high} seconds, got {value}")
        return value

    def show(self, seconds: int) -> str:
        """``seconds`` in the largest unit that divides it, as an operator would write it."""
        if seconds == 0:
            return "off" if self.off else "0"
        unit = next(unit for unit in "dhms" if seconds % _DURATION_UNITS[unit] == 0)
        return f"{seconds // _DURATION_UNITS[unit]}{unit}"


def _duration(low: int, high: int) -> _Duration:
    return _Duration(low, high)


def _duration_or_off(low: int, high: int) -> _Duration:
    return _Duration(low, high, off=True)


# The declaration of a setting.


@dataclass(frozen=True)
class Variable:
    """Where one field of :class:`Settings` comes from and what it means."""

    name: str
    cast: Callable[[str], Any]
    doc: str
    #: also read from the file named by ``<name>_FILE``; never in the repr
    secret: bool = False
    #: the ``ostiary`` command-line option that wins over the variable
    flag: str | None = None
    #: the default as the README shows it, where the value itself would not say what it does
    shown: str | None = None


def setting(
    name: str,
    cast: Callable[[str], T],
    *,
    default: T,
    doc: str,
    secret: bool = False,
    flag: str | None = None,
    shown: str | None = None,
) -> T:
    """A :class:`Settings` field read from the variable ``name`` by ``cast``, ``default`` when unset."""
    if secret and default is not None:
        raise ValueError(f"{name}: a secret has no default")
    variable = Variable(name, cast, doc, secret=secret, flag=flag, shown=shown)
    return dataclasses.field(default=default, repr=not secret, metadata={Variable: variable})


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to know, fixed at startup.

    Defaults serve the embedded mode: a SQLite file and key material generated into
    ``keys/``. Durations are seconds.
    """

    # The server process.
    issuer: str = setting(
        "OSTIARY_ISSUER",
        _issuer,
        default="http://127.0.0.1:8000",
        shown="`http://127.0.0.1:<port>`",
        doc="issuer URL; must be `https` unless the host is loopback. Behind a TLS proxy, the public https URL. "
        "Unset, it follows the listen port (`OSTIARY_PORT`, `--port`)",
    )
    database_url: str = setting(
        "OSTIARY_DATABASE_URL",
        _database_url,
        default="sqlite+aiosqlite:///ostiary.db",
        doc="`postgresql://user@host:5432/db` (asyncpg) or `sqlite:///path.db`; in-memory SQLite is refused",
    )
    host: str = setting("OSTIARY_HOST", _host, default="127.0.0.1", doc="listen address", flag="--host")
    port: int = setting("OSTIARY_PORT", _int_range(1, 65535), default=8000, doc="listen port", flag="--port")
    workers: int = setting(
        "OSTIARY_WORKERS", _int_range(1, 64), default=1, doc="worker processes, one per core is right", flag="--workers"
    )
    shutdown_grace_seconds: int = setting(
        "OSTIARY_SHUTDOWN_GRACE_SECONDS",
        _duration(0, 3600),
        default=20,
        doc="at SIGTERM, time allowed for requests in flight to finish before the process stops anyway",
    )
    signing_threads: int = setting(
        "OSTIARY_SIGNING_THREADS",
        _int_or_auto(0, 64),
        default=-1,
        shown="`auto`",
        doc="threads per worker that run `client_credentials` grants and the issuing half of refreshes "
        "beside the event loop (their RSA signatures release the GIL); `auto`: when workers < cores, "
        "cores ÷ workers rounded up (2 for one worker on 2 cores), else none; `0`: sign on the loop",
    )
    max_body_bytes: int = setting(
        "OSTIARY_MAX_BODY_BYTES",
        _int_range(1024, 16 * 1024 * 1024),
        default=64 * 1024,
        doc="largest request body accepted (`413` beyond)",
    )
    body_timeout: int = setting(
        "OSTIARY_BODY_TIMEOUT_SECONDS",
        _duration(1, 3600),
        default=30,
        doc="how long a request body may take to arrive in full; beyond, `408` and the connection is closed",
    )
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = setting(
        "OSTIARY_TRUSTED_PROXIES",
        _networks,
        default=(),
        doc='addresses or CIDR blocks of reverse proxies whose forwarding headers are believed (see "Behind a '
        'proxy"); empty: the peer is the client',
    )
    geoip_database: Path | None = setting(
        "OSTIARY_GEOIP_DATABASE",
        _geoip_database,
        default=None,
        doc="a MaxMind GeoLite2 or GeoIP2 City or Country database (`.mmdb`) on this machine: the account page "
        "shows each session's rough place (city, country) from its address. Unset: no place is shown; no "
        "address is ever looked up elsewhere",
    )
    db_pool_size: int = setting(
        "OSTIARY_DB_POOL_SIZE",
        _int_range(1, 100),
        default=5,
        doc="database connections per worker (PostgreSQL; the pool never overflows)",
    )
    db_pool_timeout: int = setting(
        "OSTIARY_DB_POOL_TIMEOUT",
        _duration(1, 120),
        default=5,
        doc="how long to wait for a database connection before answering `503`",
    )
    log_level: str = setting(
        "OSTIARY_LOG_LEVEL",
        _log_level,
        default="INFO",
        doc="Ostiary's log level; libraries stay at WARNING (some log secrets at DEBUG)",
    )
    log_format: str = setting(
        "OSTIARY_LOG_FORMAT",
        _choice("auto", "json", "text"),
        default="auto",
        doc="`json`: one JSON object per line (time, level, logger, event, request_id, client_id, user_id); "
        "`text`: one readable line; `auto`: text when the log goes to a terminal, else json",
    )
    metrics_port: int = setting(
        "OSTIARY_METRICS_PORT",
        _port_or_off,
        default=0,
        shown="off",
        doc="serve Prometheus metrics at `/metrics` on this port of `OSTIARY_HOST`, for all workers together; "
        "a port of its own so that the public one never shows them",
    )
    access_log: bool = setting(
        "OSTIARY_ACCESS_LOG",
        _bool,
        default=True,
        doc="one line per request: client address, method, path (never the query), status, time; control "
        "characters are escaped in every log line; `499`: the client left mid-body",
    )

    # Signing keys.
    keys_secret: str | None = setting(
        "OSTIARY_KEYS_SECRET",
        _keys_secret,
        default=None,
        secret=True,
        doc="key-encryption secret, 32 characters or more, the same on every machine",
    )
    keys_secret_previous: str | None = setting(
        "OSTIARY_KEYS_SECRET_PREVIOUS",
        _keys_secret,
        default=None,
        secret=True,
        doc="the previous key-encryption secret, accepted while `ostiary keys rewrap` moves keys off it",
    )
    keys_dir: Path = setting(
        "OSTIARY_KEYS_DIR",
        Path,
        default=Path("keys"),
        doc="where the embedded default keeps its generated secret when `OSTIARY_KEYS_SECRET` is not set",
    )
    keys_rotate_every: int = setting(
        "OSTIARY_KEYS_ROTATE_EVERY",
        _duration_or_off(3600, 3650 * 86400),
        default=0,
        doc="rotate the signing keys on this schedule, e.g. `30d` (at least `1h`)",
    )
    keys_poll_interval: int = setting(
        "OSTIARY_KEYS_POLL_INTERVAL", _duration(1, 300), default=5, doc="how often each process looks at the key set"
    )
    access_token_alg: str = setting(
        "OSTIARY_ACCESS_TOKEN_ALG",
        _choice(*ACCESS_TOKEN_ALGS),
        default="RS256",
        doc="`RS256`, `PS256` or `ES256` for access tokens (a client may register its own: "
        "`access_token_signed_response_alg`)",
    )
    rsa_key_bits: int = setting(
        "OSTIARY_RSA_KEY_BITS",
        _choice_int(2048, 3072, 4096),
        default=2048,
        doc="size of new RSA signing keys: 2048, 3072 or 4096",
    )
    jwks_max_age: int = setting(
        "OSTIARY_JWKS_MAX_AGE",
        _duration(0, 86400),
        default=600,
        doc="`Cache-Control: max-age` of `/jwks` and discovery; a staged key waits this plus two poll intervals "
        "before signing",
    )

    # Lifetimes of what Ostiary issues and keeps.
    access_token_ttl: int = setting(
        "OSTIARY_ACCESS_TOKEN_TTL", _duration(5, 86400), default=3600, doc="access token lifetime, 5 s to 1 day"
    )
    id_token_ttl: int = setting("OSTIARY_ID_TOKEN_TTL", _duration(5, 86400), default=3600, doc="ID token lifetime")
    auth_code_ttl: int = setting(
        "OSTIARY_AUTH_CODE_TTL", _duration(10, 600), default=60, doc="authorization code lifetime, 10 s to 10 min"
    )
    device_code_ttl: int = setting(
        "OSTIARY_DEVICE_CODE_TTL",
        _duration(2, 3600),
        default=600,
        doc="how long a device authorization (RFC 8628) waits for its user code to be entered and approved",
    )
    device_code_interval: int = setting(
        "OSTIARY_DEVICE_CODE_INTERVAL",
        _duration(1, 60),
        default=5,
        doc="the seconds a device waits between polls of `/token` (each `slow_down` adds 5)",
    )
    session_ttl: int = setting(
        "OSTIARY_SESSION_TTL",
        _duration(300, 90 * 86400),
        default=86400,
        doc="browser session (single sign-on) lifetime",
    )
    refresh_token_idle_ttl: int = setting(
        "OSTIARY_REFRESH_TOKEN_IDLE_TTL",
        _duration(60, 365 * 86400),
        default=30 * 86400,
        doc="a refresh token unused this long expires",
    )
    refresh_token_idle_ttl_public: int = setting(
        "OSTIARY_REFRESH_TOKEN_IDLE_TTL_PUBLIC",
        _duration(60, 365 * 86400),
        default=86400,
        doc="the same for public clients (browser and native apps, whose tokens live on the device)",
    )
    refresh_family_ttl: int = setting(
        "OSTIARY_REFRESH_FAMILY_TTL",
        _duration(60, 3650 * 86400),
        default=90 * 86400,
        doc="absolute lifetime of a refresh-token family",
    )
    refresh_reuse_grace_seconds: int = setting(
        "OSTIARY_REFRESH_REUSE_GRACE_SECONDS",
        _duration(0, 300),
        default=0,
        doc="grace window for re-presenting the previous refresh token (0: off, at most 300)",
    )
    refresh_reuse_grace_count: int = setting(
        "OSTIARY_REFRESH_REUSE_GRACE_COUNT",
        _int_range(0, 1000),
        default=0,
        doc="how many times within the window (0: no bound)",
    )
    interaction_ttl: int = setting(
        "OSTIARY_INTERACTION_TTL", _duration(60, 86400), default=900, doc="how long a sign-in page stays usable"
    )
    pending_interactions_per_address: int = setting(
        "OSTIARY_PENDING_INTERACTIONS_PER_ADDRESS",
        _int_range(1, 100000),
        default=100,
        doc="unfinished sign-ins one client address may hold; beyond, its oldest gives way",
    )
    client_cache_ttl: int = setting(
        "OSTIARY_CLIENT_CACHE_TTL",
        _duration(0, 300),
        default=5,
        doc="how long a process caches a client's registration (0: off). A changed client is seen everywhere "
        "within this time",
    )
    registration: str = setting(
        "OSTIARY_REGISTRATION",
        _choice("off", "initial-token", "open"),
        default="off",
        doc="dynamic client registration at `/register` (RFC 7591, 7592): `off`; `initial-token`: with a token "
        "from `ostiary clients registration-token create`; `open`: anyone may register a client",
    )
    par_ttl: int = setting(
        "OSTIARY_PAR_TTL",
        _duration(10, 600),
        default=60,
        doc="how long the `request_uri` of a pushed authorization request (RFC 9126, `/par`) stays usable",
    )
    require_par: bool = setting(
        "OSTIARY_REQUIRE_PAR",
        _bool,
        default=False,
        doc="every client must push its authorization requests to `/par` first (a client can also be "
        "required alone: `require_pushed_authorization_requests`)",
    )
    dpop_proof_window: int = setting(
        "OSTIARY_DPOP_PROOF_WINDOW",
        _duration(5, 600),
        default=60,
        doc="how far back a DPoP proof's `iat` may be from the server's clock (RFC 9449 §11.1); ahead, this "
        "or 60 s, whichever is less (FAPI 2.0)",
    )
    dpop_require_nonce: bool = setting(
        "OSTIARY_DPOP_REQUIRE_NONCE",
        _bool,
        default=False,
        doc="DPoP proofs must carry a nonce the server gave (`DPoP-Nonce`, RFC 9449 §8, §9): a proof without "
        "a current one is answered `use_dpop_nonce`",
    )
    dpop_nonce_lifetime: int = setting(
        "OSTIARY_DPOP_NONCE_LIFETIME",
        _duration(10, 3600),
        default=300,
        doc="how often the DPoP nonce changes (the one before stays accepted as long again)",
    )
    client_assertion_max_lifetime: int = setting(
        "OSTIARY_CLIENT_ASSERTION_MAX_LIFETIME",
        _duration(10, 3600),
        default=3600,
        doc="the longest a `private_key_jwt` client assertion (RFC 7523) may be valid, `iat` (or now) to `exp` "
        "(an hour is what Authlib's client signs; openid-client signs for a minute)",
    )
    jwks_uri_allow_private: bool = setting(
        "OSTIARY_JWKS_URI_ALLOW_PRIVATE",
        _bool,
        default=False,
        doc="fetch a client's `jwks_uri` from a loopback, private or link-local address too (off: public "
        "addresses only, so a client's metadata cannot make the server call its own network)",
    )
    profile: str = setting(
        "OSTIARY_PROFILE",
        _choice("none", "fapi2"),
        default="none",
        doc="`fapi2`: every client is held to the FAPI 2.0 Security Profile, as one client is by its `fapi2` "
        "flag (docs/fapi2.md); `none`: only those clients",
    )
    cleanup_interval: int = setting(
        "OSTIARY_CLEANUP_INTERVAL",
        _duration(0, 7 * 86400),
        default=3600,
        doc="time between cleanup sweeps of expired rows (0: off)",
    )
    audit_retention_days: int = setting(
        "OSTIARY_AUDIT_RETENTION_DAYS",
        _int_range(0, 36500),
        default=90,
        doc="days an audit event is kept before the cleanup deletes it (0: kept for ever)",
    )

    # Passwords, second factors and attempts.
    # OWASP's Argon2id minimum is t=2, m=19 MiB, p=1; the defaults are RFC 9106's second choice.
    argon2_time_cost: int = setting(
        "OSTIARY_ARGON2_TIME_COST", _int_range(2, 20), default=3, doc="Argon2id iterations (at least 2)"
    )
    argon2_memory_kib: int = setting(
        "OSTIARY_ARGON2_MEMORY_KIB",
        _int_range(19456, 4 * 1024 * 1024),
        default=65536,
        doc="Argon2id memory in KiB (at least 19456, OWASP's minimum)",
    )
    argon2_parallelism: int = setting("OSTIARY_ARGON2_PARALLELISM", _int_range(1, 16), default=4, doc="Argon2id lanes")
    password_min_length: int = setting(
        "OSTIARY_PASSWORD_MIN_LENGTH",
        _int_range(8, 128),
        default=12,
        doc="shortest password accepted (NIST SP 800-63B)",
    )
    hibp_url: str = setting(
        "OSTIARY_HIBP_URL",
        _hibp_url,
        default="https://api.pwnedpasswords.com",
        doc="Have I Been Pwned's breached-password range API (or a mirror), or `off`",
    )
    hibp_timeout: int = setting(
        "OSTIARY_HIBP_TIMEOUT", _duration(1, 30), default=2, doc="how long to wait for it before accepting the password"
    )
    password_reset_ttl: int = setting(
        "OSTIARY_PASSWORD_RESET_TTL",
        _duration(300, 86400),
        default=1800,
        doc="lifetime of a reset link, 5 min to 1 day",
    )
    default_locale: str = setting(
        "OSTIARY_DEFAULT_LOCALE",
        _locale,
        default="en",
        doc="the language of pages and mails when neither `ui_locales` nor the browser asks for one that Ostiary "
        "has (`en`, `de`, `fr`)",
    )
    passkey_aaguids: tuple[str, ...] = setting(
        "OSTIARY_PASSKEY_AAGUIDS",
        _aaguids,
        default=(),
        doc="accept only passkeys and security keys of these models (AAGUIDs): registration then asks for "
        "attestation; empty: any authenticator, attestation `none`",
    )
    signup: str = setting(
        "OSTIARY_SIGNUP",
        _choice("off", "open", "invite"),
        default="off",
        doc="self-service sign-up at `/signup`: `off`, `open` to anyone who confirms an e-mail address, or "
        "`invite` with an administrator's invitation link (`ostiary invitations create`)",
    )
    email_verification_ttl: int = setting(
        "OSTIARY_EMAIL_VERIFICATION_TTL",
        _duration(300, 7 * 86400),
        default=86400,
        doc="lifetime of a link that confirms an e-mail address (a sign-up or a changed address), 5 min to 7 days",
    )
    invitation_ttl: int = setting(
        "OSTIARY_INVITATION_TTL",
        _duration(3600, 90 * 86400),
        default=7 * 86400,
        doc="how long a sign-up invitation works unless `--expires-in` says otherwise, 1 hour to 90 days",
    )
    rate_limit_signup: int = setting(
        "OSTIARY_RATE_LIMIT_SIGNUP_PER_MINUTE",
        _int_range(0, 100000),
        default=5,
        doc="sign-up and address-change forms per client address per minute, and confirmation mails per "
        "e-mail address per minute (0: off)",
    )
    reauth_seconds: int = setting(
        "OSTIARY_REAUTH_SECONDS",
        _duration(30, 86400),
        default=300,
        doc="how recent a password or second-factor check must be for account changes that affect sign-in "
        "(at least 30 s)",
    )
    mfa: str = setting(
        "OSTIARY_MFA",
        _choice(*MFA_POLICIES),
        default="always-if-enrolled",
        doc="ask users who have a second factor for it at every sign-in, or only `when-requested` "
        "(by `acr_values` or `--require-mfa`)",
    )
    totp_issuer: str | None = setting(
        "OSTIARY_TOTP_ISSUER",
        _totp_issuer,
        default=None,
        shown="`OSTIARY_BRAND_NAME`",
        doc="the name authenticator apps show next to the account (no colon); unset: the brand name, colons left out",
    )
    lockout_threshold: int = setting(
        "OSTIARY_LOCKOUT_THRESHOLD",
        _int_range(0, 1000),
        default=5,
        doc="failed attempts (per account and factor) that lock it for the rest of the window (0: off)",
    )
    lockout_window_seconds: int = setting(
        "OSTIARY_LOCKOUT_WINDOW_SECONDS",
        _duration(10, 86400),
        default=900,
        doc="the sliding window of that count, 10 s to 1 day",
    )
    rate_limit_login: int = setting(
        "OSTIARY_RATE_LIMIT_LOGIN_PER_MINUTE",
        _int_range(0, 100000),
        default=20,
        doc="sign-in and password-reset requests per client address per minute (0: off)",
    )
    rate_limit_token: int = setting(
        "OSTIARY_RATE_LIMIT_TOKEN_PER_MINUTE",
        _int_range(0, 10000000),
        default=0,
        doc="`/token` requests per client address per minute (0: off, the default: a hot path)",
    )
    rate_limit_device: int = setting(
        "OSTIARY_RATE_LIMIT_DEVICE_PER_MINUTE",
        _int_range(0, 100000),
        default=10,
        doc="device authorizations asked at `/device/authorize`, and user codes entered at `/device`, "
        "per client address (codes: and per code) per minute (0: off)",
    )
    rate_limit_register: int = setting(
        "OSTIARY_RATE_LIMIT_REGISTER_PER_MINUTE",
        _int_range(0, 100000),
        default=10,
        doc="client registrations at `/register` per client address per minute (0: off)",
    )
    rate_limit_admin: int = setting(
        "OSTIARY_RATE_LIMIT_ADMIN_PER_MINUTE",
        _int_range(0, 1000000),
        default=300,
        doc="admin API requests per access token per minute (0: off)",
    )
    admin_step_up_seconds: int = setting(
        "OSTIARY_ADMIN_STEP_UP_SECONDS",
        _duration(60, 86400),
        default=900,
        doc="how recent an administrator's second factor must be for the admin console (at least 60 s)",
    )
    redis_url: str | None = setting(
        "OSTIARY_REDIS_URL",
        _redis_url,
        default=None,
        doc="`redis://host:6379/0`: keep the per-address counters in Redis instead of the database",
    )

    # Mail.
    mail_backend: str | None = setting(
        "OSTIARY_MAIL_BACKEND",
        _choice("smtp", "log"),
        default=None,
        shown="(auto)",
        doc="`smtp` or `log` (development: mail, reset links included, goes to the log); by default `smtp` when "
        "`OSTIARY_SMTP_HOST` is set, else `log`, which an `https` issuer refuses unless set explicitly",
    )
    smtp_host: str | None = setting(
        "OSTIARY_SMTP_HOST", _host, default=None, doc="mail server; without it, mail is written to the log"
    )
    smtp_port: int = setting("OSTIARY_SMTP_PORT", _int_range(1, 65535), default=587, doc="its port")
    smtp_security: str = setting(
        "OSTIARY_SMTP_SECURITY",
        _choice("starttls", "tls", "none"),
        default="starttls",
        doc="`starttls`, `tls` (implicit, usually port 465) or `none`",
    )
    smtp_user: str | None = setting("OSTIARY_SMTP_USER", _printable(254), default=None, doc="SMTP login")
    smtp_password: str | None = setting(
        "OSTIARY_SMTP_PASSWORD", _printable(1024), default=None, secret=True, doc="the SMTP login's password"
    )
    smtp_timeout: int = setting(
        "OSTIARY_SMTP_TIMEOUT", _duration(1, 300), default=10, doc="time allowed for one SMTP conversation"
    )
    mail_from: str | None = setting(
        "OSTIARY_MAIL_FROM",
        _mail_from,
        default=None,
        shown="`<brand name> <no-reply@issuer host>`",
        doc="the From header",
    )
    mail_poll_interval: int = setting(
        "OSTIARY_MAIL_POLL_INTERVAL",
        _duration(0, 3600),
        default=5,
        doc="time between each process's look at the outbox (0: this process sends nothing)",
    )
    backchannel_logout_poll_interval: int = setting(
        "OSTIARY_BACKCHANNEL_LOGOUT_POLL_INTERVAL",
        _duration(0, 3600),
        default=5,
        doc="time between each process's look at the queue of back-channel logout notices; a "
        "session ended in the process is announced at once (0: this process posts none)",
    )

    # The first administrator, created once at startup when both are set.
    admin_email: str | None = setting(
        "OSTIARY_ADMIN_EMAIL",
        _email,
        default=None,
        doc="with `OSTIARY_ADMIN_PASSWORD`, the first administrator, created once at startup (username = the address)",
    )
    admin_password: str | None = setting(
        "OSTIARY_ADMIN_PASSWORD",
        _printable(1024),
        default=None,
        secret=True,
        doc="their first password, which they must change after signing in",
    )

    # Branding: the pages and mails (docs/branding.md).
    brand_name: str = setting(
        "OSTIARY_BRAND_NAME",
        brand.name,
        default="Ostiary",
        doc="the name the pages and mails show: page titles, the brand line, the footer, the From header",
    )
    brand_logo: brand.Asset | None = setting(
        "OSTIARY_BRAND_LOGO",
        brand.logo,
        default=None,
        doc="a PNG, JPEG, WebP or SVG file (at most 256 KiB), read at startup and shown beside the name, "
        "served at `/static/brand/logo`",
    )
    brand_color: str | None = setting(
        "OSTIARY_BRAND_COLOR",
        brand.light_color,
        default=None,
        shown="`#2b59c3`",
        doc="the accent (links, primary buttons) in light mode, `#rrggbb`; refused below 4.5:1 against the "
        "light backgrounds (button text on it is white)",
    )
    brand_color_dark: str | None = setting(
        "OSTIARY_BRAND_COLOR_DARK",
        brand.dark_color,
        default=None,
        shown="(derived)",
        doc="the accent in dark mode, refused below 4.5:1 against the dark backgrounds (button text on it is "
        "dark); unset: `OSTIARY_BRAND_COLOR` lightened just enough to pass, or `#8fb0ff` without it",
    )
    brand_stylesheet: brand.Asset | None = setting(
        "OSTIARY_BRAND_STYLESHEET",
        brand.stylesheet,
        default=None,
        doc="a CSS file (UTF-8, at most 256 KiB) served at `/static/brand/custom.css` and linked after the "
        "built-in styles; it may use only this server's URLs and `data:` images",
    )

    @property
    def signing_algorithms(self) -> tuple[str, ...]:
        """The algorithms that always have an active signing key: every one a client may
        register for its ID tokens and access tokens (``ACCESS_TOKEN_ALGS``: RS256, the
        default, PS256 and ES256), ``OSTIARY_ACCESS_TOKEN_ALG`` among them. Ed25519 (ID
        tokens only) signs once an operator makes a key for it."""
        return ACCESS_TOKEN_ALGS

    @property
    def shared_database(self) -> bool:
        """The database is a server that several machines may share (PostgreSQL), not the
        embedded file of one machine: what they share (keys at rest, say) must match."""
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
        return self.mail_from or formataddr((self.brand_name, f"no-reply@{urlsplit(self.issuer).hostname}"))

    @property
    def authenticator_issuer(self) -> str:
        """The issuer of TOTP secrets (the otpauth URI's label and ``issuer``), which
        authenticator apps show: ``OSTIARY_TOTP_ISSUER``, else the brand name, whose colons
        the label cannot hold."""
        return self.totp_issuer or self.brand_name.replace(":", "").strip() or "Ostiary"

    def endpoint(self, path: str) -> str:
        """The absolute URL of one of our endpoints (``path`` starts with ``/``)."""
        return self.issuer + path

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> Settings:
        """Build settings from ``environ``; ``overrides`` (e.g. CLI flags) win over it.

        Raises :class:`SettingsError` naming every variable whose value is invalid.
        """
        reader = _Reader(environ)
        values = {field.name: reader.read(variable, field.default) for field, variable in _declared()}
        _override(values, overrides, reader.problems)
        if not environ.get("OSTIARY_ISSUER"):  # the issuer a newcomer reaches: where it listens
            values["issuer"] = f"http://127.0.0.1:{values['port']}"
        _check_admin(values, reader.problems)
        _check_mail(values, reader.problems)
        _check_profile(values, reader.problems)
        if values["metrics_port"] and values["metrics_port"] == values["port"]:
            problem = "must differ from OSTIARY_PORT: metrics stay off the public port"
            reader.problems.append(("OSTIARY_METRICS_PORT", problem))
        if reader.problems:
            raise SettingsError(reader.problems)
        return cls(**values)


def _declared() -> list[tuple[dataclasses.Field[Any], Variable]]:
    """Each field of :class:`Settings` with its variable, in the order they are declared."""
    return [(field, field.metadata[Variable]) for field in dataclasses.fields(Settings) if Variable in field.metadata]


def _override(values: dict[str, Any], overrides: Mapping[str, Any], problems: list[tuple[str, str]]) -> None:
    """Command-line options win over their variables; a bad one is reported by the option's name."""
    flags = {field.name: (variable, variable.flag) for field, variable in _declared() if variable.flag is not None}
    for name, raw in overrides.items():
        if raw is None:
            continue
        variable, flag = flags[name]
        # The flag wins, so the variable it replaces is no longer a problem.
        problems[:] = [problem for problem in problems if problem[0] != variable.name]
        try:
            values[name] = variable.cast(str(raw))
        except ValueError as exc:
            problems.append((flag, str(exc)))


def _check_admin(values: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    if (values["admin_email"] is None) != (values["admin_password"] is None):
        missing = "OSTIARY_ADMIN_PASSWORD" if values["admin_password"] is None else "OSTIARY_ADMIN_EMAIL"
        problems.append((missing, "the first admin needs both OSTIARY_ADMIN_EMAIL and a password"))


def _check_profile(values: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    """Settings that FAPI 2.0 bounds, under the profile for every client (a client held to
    it alone gets the bounds applied to it: docs/fapi2.md)."""
    if values["profile"] != "fapi2":
        return
    if values["auth_code_ttl"] > 60:
        problems.append(("OSTIARY_AUTH_CODE_TTL", "OSTIARY_PROFILE=fapi2 allows codes of at most 60 s"))
    if values["par_ttl"] >= 600:
        problems.append(("OSTIARY_PAR_TTL", "OSTIARY_PROFILE=fapi2 needs a request_uri to live less than 600 s"))


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

    def read(self, variable: Variable, default: Any) -> Any:
        if variable.secret:
            return self.secret(variable.name, variable.cast)
        return self.get(variable.name, variable.cast, default)

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


# The README's table.


def settings_table() -> str:
    """Every setting as a Markdown table (variable, default, meaning), in declaration order.

    README.md holds a copy between its ``settings-table`` markers; ``scripts/settings-table``
    rewrites it, and a test fails when the two differ.
    """
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for field, variable in _declared():
        name = f"`{variable.name}`" + (" (or `_FILE`)" if variable.secret else "")
        doc = variable.doc + (f" (`ostiary serve {variable.flag}`)" if variable.flag else "")
        doc = doc.replace("|", r"\|")  # a bar would end the cell
        rows.append(f"| {name} | {_shown(variable, field.default)} | {doc} |")
    return "\n".join(rows) + "\n"


def _shown(variable: Variable, default: object) -> str:
    if variable.shown is not None:
        return variable.shown
    if default is None or default == ():
        return "(none)"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(variable.cast, _Duration) and isinstance(default, int):
        return f"`{variable.cast.show(default)}`"
    return f"`{default}`"
