"""Browser-facing secrets: session tokens, CSRF tokens, interaction handles.

Every value sent to a browser is random (256 bits) and stored, when it is stored, as its
SHA-256. CSRF tokens are the double-submit kind: an HMAC, under a key derived from the
key-encryption secret (the same on every server), of a random cookie the browser holds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


def new_token() -> str:
    return secrets.token_urlsafe(32)


class CsrfTokens:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def token_for(self, browser_token: str) -> str:
        mac = hmac.new(self._key, b"csrf|" + browser_token.encode("utf-8"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def valid(self, browser_token: str | None, submitted: str | None) -> bool:
        if not browser_token or not submitted:
            return False
        # Bytes: compare_digest refuses str with non-ASCII characters (a forged token may have them).
        return hmac.compare_digest(self.token_for(browser_token).encode(), submitted.encode("utf-8"))
