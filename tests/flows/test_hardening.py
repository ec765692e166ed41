"""Requests found in review to misbehave: each now gets a clean, standard answer."""

from __future__ import annotations

import jwt
import pytest

from tests.flows.conftest import SignIn
from tests.flows.test_refresh_tokens import Offline, make_offline
from tests.helpers import create_client
from tests.oidc import REDIRECT_URI, Flow, query_of

pytestmark = pytest.mark.anyio


@pytest.fixture
async def offline(signin: SignIn) -> Offline:
    return await make_offline(signin)


async def _with_audiences(signin: SignIn) -> Offline:
    rp = await create_client(
        signin.live.settings,
        grant_types=["authorization_code", "refresh_token"],
        scopes=["openid", "offline_access"],
        redirect_uris=[REDIRECT_URI],
        audiences=["https://api.example.com", "https://other.example.com"],
        first_party=True,
    )
    return Offline(signin, rp)


async def test_resource_narrows_the_audience_at_code_exchange_and_refresh(signin: SignIn) -> None:
    app = await _with_audiences(signin)
    flow = Flow.start(app.rp.client_id)
    code = await SignIn(signin.live, app.rp, "alice", signin.browser).code(flow, scope="openid offline_access")
    evil = await signin.http.post(
        "/token", data=flow.token_form(code, resource="https://evil.example.com"), auth=app.auth
    )
    assert evil.status_code == 400 and evil.json()["error"] == "invalid_target"
    flow2 = Flow.start(app.rp.client_id)
    code = await SignIn(signin.live, app.rp, "alice", signin.browser).code(flow2, scope="openid offline_access")
    tokens = (
        await signin.http.post("/token", data=flow2.token_form(code, resource="https://api.example.com"), auth=app.auth)
    ).json()
    assert jwt.decode(tokens["access_token"], options={"verify_signature": False})["aud"] == "https://api.example.com"
    refreshed = await app.refresh(tokens["refresh_token"], resource="https://other.example.com")
    assert jwt.decode(refreshed.json()["access_token"], options={"verify_signature": False})["aud"] == (
        "https://other.example.com"
    )
    refused = await app.refresh(refreshed.json()["refresh_token"], resource="https://evil.example.com")
    assert refused.json()["error"] == "invalid_target"


@pytest.mark.parametrize(
    "change",
    [
        {"redirect_uri": REDIRECT_URI + '"'},
        {"redirect_uri": "https://rp.example.com/é"},
        {"response_type": 'to"ken'},
        {"response_type": "tökén"},
    ],
)
async def test_characters_authlib_cannot_describe_give_an_error_page(signin: SignIn, change: dict[str, str]) -> None:
    page = await signin.browser.authorize(**{**Flow.start(signin.rp.client_id).params(), **change})
    assert page.status_code == 400 and "location" not in page.headers
    assert "text/html" in page.headers["content-type"]


async def test_a_repeated_parameter_with_an_odd_name_is_a_clean_redirect(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    query = "&".join(f"{k}={v}" for k, v in flow.params().items()) + "&a%22b=1&a%22b=2"
    response = await signin.http.get("/authorize?" + query.replace("+", "%2B").replace(" ", "%20"))
    assert response.status_code == 302
    assert query_of(response.headers["location"])["error"] == "invalid_request"


async def test_a_nonce_longer_than_512_characters_is_refused(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    response = await signin.browser.authorize(**flow.params(nonce="n" * 513))
    assert response.status_code == 302
    assert query_of(response.headers["location"])["error"] == "invalid_request"


@pytest.mark.parametrize("token", ["é" * 43, "\u2603"])
async def test_a_non_ascii_csrf_token_is_403_not_500(signin: SignIn, token: str) -> None:
    page = await signin.browser.authorize(**Flow.start(signin.rp.client_id).params())
    response = await signin.browser.submit(page, {"username": "alice", "password": "x", "csrf_token": token})
    assert response.status_code == 403


async def test_revoking_another_clients_token_reveals_nothing_and_revokes_nothing(offline: Offline) -> None:
    tokens = await offline.tokens()
    other = await create_client(offline.signin.live.settings, scopes=["x"])
    response = await offline.http.post(
        "/revoke", data={"token": tokens["refresh_token"]}, auth=(other.client_id, other.client_secret)
    )
    assert response.status_code == 200
    assert (await offline.refresh(tokens["refresh_token"])).status_code == 200
