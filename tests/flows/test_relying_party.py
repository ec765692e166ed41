"""An outside relying-party library signs in: Authlib's OAuth client does PKCE, and the ID
token is validated the way Authlib's OpenID client does it, against ``/jwks``."""

from __future__ import annotations

import secrets

import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.flows.conftest import SignIn
from tests.oidc import REDIRECT_URI

pytestmark = pytest.mark.anyio


async def test_authlib_client_signs_in_with_pkce_and_validates_the_id_token(signin: SignIn) -> None:
    metadata = (await signin.http.get("/.well-known/openid-configuration")).json()
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    client = AsyncOAuth2Client(
        client_id=signin.rp.client_id,
        client_secret=signin.rp.client_secret,
        scope="openid profile email",
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )
    verifier = generate_token(64)
    nonce = secrets.token_urlsafe(16)
    async with client:
        url, state = client.create_authorization_url(
            metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce
        )
        page = await signin.http.get(url)
        page = await signin.browser.sign_in(page, signin.username)
        callback = await signin.browser.submit(page, decision="allow")
        assert callback.status_code == 303
        token = await client.fetch_token(
            metadata["token_endpoint"],
            authorization_response=callback.headers["location"],
            code_verifier=verifier,
            state=state,
        )
        jwks = KeySet.import_key_set((await client.get(metadata["jwks_uri"])).json())

    decoded = jwt.decode(token["id_token"], jwks, algorithms=metadata["id_token_signing_alg_values_supported"])
    claims = CodeIDToken(
        decoded.claims,
        decoded.header,
        {"iss": {"values": [metadata["issuer"]]}},
        {"nonce": nonce, "client_id": signin.rp.client_id, "access_token": token["access_token"]},
    )
    claims.validate(leeway=60)  # iss, aud, exp, iat, nonce, at_hash, auth_time
    assert claims["preferred_username"] == "alice"

    async with AsyncOAuth2Client(token=token) as api:
        info = (await api.get(metadata["userinfo_endpoint"])).json()
    assert info["sub"] == claims["sub"]
    assert info["email"] == "alice@example.com"
