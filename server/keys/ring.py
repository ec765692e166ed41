"""The key ring: what one process signs with and publishes, built once per key-set change.

Private keys are decrypted when the ring is built, never per request, and the JWKS is
serialised to bytes (with its ETag) at the same time, so ``/jwks`` only copies bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import KeySet

from ..storage.keys import StoredKey
from .errors import KeyMaterialError
from .material import import_private
from .signer import CompactSigner
from .wrapping import KeyWrappers

PUBLISHED_STATES = ("next", "active", "retired")


@dataclass(frozen=True)
class KeyRing:
    #: the active signing key per algorithm, with its JWS header serialised once
    signing: dict[str, CompactSigner]
    #: every published public key, for verifying our own tokens (ID token hints, userinfo)
    verification: KeySet
    jwks_json: bytes
    jwks_etag: str
    #: (kid, state, wrapping key) of every published key: what the ring was built from
    fingerprint: tuple[tuple[str, str, str], ...]

    def signer(self, alg: str = "RS256") -> CompactSigner:
        try:
            return self.signing[alg]
        except KeyError:
            raise KeyMaterialError(f"there is no active {alg} signing key") from None

    @property
    def algorithms(self) -> list[str]:
        return sorted(self.signing)


def fingerprint(stored: Iterable[StoredKey]) -> tuple[tuple[str, str, str], ...]:
    return tuple(sorted((k.kid, k.state, k.wrapping_key_id) for k in stored if k.state in PUBLISHED_STATES))


def build_keyring(stored: Iterable[StoredKey], wrappers: KeyWrappers) -> KeyRing:
    rows = [row for row in stored if row.state in PUBLISHED_STATES]
    signing = {row.alg: CompactSigner(import_private(row, wrappers), row.alg) for row in rows if row.state == "active"}
    if "RS256" not in signing:
        raise KeyMaterialError("the database holds no active RS256 signing key")
    published = [public_jwk(row) for row in rows]
    body = json.dumps({"keys": published}, separators=(",", ":"), sort_keys=True).encode()
    etag = strong_etag(body)
    verification = KeySet.import_key_set({"keys": published})
    return KeyRing(signing, verification, body, etag, fingerprint(rows))


def strong_etag(body: bytes) -> str:
    """An ETag for pre-serialised bytes (the JWKS, the discovery document)."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def public_jwk(row: StoredKey) -> dict[str, Any]:
    return {**row.public_jwk, "kid": row.kid, "alg": row.alg, "use": "sig"}
