"""Key lifecycle operations that run inside one database session."""

from __future__ import annotations

from collections.abc import Iterable

from joserfc.jwk import RSAKey

from ..storage import Session, audit, keys as key_store
from ..storage.base import utcnow
from .errors import KeyMaterialError
from .wrapping import KeyWrapper


def new_rsa_key(wrapper: KeyWrapper, *, bits: int, state: str) -> key_store.StoredKey:
    """A fresh RSA key; ``kid`` is its RFC 7638 thumbprint."""
    key = RSAKey.generate_key(bits, private=True)
    kid = key.thumbprint()
    now = utcnow()
    return key_store.StoredKey(
        kid=kid,
        alg="RS256",
        state=state,
        public_jwk=key.as_dict(private=False),
        private_key_enc=wrapper.wrap(key.as_pem(private=True), associated=kid),
        wrapping_key_id=wrapper.key_id,
        created_at=now,
        activated_at=now if state == "active" else None,
    )


def ensure_active_key(session: Session, wrapper: KeyWrapper, *, bits: int) -> str | None:
    """Create an active RS256 key unless one exists; returns the new kid, or None.

    Safe when several processes start at once: the insert is conditional on the partial
    unique index, so exactly one of them creates the key.
    """
    if key_store.list_keys(session, states=("active",)):
        return None
    key = new_rsa_key(wrapper, bits=bits, state="active")
    if not key_store.insert_active_key_unless_exists(session, key):
        return None
    audit.record(session, "key.created", actor="system", subject=key.kid, details={"state": "active"})
    return key.kid


def verify_all(session: Session, wrapper: KeyWrapper) -> None:
    """Check that every key that may still be used decrypts under ``wrapper``."""
    check_wrapping(key_store.list_keys(session, states=("next", "active", "retired")), wrapper)


def check_wrapping(rows: Iterable[key_store.StoredKey], wrapper: KeyWrapper) -> None:
    for row in rows:
        if row.state == "removed":
            continue
        if row.wrapping_key_id != wrapper.key_id:
            raise KeyMaterialError(
                f"signing key {row.kid} was encrypted under key-encryption secret "
                f"{row.wrapping_key_id}, but the configured secret is {wrapper.key_id}: set "
                f"OSTIARY_KEYS_SECRET (or OSTIARY_KEYS_SECRET_FILE) to the secret the keys were created with"
            )
        wrapper.unwrap(row.private_key_enc, associated=row.kid)
