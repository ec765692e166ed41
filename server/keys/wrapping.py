"""Encryption of private keys at rest: AES-256-GCM under a key derived from the secret.

The 256-bit wrapping key is derived from ``OSTIARY_KEYS_SECRET`` with HKDF-SHA256, so any
long random string works as a secret. Each blob is ``version || nonce || ciphertext+tag``
and is bound to its row by the kid as associated data: a blob copied onto another row fails
to decrypt. ``key_id`` names the wrapping key (a one-way digest), so an operator is told
*which* secret a row needs instead of a bare "decryption failed".
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..settings import Settings
from .errors import KeyMaterialError

_VERSION = b"\x01"
_NONCE_BYTES = 12


def derive_key(secret: str, purpose: str) -> bytes:
    """A 256-bit key for ``purpose`` (e.g. CSRF tokens), derived from the key-encryption
    secret, so every server process and machine derives the same one."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"ostiary/{purpose}/v1".encode()).derive(
        secret.encode("utf-8")
    )


class KeyWrapper:
    def __init__(self, secret: str) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"ostiary/key-wrapping/v1").derive(
            secret.encode("utf-8")
        )
        self._aead = AESGCM(derived)
        self.key_id = hashlib.sha256(b"ostiary/key-wrapping-id/v1" + derived).hexdigest()[:16]

    def wrap(self, plaintext: bytes, *, associated: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, associated.encode("utf-8"))

    def unwrap(self, blob: bytes, *, associated: str) -> bytes:
        if blob[:1] != _VERSION or len(blob) < 1 + _NONCE_BYTES + 16:
            raise KeyMaterialError(f"the encrypted private key of {associated} is corrupt")
        nonce, ciphertext = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, ciphertext, associated.encode("utf-8"))
        except InvalidTag:
            raise KeyMaterialError(
                f"the private key of {associated} does not decrypt with this key-encryption secret"
            ) from None


class KeyWrappers:
    """The current wrapper, and the previous one while a secret change is under way.

    New keys are always wrapped under the current secret; a row wrapped under the previous
    one still unwraps, until ``ostiary keys rewrap`` moves it to the current one.
    """

    def __init__(self, current: KeyWrapper, previous: KeyWrapper | None = None) -> None:
        self.current = current
        self.previous = previous

    @property
    def key_ids(self) -> tuple[str, ...]:
        return (self.current.key_id,) + ((self.previous.key_id,) if self.previous else ())

    def for_id(self, key_id: str) -> KeyWrapper | None:
        if key_id == self.current.key_id:
            return self.current
        if self.previous is not None and key_id == self.previous.key_id:
            return self.previous
        return None


def key_wrappers(settings: Settings, secret: str) -> KeyWrappers:
    """The wrappers for ``secret`` (the current key-encryption secret, already resolved) and
    ``OSTIARY_KEYS_SECRET_PREVIOUS`` when one is set."""
    previous = KeyWrapper(settings.keys_secret_previous) if settings.keys_secret_previous else None
    return KeyWrappers(KeyWrapper(secret), previous)
