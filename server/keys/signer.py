"""Compact JWS signing with the protected header serialised once per key.

joserfc's ``jwt.encode`` validates and serialises the header and looks the key up in its
set on every call; for the access tokens of the token endpoint that was about a third of
the Python time outside the signature itself. A :class:`CompactSigner` belongs to a key
ring (built once per key-set change), keeps the base64url header segment per ``typ``, and
signs with joserfc's own algorithm model, so the output is the same JWS.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from joserfc.jwk import Key
from joserfc.jws import JWSRegistry


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


class CompactSigner:
    def __init__(self, key: Key, alg: str) -> None:
        if key.kid is None:
            raise ValueError("a signing key needs a kid")
        self.key = key
        self.alg = alg
        self.kid: str = key.kid
        self._model = JWSRegistry.algorithms[alg]
        self._headers: dict[str, bytes] = {}

    def sign(self, claims: dict[str, Any], typ: str = "JWT") -> str:
        """The compact JWS of ``claims``: ``{"alg", "kid", "typ"}`` header, compact JSON payload."""
        header = self._headers.get(typ)
        if header is None:
            header = _b64(json.dumps({"alg": self.alg, "kid": self.kid, "typ": typ}, separators=(",", ":")).encode())
            self._headers[typ] = header
        payload = _b64(json.dumps(claims, ensure_ascii=False, separators=(",", ":")).encode())
        signing_input = header + b"." + payload
        return (signing_input + b"." + _b64(self._model.sign(signing_input, self.key))).decode("ascii")
