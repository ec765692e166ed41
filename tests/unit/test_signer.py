"""CompactSigner: the JWS that joserfc would have produced, header serialised once."""

from __future__ import annotations

import base64
import json

import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import ECKey, KeySet, RSAKey

from server.keys.signer import CompactSigner


def _segment(token: str, index: int) -> dict[str, object]:
    part = token.split(".")[index]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


@pytest.mark.parametrize(
    ("alg", "key"),
    [
        ("RS256", RSAKey.generate_key(2048, parameters={"kid": "r1"})),
        ("ES256", ECKey.generate_key("P-256", parameters={"kid": "e1"})),
    ],
)
def test_tokens_verify_with_joserfc_and_name_their_key(alg: str, key: RSAKey | ECKey) -> None:
    signer = CompactSigner(key, alg)
    claims = {"iss": "https://id.example.com", "sub": "zoë", "aud": ["a", "b"], "exp": 2_000_000_000}
    token = signer.sign(claims, typ="at+jwt")
    assert _segment(token, 0) == {"alg": alg, "kid": key.kid, "typ": "at+jwt"}
    decoded = jwt.decode(token, KeySet([key]), algorithms=[alg])
    assert decoded.claims == claims
    assert decoded.header["kid"] == key.kid
    # The cached header is per typ: another typ gets its own.
    assert _segment(signer.sign({"sub": "x"}), 0)["typ"] == "JWT"
    assert _segment(signer.sign({"sub": "x"}, typ="at+jwt"), 0)["typ"] == "at+jwt"


def test_a_token_does_not_verify_under_another_key() -> None:
    signer = CompactSigner(RSAKey.generate_key(2048, parameters={"kid": "r1"}), "RS256")
    other = RSAKey.generate_key(2048, parameters={"kid": "r1"})
    with pytest.raises(BadSignatureError):
        jwt.decode(signer.sign({"sub": "x"}), KeySet([other]), algorithms=["RS256"])


def test_a_key_without_kid_is_refused() -> None:
    with pytest.raises(ValueError, match="kid"):
        CompactSigner(RSAKey.generate_key(2048), "RS256")
