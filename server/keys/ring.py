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

from joserfc.jwk import KeySet, RSAKey

from ..storage.keys import StoredKey
from .errors import KeyMaterialError
from .wrapping import KeyWrapper

PUBLISHED_STATES = ("next", "active", "retired")


@dataclass(frozen=True)
class KeyRing:
    #: the active signing key per algorithm, each alone in a KeySet: joserfc picks a key
    #: at random from a set when the header has no kid, so a set must never hold two.
    signing: dict[str, KeySet]
    #: every published public key, for verifying our own tokens (ID token hints, userinfo)
    verification: KeySet
    jwks_json: bytes
    jwks_etag: str

    def signing_keys(self, alg: str = "RS256") -> KeySet:
        try:
            return self.signing[alg]
        except KeyError:
            raise KeyMaterialError(f"there is no active {alg} signing key") from None


def build_keyring(stored: Iterable[StoredKey], wrapper: KeyWrapper) -> KeyRing:
    signing: dict[str, KeySet] = {}
    published: list[dict[str, Any]] = []
    for row in stored:
        if row.state not in PUBLISHED_STATES:
            continue
        published.append(public_jwk(row))
        if row.state == "active":
            signing[row.alg] = KeySet([import_private(row, wrapper)])
    if "RS256" not in signing:
        raise KeyMaterialError("the database holds no active RS256 signing key")
    body = json.dumps({"keys": published}, separators=(",", ":"), sort_keys=True).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    verification = KeySet.import_key_set({"keys": published})
    return KeyRing(signing=signing, verification=verification, jwks_json=body, jwks_etag=etag)


def public_jwk(row: StoredKey) -> dict[str, Any]:
    return {**row.public_jwk, "kid": row.kid, "alg": row.alg, "use": "sig"}


def import_private(row: StoredKey, wrapper: KeyWrapper) -> RSAKey:
    pem = wrapper.unwrap(row.private_key_enc, associated=row.kid)
    try:
        return RSAKey.import_key(pem, {"kid": row.kid, "alg": row.alg, "use": "sig"})
    except Exception as exc:  # joserfc raises several types for unparsable key data
        raise KeyMaterialError(f"the private key of {row.kid} is corrupt: {exc}") from None
