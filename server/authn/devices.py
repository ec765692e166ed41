"""Known devices: a browser that has completed a sign-in as a user (every factor the
sign-in asked for) carries a signed cookie saying so. Its failed passwords and second-factor
codes are counted apart from everyone else's, so an attacker hammering an account from
elsewhere, even one who knows the password, cannot lock its owner out of their own
browser (the Keycloak advisory GHSA-cq42-vhv7-xr7p). The password alone does not make a
browser known: each new browser would then bring a fresh second-factor counter. The cookie names one user (the last
one who signed in on this browser); it is an HMAC under a key derived from the
key-encryption secret, so any server process can check it and nobody can forge one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_VERSION = "d1"


class DeviceCookies:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def issue(self, user_id: int, device: str | None = None) -> str:
        """A cookie value for ``user_id`` (keeping the browser's device id when it has one)."""
        device_id = device or secrets.token_urlsafe(16)
        payload = f"{_VERSION}.{device_id}.{user_id}"
        return f"{payload}.{self._mac(payload)}"

    def device_id(self, value: str | None) -> str | None:
        """The device id of a genuine cookie (for whichever user)."""
        parsed = self._parse(value)
        return parsed[0] if parsed else None

    def digest_for(self, value: str | None, user_id: int) -> bytes | None:
        """The device's counter key, if the cookie is genuine and names ``user_id``; else None
        (an unknown device, counted with everyone else)."""
        parsed = self._parse(value)
        if parsed is None or parsed[1] != user_id:
            return None
        return hashlib.sha256(b"ostiary/device|" + parsed[0].encode("ascii")).digest()

    def _parse(self, value: str | None) -> tuple[str, int] | None:
        if not value or len(value) > 200:
            return None
        parts = value.split(".")
        if len(parts) != 4 or parts[0] != _VERSION or not parts[2].isascii() or not parts[2].isdigit():
            return None
        payload = ".".join(parts[:3])
        if not hmac.compare_digest(self._mac(payload).encode("ascii"), parts[3].encode("utf-8")):
            return None
        if not parts[1].isascii():
            return None
        return parts[1], int(parts[2])

    def _mac(self, payload: str) -> str:
        mac = hmac.new(self._key, payload.encode("utf-8"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")
