"""The FAPI 2.0 Security Profile's rules on a client's registration (server/clients/fapi2.py),
on SQLite and PostgreSQL; the profile over HTTP is tests/flows/test_fapi2.py."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc.jwk import ECKey

from server.clients import service
from server.clients.errors import ClientRegistrationError
from tests.helpers import Db
from tests.oidc import REDIRECT_URI

pytestmark = pytest.mark.anyio

KEYS = {"keys": [ECKey.generate_key("P-256").as_dict(private=False)]}


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"token_endpoint_auth_method": "client_secret_basic", "jwks": None}, "--token-endpoint-auth-method"),
        ({"token_endpoint_auth_method": "none", "jwks": None}, "--token-endpoint-auth-method"),
        ({"token_endpoint_auth_signing_alg": "RS256"}, "--token-endpoint-auth-signing-alg"),
        ({"id_token_alg": "RS256"}, "--id-token-alg"),
        ({"access_token_alg": "RS256"}, "--access-token-alg"),
        ({"grant_types": ["urn:ietf:params:oauth:grant-type:device_code"]}, "--grant-type"),
        ({"redirect_uris": ["com.example.app:/callback"]}, "--redirect-uri"),
        ({"redirect_uris": ["https://[::1/cb"]}, "--redirect-uri"),
    ],
)
async def test_registration_refuses_what_the_profile_rules_out(db: Db, options: dict[str, Any], option: str) -> None:
    metadata: dict[str, Any] = {
        "name": "bank app",
        "grant_types": ["authorization_code", "refresh_token"],
        "scopes": ["openid"],
        "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": KEYS,
        "fapi2": True,
        **options,
    }
    with pytest.raises(ClientRegistrationError) as raised:
        await db(lambda s: service.register_client(s, **metadata))
    assert raised.value.field == option


async def test_a_fapi2_client_left_without_algorithms_gets_ps256(db: Db) -> None:
    client, secret = await db(
        lambda s: service.register_client(
            s,
            name="bank app",
            grant_types=["authorization_code"],
            scopes=["openid"],
            redirect_uris=[REDIRECT_URI],
            token_endpoint_auth_method="private_key_jwt",
            jwks=KEYS,
            fapi2=True,
        )
    )
    assert secret is None and client.fapi2
    assert (client.id_token_alg, client.access_token_alg) == ("PS256", "PS256")
