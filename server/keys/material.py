"""Key generation and import for each signing algorithm: RS256 and PS256 (RSA, of
``OSTIARY_RSA_KEY_BITS``), ES256 (P-256), Ed25519 (EdDSA, RFC 9864).

An RSA key serves one algorithm: a PS256 key is a key of its own, with its own ``kid`` and
``"alg": "PS256"`` in the JWKS, never the RS256 key used both ways (RFC 7517 §4.4)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from joserfc.jwk import ECKey, KeyParameters, OKPKey, RSAKey

from ..storage.base import utcnow
from ..storage.keys import StoredKey
from .errors import KeyMaterialError
from .wrapping import KeyWrapper, KeyWrappers

Key = RSAKey | ECKey | OKPKey


#: the algorithms whose keys are RSA keys
RSA_ALGS = ("RS256", "PS256")


def generate(alg: str, *, rsa_bits: int) -> Key:
    if alg in RSA_ALGS:
        return RSAKey.generate_key(rsa_bits, private=True)
    if alg == "ES256":
        return ECKey.generate_key("P-256", private=True)
    if alg == "Ed25519":
        return OKPKey.generate_key("Ed25519", private=True)
    raise KeyMaterialError(f"unsupported signing algorithm {alg!r}")


def new_key(wrapper: KeyWrapper, *, alg: str, rsa_bits: int, state: str) -> StoredKey:
    """A fresh key, wrapped for storage; ``kid`` is its RFC 7638 thumbprint."""
    key = generate(alg, rsa_bits=rsa_bits)
    kid = key.thumbprint()
    now = utcnow()
    return StoredKey(
        kid=kid,
        alg=alg,
        state=state,
        public_jwk=key.as_dict(private=False),
        private_key_enc=wrapper.wrap(key.as_pem(private=True), associated=kid),
        wrapping_key_id=wrapper.key_id,
        created_at=now,
        activated_at=now if state == "active" else None,
    )


def unwrap(row: StoredKey, wrappers: KeyWrappers) -> bytes:
    wrapper = wrappers.for_id(row.wrapping_key_id)
    if wrapper is None:
        raise KeyMaterialError(
            f"signing key {row.kid} was encrypted under key-encryption secret {row.wrapping_key_id}, but the "
            f"configured secrets are {', '.join(wrappers.key_ids)}: set OSTIARY_KEYS_SECRET (or "
            f"OSTIARY_KEYS_SECRET_FILE) to the secret the keys were created with"
        )
    return wrapper.unwrap(row.private_key_enc, associated=row.kid)


def import_private(row: StoredKey, wrappers: KeyWrappers) -> Key:
    pem = unwrap(row, wrappers)
    parameters: KeyParameters = {"kid": row.kid, "alg": row.alg, "use": "sig"}
    try:
        key: Key
        if row.alg in RSA_ALGS:
            key = _import_rsa(pem, parameters)
        elif row.alg == "ES256":
            key = ECKey.import_key(pem, parameters)
        elif row.alg == "Ed25519":
            key = OKPKey.import_key(pem, parameters)
        else:
            raise KeyMaterialError(f"signing key {row.kid} has an unsupported algorithm {row.alg!r}")
    except KeyMaterialError:
        raise
    except Exception as exc:  # joserfc raises several types for unparsable key data
        raise KeyMaterialError(f"the private key of {row.kid} is corrupt: {exc}") from None
    return key


def _import_rsa(pem: bytes, parameters: KeyParameters) -> RSAKey:
    """An RSA key of ours, without OpenSSL's consistency check of its numbers (some 40 ms
    a key, paid by every process at start and at every key change). The check guards
    against a malformed key from elsewhere; these keys were generated here and come out of
    authenticated encryption (``unwrap``), so they are exactly the keys we made."""
    native = load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)
    if not isinstance(native, RSAPrivateKey):
        raise KeyMaterialError(f"the private key of {parameters.get('kid')} is not an RSA key")
    return RSAKey(native, pem, parameters)
