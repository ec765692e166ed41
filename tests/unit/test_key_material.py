"""Signing keys out of storage: ``new_key`` seals a fresh key, ``import_private`` opens it
for signing, for every algorithm; what decrypts but is not the key its row names is refused."""

from __future__ import annotations

import dataclasses

import pytest
from joserfc import jws
from joserfc.jwk import ECKey, KeySet

from server.keys.errors import KeyMaterialError
from server.keys.material import import_private, new_key
from server.keys.wrapping import KeyWrapper, KeyWrappers
from server.storage.keys import StoredKey

WRAPPER = KeyWrapper("the-key-encryption-secret-of-these-tests-0123")
WRAPPERS = KeyWrappers(WRAPPER)


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "Ed25519"])
def test_a_sealed_key_opens_to_one_that_signs_for_its_public_half(alg: str) -> None:
    row = new_key(WRAPPER, alg=alg, rsa_bits=2048, state="active")

    key = import_private(row, WRAPPERS)

    assert key.kid == row.kid == key.thumbprint()
    assert key.as_dict(private=False) == {**row.public_jwk, "kid": row.kid, "alg": alg, "use": "sig"}
    signed = jws.serialize_compact({"alg": alg}, b"payload", key, algorithms=[alg])
    public = KeySet.import_key_set({"keys": [{**row.public_jwk, "kid": row.kid}]})
    assert jws.deserialize_compact(signed, public, algorithms=[alg]).payload == b"payload"


def sealed(row: StoredKey, pem: bytes) -> StoredKey:
    return dataclasses.replace(row, private_key_enc=WRAPPER.wrap(pem, associated=row.kid))


def test_an_rsa_row_holding_another_kind_of_key_is_refused() -> None:
    row = new_key(WRAPPER, alg="RS256", rsa_bits=2048, state="active")
    other = ECKey.generate_key("P-256", private=True).as_pem(private=True)

    with pytest.raises(KeyMaterialError, match=f"{row.kid} is not an RSA key"):
        import_private(sealed(row, other), WRAPPERS)


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_a_row_whose_sealed_bytes_are_no_key_is_corrupt(alg: str) -> None:
    row = new_key(WRAPPER, alg=alg, rsa_bits=2048, state="active")
    garbage = b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"

    with pytest.raises(KeyMaterialError, match=f"{row.kid} is corrupt"):
        import_private(sealed(row, garbage), WRAPPERS)
