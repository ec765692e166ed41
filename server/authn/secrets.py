"""Browser-facing secrets: session tokens, CSRF tokens, interaction handles, and the keyed
digests of client addresses.

Every value sent to a browser is random (256 bits) and stored, when it is stored, as its
SHA-256. CSRF tokens are the double-submit kind: an HMAC, under a key derived from the
key-encryption secret (the same on every server), of a random cookie the browser holds;
that cookie is replaced when the browser signs in, so a token seen before is void after.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets


def new_token() -> str:
    return secrets.token_urlsafe(32)


def new_sid() -> str:
    """A session id: 192 random bits, never starting with ``-`` (``ostiary sessions end
    --sid -abc`` would take it for an option)."""
    return _undashed(24)


def new_grant_id() -> str:
    """A grant id: 192 random bits in 32 characters, never starting with ``-`` (``ostiary
    grants end --grant -abc`` would take it for an option)."""
    return _undashed(24)


def _undashed(nbytes: int) -> str:
    """``nbytes`` random bytes in base64url, drawn again while they begin with ``-``."""
    while (value := secrets.token_urlsafe(nbytes)).startswith("-"):
        pass
    return value


class CsrfTokens:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def token_for(self, browser_token: str) -> str:
        mac = hmac.new(self._key, b"csrf|" + browser_token.encode("utf-8"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def subkey(self, purpose: str) -> bytes:
        """A key for another purpose, derived from this one (HMAC as a PRF): the same on
        every server, and telling nothing about the CSRF key."""
        return hmac.new(self._key, b"subkey|" + purpose.encode("ascii"), hashlib.sha256).digest()

    def valid(self, browser_token: str | None, submitted: str | None) -> bool:
        if not browser_token or not submitted:
            return False
        # Bytes: compare_digest refuses str with non-ASCII characters (a forged token may have them).
        return hmac.compare_digest(self.token_for(browser_token).encode(), submitted.encode("utf-8"))


class AddressDigests:
    """Keyed digests of client addresses, for per-address limits kept in the database: the
    table never holds an address, and without the key nobody can tell which address a
    digest is (a plain hash of every IPv4 address takes minutes)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def digest(self, address: str | None) -> bytes:
        """32 bytes; every request without a known address shares one digest, and so does
        every IPv6 address of one /64 (one customer's line or one host's subnet: the
        addresses in it are the holder's to pick, one per request if they like)."""
        return hmac.new(self._key, b"address|" + network_of(address).encode("utf-8"), hashlib.sha256).digest()


def network_of(address: str | None) -> str:
    """What a per-address limit counts by: the IPv4 address, or the /64 of an IPv6 one
    (an IPv4-mapped IPv6 address is its IPv4 address); ``-`` for none or garbage."""
    try:
        parsed = ipaddress.ip_address(address or "")
    except ValueError:
        return "-"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)
