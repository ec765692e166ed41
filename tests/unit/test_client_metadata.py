"""Client metadata in RFC 7591's names (``server/clients/metadata.py``), and the rules of
registration for what RFC 7591 adds: the authentication method, the response types and the
URIs shown to users."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from joserfc.jwk import ECKey, RSAKey

from server.clients.errors import ClientRegistrationError
from server.clients.jwks import own_network
from server.clients.metadata import NAMES, document_of, fields_from, with_defaults
from server.clients.secrets import secret_digest
from server.clients.service import validated
from server.storage.clients import StoredClient

REDIRECT_URI = "https://rp.example.com/callback"

#: every name, as a client would send it
DOCUMENT: dict[str, Any] = {
    "client_name": "Photo Prints",
    "redirect_uris": [REDIRECT_URI],
    "post_logout_redirect_uris": ["https://rp.example.com/signed-out"],
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "token_endpoint_auth_method": "client_secret_post",
    "scope": "openid profile",
    "allowed_cors_origins": [],
    "backchannel_logout_uri": "https://rp.example.com/backchannel",
    "backchannel_logout_session_required": True,
    "logo_uri": "https://rp.example.com/logo.png",
    "policy_uri": "https://rp.example.com/privacy",
    "tos_uri": "https://rp.example.com/terms",
    "access_token_signed_response_alg": "ES256",
    "dpop_bound_access_tokens": True,
}


def stored(**changes: Any) -> StoredClient:
    client = StoredClient(
        client_id="client-1",
        name="Photo Prints",
        secret_digest=secret_digest("s" * 43),
        grant_types=("authorization_code",),
        scopes=("openid",),
        redirect_uris=(REDIRECT_URI,),
        audiences=(),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        disabled_at=None,
    )
    return replace(client, **changes)


#: the names a secret's client cannot have: a private_key_jwt client's keys (RFC 7591 §2), and
#: RFC 9126 §6's flag
KEYED: dict[str, Any] = {
    "token_endpoint_auth_method": "private_key_jwt",
    "jwks_uri": "https://rp.example.com/jwks.json",
    "token_endpoint_auth_signing_alg": "ES256",
    "require_pushed_authorization_requests": True,
}


def test_the_vocabulary_is_rfc_7591s() -> None:
    assert set(NAMES) == set(DOCUMENT) | set(KEYED) | {"jwks"}


def test_a_document_round_trips_through_a_stored_client() -> None:
    client = validated(stored(**fields_from(DOCUMENT)))
    assert document_of(client) == DOCUMENT


def test_scope_is_a_space_separated_string() -> None:
    assert fields_from({"scope": " openid  email "})["scopes"] == ("openid", "email")


def test_unknown_names_are_refused_naming_them() -> None:
    with pytest.raises(ClientRegistrationError) as caught:
        fields_from({**DOCUMENT, "contacts": [], "software_id": "x"})
    assert caught.value.field == "contacts, software_id"
    assert "unknown client metadata" in str(caught.value)


def test_unknown_names_may_be_ignored() -> None:
    assert fields_from({"contacts": ["a@example.com"], "client_name": "x"}, ignore_unknown=True) == {"name": "x"}


@pytest.mark.parametrize(
    "name, value",
    [
        ("redirect_uris", REDIRECT_URI),
        ("grant_types", [1]),
        ("scope", ["openid"]),
        ("logo_uri", 5),
        ("backchannel_logout_session_required", "true"),
        ("client_name", None),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_it(name: str, value: Any) -> None:
    with pytest.raises(ClientRegistrationError) as caught:
        fields_from({name: value})
    assert caught.value.field == name


def test_defaults_fill_what_a_registration_leaves_out() -> None:
    assert with_defaults({"redirect_uris": [REDIRECT_URI], "grant_types": None}) == {
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic",
        "redirect_uris": [REDIRECT_URI],
    }


def test_absent_uris_are_left_out_of_the_document() -> None:
    document = document_of(validated(stored()))
    for name in ("logo_uri", "policy_uri", "tos_uri", "backchannel_logout_uri"):
        assert name not in document


# The rules of registration


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_a_client_with_a_secret_sends_it_in_either_way(method: str) -> None:
    assert validated(stored(token_endpoint_auth_method=method)).token_endpoint_auth_method == method


def test_a_client_with_a_secret_cannot_use_none() -> None:
    with pytest.raises(ClientRegistrationError, match="client_secret_basic or client_secret_post") as caught:
        validated(stored(token_endpoint_auth_method="none"))
    assert caught.value.metadata_name == "token_endpoint_auth_method"


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_a_public_client_uses_none(method: str) -> None:
    assert validated(stored(secret_digest=None, token_endpoint_auth_method="none")).is_public
    with pytest.raises(ClientRegistrationError, match="no secret"):
        validated(stored(secret_digest=None, token_endpoint_auth_method=method))


@pytest.mark.parametrize("method", ["client_secret_jwt", "tls_client_auth", "self_signed_tls_client_auth", ""])
def test_other_methods_are_not_supported(method: str) -> None:
    with pytest.raises(ClientRegistrationError, match="not supported"):
        validated(stored(token_endpoint_auth_method=method))


@pytest.mark.parametrize("response_type", ["token", "id_token", "code id_token", "none"])
def test_only_the_code_response_type_is_served(response_type: str) -> None:
    with pytest.raises(ClientRegistrationError, match="not supported") as caught:
        validated(stored(response_types=("code", response_type)))
    assert caught.value.metadata_name == "response_types"


def test_response_types_follow_the_grant_types() -> None:
    assert validated(stored(response_types=())).response_types == ("code",)
    machine = stored(grant_types=("client_credentials",), redirect_uris=(), response_types=("code",))
    assert validated(machine).response_types == ()


@pytest.mark.parametrize("name", ["logo_uri", "policy_uri", "tos_uri"])
@pytest.mark.parametrize(
    "uri",
    [
        "http://rp.example.com/x",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "/relative/logo.png",
        "https://",
        "https://user@rp.example.com/x",
        'https://rp.example.com/"onerror="x',
        "https://rp.example.com/a b",
        "https://rp.example.com:99999/x",
    ],
)
def test_uris_shown_to_users_are_absolute_https(name: str, uri: str) -> None:
    with pytest.raises(ClientRegistrationError) as caught:
        validated(stored(**{name: uri}))
    assert caught.value.metadata_name == name


@pytest.mark.parametrize("uri", ["https://rp.example.com/logo.png?v=2", "http://127.0.0.1:8080/logo.png"])
def test_https_or_loopback_http_uris_are_kept(uri: str) -> None:
    assert validated(stored(logo_uri=uri)).logo_uri == uri


def test_an_empty_uri_is_none() -> None:
    assert validated(stored(policy_uri="  ")).policy_uri is None


def test_an_error_names_the_metadata_in_rfc_7591_terms() -> None:
    with pytest.raises(ClientRegistrationError) as caught:
        validated(stored(redirect_uris=("http://rp.example.com/cb",)))
    assert caught.value.field == "--redirect-uri"
    converted = caught.value.in_metadata_terms()
    assert converted.field == "redirect_uris" and str(converted).startswith("redirect_uris: ")


DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"


def test_a_device_client_may_have_refresh_tokens_and_require_a_second_factor() -> None:
    # a television app: no redirect URI, no code flow
    device = stored(grant_types=(DEVICE_CODE, "refresh_token"), redirect_uris=(), require_mfa=True)
    client = validated(device)
    assert client.grant_types == (DEVICE_CODE, "refresh_token") and client.require_mfa


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"grant_types": ("client_credentials", "refresh_token"), "redirect_uris": ()}, "--grant-type"),
        ({"grant_types": ("client_credentials",), "redirect_uris": (), "require_mfa": True}, "--require-mfa"),
    ],
)
def test_refresh_tokens_and_second_factors_need_a_grant_a_user_signs_in_through(
    changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(ClientRegistrationError) as caught:
        validated(stored(**changes))
    assert caught.value.field == field


# private_key_jwt: the client's keys (RFC 7591 §2 jwks, jwks_uri; RFC 7523 §2.2).

RSA_PUBLIC = RSAKey.generate_key(2048).as_dict(private=False)


def _weak_rsa() -> dict[str, Any]:
    """A 1024-bit RSA public key, made with cryptography (joserfc warns at making one)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    numbers = rsa.generate_private_key(65537, 1024).public_key().public_numbers()

    def b64(value: int) -> str:
        return base64.urlsafe_b64encode(value.to_bytes((value.bit_length() + 7) // 8)).rstrip(b"=").decode()

    return {"kty": "RSA", "n": b64(numbers.n), "e": b64(numbers.e)}


EC_PUBLIC = ECKey.generate_key("P-256").as_dict(private=False)


def keyed(**changes: Any) -> StoredClient:
    return stored(secret_digest=None, token_endpoint_auth_method="private_key_jwt", **changes)


def test_a_private_key_jwt_client_has_its_keys_inline_or_at_a_uri() -> None:
    inline = validated(keyed(jwks={"keys": [RSA_PUBLIC, EC_PUBLIC]}, token_endpoint_auth_signing_alg="ES256"))
    assert not inline.is_public and inline.jwks == {"keys": [RSA_PUBLIC, EC_PUBLIC]}
    at_uri = validated(keyed(jwks_uri="https://rp.example.com/jwks.json"))
    assert at_uri.jwks_uri == "https://rp.example.com/jwks.json" and at_uri.token_endpoint_auth_signing_alg is None
    assert document_of(inline)["jwks"] == {"keys": [RSA_PUBLIC, EC_PUBLIC]}
    assert fields_from(KEYED)["jwks_uri"] == KEYED["jwks_uri"]


@pytest.mark.parametrize(
    "changes, name, text",
    [
        ({}, "jwks_uri", "jwks or jwks_uri"),
        ({"jwks": {"keys": [EC_PUBLIC]}, "jwks_uri": "https://rp.example.com/k"}, "jwks_uri", "jwks or jwks_uri"),
        ({"jwks": {"keys": [RSAKey.generate_key(2048).as_dict(private=True)]}}, "jwks", "public keys only"),
        ({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}, "jwks", "public keys only"),
        ({"jwks": {"keys": [_weak_rsa()]}}, "jwks", "2048 bits"),
        ({"jwks": {"keys": [ECKey.generate_key("P-384").as_dict(private=False)]}}, "jwks", "EC P-256"),
        ({"jwks": {"keys": []}}, "jwks", "1 to 20 keys"),
        ({"jwks": {"kty": "RSA"}}, "jwks", "JWK Set"),
        ({"jwks_uri": "http://rp.example.com/jwks.json"}, "jwks_uri", "https"),
        ({"jwks_uri": "https://rp.example.com/jwks.json#frag"}, "jwks_uri", "fragment"),
        (
            {"jwks_uri": "https://rp.example.com/k", "token_endpoint_auth_signing_alg": "HS256"},
            "token_endpoint_auth_signing_alg",
            "RS256, PS256, ES256",
        ),
    ],
)
def test_a_private_key_jwt_clients_keys_must_be_usable(changes: dict[str, Any], name: str, text: str) -> None:
    with pytest.raises(ClientRegistrationError, match=text) as caught:
        validated(keyed(**changes))
    assert caught.value.metadata_name == name


def test_keys_are_only_for_private_key_jwt_and_such_a_client_has_no_secret() -> None:
    with pytest.raises(ClientRegistrationError, match="private_key_jwt clients") as caught:
        validated(stored(jwks_uri="https://rp.example.com/jwks.json"))
    assert caught.value.metadata_name == "jwks_uri"
    with pytest.raises(ClientRegistrationError, match="a client with a secret sends it"):
        validated(stored(token_endpoint_auth_method="private_key_jwt", jwks={"keys": [EC_PUBLIC]}))


@pytest.mark.parametrize(
    "address, own",
    [
        ("8.8.8.8", False),
        ("2001:4860:4860::8888", False),
        ("64:ff9b::808:808", False),  # NAT64 of a public address
        ("10.0.0.1", True),
        ("127.0.0.1", True),
        ("169.254.169.254", True),  # cloud metadata
        ("::1", True),
        ("fe80::1%eth0", True),
        ("::ffff:10.0.0.1", True),  # IPv4-mapped
        ("64:ff9b::a00:1", True),  # NAT64 of 10.0.0.1
        ("2002:a00:1::1", True),  # 6to4 of 10.0.0.1
        ("not an address", True),
    ],
)
def test_the_servers_own_networks_are_known_inside_ipv6_too(address: str, own: bool) -> None:
    assert own_network(address) is own
