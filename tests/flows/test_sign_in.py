"""The authorization code flow with PKCE, end to end over real HTTP (OIDC Core §3.1)."""

from __future__ import annotations

import base64
import hashlib
import time

import jwt
import pytest

from tests.flows.conftest import SignIn
from tests.oidc import REDIRECT_URI, Flow, query_of

pytestmark = pytest.mark.anyio


def half_hash(token: str) -> str:
    digest = hashlib.sha256(token.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


async def test_full_code_flow_issues_verified_tokens_and_userinfo(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    page = await signin.browser.authorize(**flow.params())
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "Photo Prints" in page.text
    page = await signin.browser.sign_in(page, "alice")
    assert page.status_code == 200 and 'value="allow"' in page.text, page.text
    assert "See your email address" in page.text
    redirect = await signin.browser.submit(page, decision="allow")
    assert redirect.status_code == 303
    location = redirect.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    params = query_of(location)
    assert params["state"] == flow.state
    assert params["iss"] == signin.live.settings.issuer  # RFC 9207
    assert len(params["code"]) >= 43

    response = await signin.http.post(
        "/token", data=flow.token_form(params["code"]), auth=(signin.rp.client_id, signin.rp.client_secret)
    )
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["token_type"] == "Bearer" and tokens["scope"] == "openid profile email"

    keys = jwt.PyJWKSet.from_dict(await signin.live.jwks())
    id_header = jwt.get_unverified_header(tokens["id_token"])
    id_token = jwt.decode(
        tokens["id_token"],
        keys[id_header["kid"]],
        algorithms=["RS256"],
        audience=signin.rp.client_id,
        issuer=signin.live.settings.issuer,
        options={"require": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "sid"]},
    )
    assert id_token["nonce"] == flow.nonce
    assert id_token["at_hash"] == half_hash(tokens["access_token"])
    assert id_token["amr"] == ["pwd"]
    assert id_token["acr"] == "urn:ostiary:acr:password"
    assert abs(id_token["auth_time"] - time.time()) < 60
    assert id_token["sub"] != "alice" and len(id_token["sub"]) >= 16
    assert id_token["preferred_username"] == "alice"

    access = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert access["sub"] == id_token["sub"]
    assert access["client_id"] == signin.rp.client_id

    for method in ("GET", "POST"):
        info = await signin.http.request(
            method, "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert info.status_code == 200, info.text
        assert info.json() == {
            "sub": id_token["sub"],
            "name": "Alice Liddell",
            "preferred_username": "alice",
            "updated_at": info.json()["updated_at"],
            "email": "alice@example.com",
            "email_verified": True,
        }


async def test_single_sign_on_and_remembered_consent_skip_both_pages(signin: SignIn) -> None:
    first = await signin.tokens(Flow.start(signin.rp.client_id))
    flow = Flow.start(signin.rp.client_id)
    redirect = await signin.browser.authorize(**flow.params())
    assert redirect.status_code == 302, redirect.text
    second = await signin.http.post(
        "/token",
        data=flow.token_form(query_of(redirect.headers["location"])["code"]),
        auth=(signin.rp.client_id, signin.rp.client_secret),
    )
    one = jwt.decode(first["id_token"], options={"verify_signature": False})
    two = jwt.decode(second.json()["id_token"], options={"verify_signature": False})
    assert one["sid"] == two["sid"]
    assert one["auth_time"] == two["auth_time"]
