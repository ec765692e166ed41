"""Discovery (RFC 8414, OIDC Discovery) and the JWKS: public, cacheable, revalidatable."""

from __future__ import annotations

import pytest

from server.keys.ring import strong_etag
from tests.flows.conftest import Live

pytestmark = pytest.mark.anyio

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"])
async def test_metadata_advertises_what_is_implemented(live: Live, path: str) -> None:
    response = await live.http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == f"public, max-age={live.settings.jwks_max_age}"
    metadata = response.json()
    assert metadata["issuer"] == live.settings.issuer
    assert metadata["token_endpoint"] == live.base_url + "/token"
    assert metadata["jwks_uri"] == live.base_url + "/jwks"
    assert metadata["authorization_endpoint"] == live.base_url + "/authorize"
    assert metadata["userinfo_endpoint"] == live.base_url + "/userinfo"
    assert metadata["end_session_endpoint"] == live.base_url + "/logout"
    assert metadata["grant_types_supported"] == [
        "authorization_code",
        "client_credentials",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:device_code",
    ]
    assert metadata["device_authorization_endpoint"] == live.base_url + "/device/authorize"
    assert metadata["revocation_endpoint"] == live.base_url + "/revoke"
    assert metadata["introspection_endpoint"] == live.base_url + "/introspect"
    assert "offline_access" in metadata["scopes_supported"]
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]  # no "plain"
    assert metadata["authorization_response_iss_parameter_supported"] is True
    # every algorithm a client may register for has an active key from the first start
    assert metadata["id_token_signing_alg_values_supported"] == ["ES256", "PS256", "RS256"]
    assert metadata["subject_types_supported"] == ["public"]
    assert metadata["request_uri_parameter_supported"] is False  # OIDC's default is true
    assert metadata["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "none",
    ]
    assert metadata["pushed_authorization_request_endpoint"] == live.base_url + "/par"
    assert metadata["require_pushed_authorization_requests"] is False
    # Nothing that is not served (registration is off by default).
    assert "registration_endpoint" not in metadata
    # Every advertised endpoint exists (it may want another method or a token, never 404).
    endpoints = ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "end_session_endpoint", "jwks_uri")
    others = ("revocation_endpoint", "introspection_endpoint", "device_authorization_endpoint")
    for name in (*endpoints, *others, "pushed_authorization_request_endpoint"):
        response = await live.http.get(metadata[name].removeprefix(live.base_url))
        assert response.status_code != 404, name


async def test_jwks_holds_the_signing_keys_public_parts_only(live: Live) -> None:
    response = await live.http.get("/jwks")
    assert response.status_code == 200
    assert response.headers["cache-control"] == f"public, max-age={live.settings.jwks_max_age}"
    keys = response.json()["keys"]
    assert [(key["kty"], key["alg"]) for key in keys] == [("RSA", "RS256"), ("RSA", "PS256"), ("EC", "ES256")]
    for key in keys:
        assert key["use"] == "sig"
        assert not PRIVATE_MEMBERS & set(key)
        assert key["kid"]
    assert len({key["kid"] for key in keys}) == 3


async def test_jwks_etag_revalidates_with_304(live: Live) -> None:
    first = await live.http.get("/jwks")
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = await live.http.get("/jwks", headers={"If-None-Match": header})
        assert again.status_code == 304, header
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["cache-control"] == first.headers["cache-control"]
    changed = await live.http.get("/jwks", headers={"If-None-Match": '"stale"'})
    assert changed.status_code == 200
    assert changed.content == first.content


async def test_metadata_etag_revalidates_with_304(live: Live) -> None:
    first = await live.http.get("/.well-known/openid-configuration")
    again = await live.http.get("/.well-known/openid-configuration", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.parametrize("path", ["/jwks", "/.well-known/openid-configuration"])
async def test_head_has_the_headers_without_the_body_and_other_methods_are_405(live: Live, path: str) -> None:
    get = await live.http.get(path)
    head = await live.http.head(path)
    assert head.status_code == 200
    assert head.content == b""
    for name in ("etag", "cache-control", "content-type", "content-length", "x-content-type-options"):
        assert head.headers[name] == get.headers[name], name
    for method in ("POST", "PUT", "DELETE"):
        refused = await live.http.request(method, path)
        assert refused.status_code == 405, method
        assert refused.headers["allow"] == "GET, HEAD"
        assert refused.json()["error"] == "invalid_request"


async def test_the_etag_and_length_are_those_of_the_body_served(live: Live) -> None:
    for path in ("/jwks", "/.well-known/openid-configuration"):
        served = await live.http.get(path)
        assert served.headers["etag"] == strong_etag(served.content)
        assert served.headers["content-length"] == str(len(served.content))
