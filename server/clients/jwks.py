"""A client's public keys (RFC 7591 §2 ``jwks``, ``jwks_uri``): checked when registered,
fetched and cached when used.

Keys registered inline are read from the client's snapshot. Keys at a ``jwks_uri`` are
fetched with httpx and kept per process for as long as the answer's ``Cache-Control:
max-age`` (or ``Expires``) says, within one minute and one day (five minutes when it says
nothing). A ``kid`` the cached set lacks means the client rotated its keys: the set is
fetched again at once, at most every :data:`REFETCH_INTERVAL` seconds per URI, so random
``kid`` values cannot make the server fetch for every request. A fetch that fails keeps
serving the keys fetched before, for up to a day.

A fetch is the server calling out to an address a client chose, so it is bounded: five
seconds for the whole exchange, 64 KiB of answer, no redirects, and no address of the
server's own networks (loopback, private, link-local, reserved), neither as resolved
before connecting nor as connected to, unless ``OSTIARY_JWKS_URI_ALLOW_PRIVATE`` says so.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import ipaddress
import json
import logging
import math
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet, RSAKey

from ..settings import LOOPBACK_HOSTS
from ..storage.clients import StoredClient
from .errors import ClientRegistrationError

log = logging.getLogger("ostiary.clients.jwks")

#: what a client signs with, its ``private_key_jwt`` assertions (``token_endpoint_auth_signing_alg``)
#: and its DPoP proofs alike: asymmetric only
ASSERTION_ALGS = ("RS256", "PS256", "ES256")
#: the type of key each of them needs
KEY_TYPES: dict[str, type[Key]] = {"RS256": RSAKey, "PS256": RSAKey, "ES256": ECKey}
#: the most a JWK Set may weigh, inline or fetched
MAX_BYTES = 64 * 1024
MAX_KEYS = 20
#: the whole of one fetch, connection to the last byte
TIMEOUT = 5.0
#: how long a fetched set is used when its answer says nothing, and the bounds of what it may say
DEFAULT_TTL = 300.0
MIN_TTL, MAX_TTL = 60.0, 86400.0
#: the least time between two fetches of one URI for an unknown ``kid``
REFETCH_INTERVAL = 10.0
#: how long keys fetched before serve while the URI fails
STALE_FOR = 86400.0
#: members that only a private or symmetric key has
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.IGNORECASE)


class JwksUnavailable(Exception):
    """The client's keys could not be had (fetch refused, failed or malformed)."""


def checked_jwks(document: Any, field: str = "jwks") -> dict[str, Any]:
    """``document`` if it is a JWK Set of public RSA (2048 bits or more) or P-256 keys
    (RFC 7517 §5), as a client registers it; ClientRegistrationError naming ``field`` otherwise."""
    try:
        return _public_key_set(document)
    except ValueError as error:
        raise ClientRegistrationError(field, str(error)) from None


def checked_jwks_uri(uri: str, field: str = "jwks_uri") -> str:
    """An absolute https URI without a fragment (http only on a loopback host)."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        raise ClientRegistrationError(field, f"{uri!r} is not a valid URI") from None
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.fragment or parts.username is not None:
        raise ClientRegistrationError(field, f"{uri!r} must be an absolute https URI without a fragment")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ClientRegistrationError(field, f"{uri!r} must use https (http only on loopback)")
    return uri


def _public_key_set(document: Any) -> dict[str, Any]:
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError("must be a JWK Set: an object with a keys array")
    keys = document["keys"]
    if not keys or len(keys) > MAX_KEYS:
        raise ValueError(f"must hold 1 to {MAX_KEYS} keys")
    if len(json.dumps(document)) > MAX_BYTES:
        raise ValueError(f"must be at most {MAX_BYTES} bytes")
    for key in keys:
        problem = public_key_problem(key)
        if problem is not None:
            raise ValueError(problem)
    try:
        _key_set(document)
    except (JoseError, ValueError, TypeError) as error:
        raise ValueError(f"holds a key that cannot be read ({error})") from None
    return {"keys": [dict(key) for key in keys]}


def public_key_problem(key: Any) -> str | None:
    """What makes the JWK ``key`` unfit as a client's public key, or None: it must be public
    (no private or symmetric member), RSA of 2048 bits or more, or EC P-256."""
    if not isinstance(key, Mapping) or _PRIVATE_MEMBERS & set(key):
        return "must hold public keys only (no private or symmetric key)"
    if key.get("kty") not in ("RSA", "EC") or key.get("kty") == "EC" and key.get("crv") != "P-256":
        return "keys must be RSA or EC P-256"
    if key["kty"] == "RSA" and modulus_bits(key.get("n")) < 2048:
        return "RSA keys must have 2048 bits or more"
    return None


def numeric_date(value: Any) -> float | None:
    """A JWT NumericDate (RFC 7519 §2) as a float, or None for anything else: not a number,
    a boolean, NaN, an infinity, or an integer beyond what a float holds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def modulus_bits(n: Any) -> int:
    """The size of an RSA key from its ``n`` (0 when unreadable), read before joserfc, which
    only warns about a small key."""
    if not isinstance(n, str):
        return 0
    try:
        return int.from_bytes(base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))).bit_length()
    except ValueError:
        return 0


@dataclass
class _Fetched:
    keys: KeySet
    kids: frozenset[str | None]
    fresh_until: float
    fetched_at: float


class ClientKeySets:
    """The key sets of the clients this process has seen, inline or fetched."""

    def __init__(self, *, allow_private: bool, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.allow_private = allow_private
        self._transport = transport
        self._inline: dict[str, tuple[Mapping[str, Any], KeySet]] = {}
        self._fetched: dict[str, _Fetched] = {}
        #: when a fetch of each URI last failed: none again within REFETCH_INTERVAL
        self._failed: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def key_set(self, client: StoredClient, kid: str | None) -> KeySet:
        """The keys ``client`` signs with; a set holding ``kid`` when there is one to be had."""
        if client.jwks is not None:
            return self._inline_keys(client)
        if not client.jwks_uri:
            raise JwksUnavailable(f"client {client.client_id} has no keys")
        return await self._uri_keys(client.jwks_uri, kid)

    def _inline_keys(self, client: StoredClient) -> KeySet:
        assert client.jwks is not None
        cached = self._inline.get(client.client_id)
        if cached is not None and cached[0] is client.jwks:
            return cached[1]
        keys = _key_set(client.jwks)
        if len(self._inline) >= 10_000:
            self._inline.clear()
        self._inline[client.client_id] = (client.jwks, keys)
        return keys

    async def _uri_keys(self, uri: str, kid: str | None) -> KeySet:
        now = time.monotonic()
        entry = self._fetched.get(uri)
        if entry is not None and now < entry.fresh_until and (kid in entry.kids or kid is None):
            return entry.keys
        if len(self._locks) >= 10_000:
            self._locks.clear()  # a holder keeps its lock; at worst two fetches of one URI
        lock = self._locks.setdefault(uri, asyncio.Lock())
        async with lock:  # one fetch at a time per URI; the others take its result
            entry = self._fetched.get(uri)
            now = time.monotonic()
            if entry is not None and now < entry.fresh_until and (kid in entry.kids or kid is None):
                return entry.keys
            if entry is not None and now < entry.fresh_until and now - entry.fetched_at < REFETCH_INTERVAL:
                return entry.keys  # an unknown kid, fetched a moment ago: the signature will fail
            stale = entry if entry is not None and now - entry.fetched_at < STALE_FOR else None
            if now - self._failed.get(uri, -REFETCH_INTERVAL) < REFETCH_INTERVAL:
                if stale is not None:
                    return stale.keys
                raise JwksUnavailable("the last fetch failed a moment ago")
            try:
                entry = await self._fetch(uri)
            except JwksUnavailable as error:
                self._remember(self._failed, uri, now)
                if stale is not None:
                    log.warning("jwks_uri %s failed (%s): using the keys fetched before", uri, error)
                    return stale.keys
                raise
            self._failed.pop(uri, None)
            self._remember(self._fetched, uri, entry)
            return entry.keys

    @staticmethod
    def _remember(cache: dict[str, Any], uri: str, value: Any) -> None:
        if len(cache) >= 10_000:
            cache.clear()
        cache[uri] = value

    async def _fetch(self, uri: str) -> _Fetched:
        try:
            async with asyncio.timeout(TIMEOUT):
                return await self._fetch_unbounded(uri)
        except TimeoutError:
            raise JwksUnavailable(f"no answer within {TIMEOUT:g} s") from None
        except httpx.HTTPError as error:
            raise JwksUnavailable(f"{type(error).__name__}") from None

    async def _fetch_unbounded(self, uri: str) -> _Fetched:
        url, extensions = uri, {}
        headers = {"Accept": "application/jwk-set+json, application/json"}
        if not self.allow_private:
            # connect to the very address vetted, not to what the name resolves to a moment
            # later (DNS rebinding): the name goes in Host and, for TLS, in SNI and the
            # certificate check
            parts = urlsplit(uri)
            host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
            address = await _public_address(host, port)
            literal = f"[{address}]" if ":" in address else address
            url = urlunsplit(parts._replace(netloc=f"{literal}:{port}"))
            headers["Host"] = parts.netloc.rpartition("@")[2]
            extensions = {"sni_hostname": host}
        async with (
            httpx.AsyncClient(transport=self._transport, follow_redirects=False, trust_env=False) as http,
            http.stream("GET", url, headers=headers, extensions=extensions) as response,
        ):
            if not self.allow_private:
                _refuse_peer(response)
            if response.status_code != 200:
                raise JwksUnavailable(f"HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_BYTES:
                    raise JwksUnavailable(f"more than {MAX_BYTES} bytes")
            lifetime = _lifetime(response.headers)
        try:
            document = _public_key_set(json.loads(body))
        except (ValueError, RecursionError) as error:  # json.JSONDecodeError is a ValueError
            raise JwksUnavailable(f"not a JWK Set of public keys: {type(error).__name__}") from None
        keys = _key_set(document)
        now = time.monotonic()
        kids = frozenset(key.kid for key in keys.keys)
        return _Fetched(keys, kids, now + lifetime, now)


def _key_set(document: Mapping[str, Any]) -> KeySet:
    return KeySet.import_key_set(cast(Any, dict(document)))


def _lifetime(headers: httpx.Headers) -> float:
    """Seconds to keep an answer: its ``max-age``, else its ``Expires``, within the bounds."""
    ttl = DEFAULT_TTL
    match = _MAX_AGE.search(headers.get("cache-control", ""))
    if match:
        ttl = float(match.group(1))
    elif "expires" in headers:
        try:
            expires = email.utils.parsedate_to_datetime(headers["expires"])
            ttl = expires.timestamp() - time.time()
        except (TypeError, ValueError):
            pass
    return min(max(ttl, MIN_TTL), MAX_TTL)


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def own_network(address: str) -> bool:
    """Whether ``address`` is one of the server's own networks (loopback, private,
    link-local, reserved...), an IPv4 address inside an IPv6 one (mapped, NAT64, 6to4,
    Teredo) judged by the IPv4 address; anything unreadable counts as one."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64:
            return own_network(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            return not embedded.is_global
    return not ip.is_global


async def _public_address(host: str, port: int) -> str:
    """An address ``host`` resolves to, if every address it resolves to is public."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise JwksUnavailable(f"cannot resolve {host!r}: {error}") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses or any(own_network(address) for address in addresses):
        raise JwksUnavailable(f"{host!r} is an address of the server's own networks")
    return addresses[0]


def _refuse_peer(response: httpx.Response) -> None:
    """The address actually connected to, lest the name resolve elsewhere between the check
    and the connection (DNS rebinding)."""
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if peer is None or own_network(str(peer[0])):
        raise JwksUnavailable("connected to an address of the server's own networks")
