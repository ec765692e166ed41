"""``id_token_hint`` at the authorization endpoint (OIDC Core §3.1.2.1), over real HTTP.

The hint is an ID token this server issued to the requesting client: signed by a key it
publishes (a retired one too), expired or not. When it names someone other than the
browser's signed-in user, ``prompt=none`` answers ``login_required`` and any other request
shows the login page. A hint the server did not issue to this client is
``invalid_request``, at the redirect URI when that is valid.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import jwt
import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import RSAKey

from tests.flows.conftest import Live, SignIn
from tests.flows.test_keys_live import FAST, ostiary, until
from tests.helpers import Client, TestDatabase, create_client, create_user, make_settings, serve_in_process
from tests.oidc import REDIRECT_URI, Browser, Flow, query_of

pytestmark = pytest.mark.anyio


@dataclass
class Site:
    live: Live
    rp: Client
    other_rp: Client

    def browser(self, http: httpx.AsyncClient, username: str = "alice", rp: Client | None = None) -> SignIn:
        return SignIn(self.live, rp or self.rp, username, Browser(http))


@pytest.fixture
async def site(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Site]:
    """ID tokens that expire in 5 s, key changes picked up within a second; two first-party
    clients; alice and bob."""
    settings = make_settings(database, tmp_path, keys_secret="k" * 40, id_token_ttl=5, **FAST)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        options = {"grant_types": ["authorization_code"], "scopes": ["openid"], "redirect_uris": [REDIRECT_URI]}
        rp = await create_client(settings, name="Photo Prints", first_party=True, **options)
        other = await create_client(settings, name="Other Prints", first_party=True, **options)
        await create_user(settings, "alice")
        await create_user(settings, "bob", email="bob@example.com", name="Bob")
        yield Site(Live(settings, base_url, http, rp), rp, other)


async def id_token_of(site: Site, username: str, rp: Client | None = None) -> str:
    """An ID token for ``username``, from a sign-in in a browser of its own."""
    async with httpx.AsyncClient(base_url=site.live.base_url, timeout=10) as http:
        signin = site.browser(http, username, rp)
        tokens = await signin.tokens(Flow.start(signin.rp.client_id), scope="openid")
        return tokens["id_token"]


async def signed_in_as_alice(site: Site) -> SignIn:
    alice = site.browser(site.live.http)
    await alice.code(Flow.start(site.rp.client_id), scope="openid")
    return alice


def sub_of(id_token: str) -> str:
    subject: str = jwt.decode(id_token, options={"verify_signature": False})["sub"]
    return subject


async def authorize(signin: SignIn, flow: Flow, **extra: str) -> httpx.Response:
    return await signin.browser.authorize(**flow.params(scope="openid", **extra))


def error_at_client(response: httpx.Response, flow: Flow, issuer: str) -> str:
    assert response.status_code == 302, (response.status_code, response.text)
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    params = query_of(location)
    assert params["state"] == flow.state and params["iss"] == issuer and "code" not in params
    return params["error"]


# -- a valid hint ------------------------------------------------------------------------


async def test_a_hint_naming_the_signed_in_user_changes_nothing(site: Site) -> None:
    alice = await signed_in_as_alice(site)
    hint = await id_token_of(site, "alice")
    flow = Flow.start(site.rp.client_id)
    response = await authorize(alice, flow, prompt="none", id_token_hint=hint)
    assert response.status_code == 302 and "code" in query_of(response.headers["location"]), response.text


async def test_prompt_none_with_a_hint_naming_someone_else_is_login_required(site: Site) -> None:
    alice = await signed_in_as_alice(site)
    hint = await id_token_of(site, "bob")
    flow = Flow.start(site.rp.client_id)
    response = await authorize(alice, flow, prompt="none", id_token_hint=hint)
    assert error_at_client(response, flow, site.live.settings.issuer) == "login_required"


async def test_a_hint_naming_someone_else_asks_for_a_fresh_sign_in(site: Site) -> None:
    alice = await signed_in_as_alice(site)
    hint = await id_token_of(site, "bob")
    flow = Flow.start(site.rp.client_id)
    page = await authorize(alice, flow, id_token_hint=hint)
    assert page.status_code == 200 and 'name="password"' in page.text, page.text

    response = await alice.browser.sign_in(page, "bob")
    code = query_of(response.headers["location"])["code"]
    tokens = await site.live.http.post(
        "/token", data=flow.token_form(code), auth=(site.rp.client_id, site.rp.client_secret)
    )
    assert sub_of(tokens.json()["id_token"]) == sub_of(hint)


async def test_an_expired_hint_is_accepted(site: Site) -> None:
    alice = await signed_in_as_alice(site)
    hint = await id_token_of(site, "bob")
    await asyncio.sleep(6)  # the ID token lived 5 s
    flow = Flow.start(site.rp.client_id)
    response = await authorize(alice, flow, prompt="none", id_token_hint=hint)
    assert error_at_client(response, flow, site.live.settings.issuer) == "login_required"


async def test_a_hint_signed_by_a_retired_key_still_published_is_accepted(site: Site) -> None:
    alice = await signed_in_as_alice(site)
    hint = await id_token_of(site, "alice")
    old_kid = jwt.get_unverified_header(hint)["kid"]
    await ostiary(site.live, "keys", "rotate", "--alg", "RS256", "--now")

    async def signs_with_a_new_key() -> bool:
        return jwt.get_unverified_header(await id_token_of(site, "bob"))["kid"] != old_kid

    await until(signs_with_a_new_key)
    assert old_kid in [key["kid"] for key in (await site.live.http.get("/jwks")).json()["keys"]]

    flow = Flow.start(site.rp.client_id)
    response = await authorize(alice, flow, prompt="none", id_token_hint=hint)
    assert response.status_code == 302 and "code" in query_of(response.headers["location"]), response.text


# -- a hint we did not issue to this client ---------------------------------------------------


def foreign(claims: dict[str, object]) -> str:
    """Signed by a key that is not ours, with our issuer and a real subject."""
    key = RSAKey.generate_key(2048, parameters={"kid": "not-ours"})
    return jose_jwt.encode({"alg": "RS256", "kid": "not-ours", "typ": "JWT"}, claims, key)


def unsigned(token: str) -> str:
    header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    return f"{header}.{token.split('.')[1]}."


Forgery = Callable[[str, str], str]

FORGERIES: dict[str, Forgery] = {
    "garbage": lambda real, access: "not-a-jwt",
    "three dots of nothing": lambda real, access: "..",
    "signed by another key": lambda real, access: foreign(jwt.decode(real, options={"verify_signature": False})),
    "alg none": lambda real, access: unsigned(real),
    "its signature changed": lambda real, access: real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB"),
    "our access token": lambda real, access: access,
}


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
async def test_a_hint_we_did_not_issue_is_invalid_request(site: Site, forge: Forgery) -> None:
    alice = await signed_in_as_alice(site)
    tokens = await alice.tokens(Flow.start(site.rp.client_id), scope="openid")
    flow = Flow.start(site.rp.client_id)
    hint = forge(tokens["id_token"], tokens["access_token"])
    for prompt in ({}, {"prompt": "none"}):
        response = await authorize(alice, flow, id_token_hint=hint, **prompt)
        assert error_at_client(response, flow, site.live.settings.issuer) == "invalid_request"


async def test_a_hint_issued_to_another_client_is_invalid_request(site: Site) -> None:
    alice = await signed_in_as_alice(site)
    hint = await id_token_of(site, "alice", site.other_rp)
    flow = Flow.start(site.rp.client_id)
    response = await authorize(alice, flow, id_token_hint=hint)
    assert error_at_client(response, flow, site.live.settings.issuer) == "invalid_request"


async def test_a_bad_hint_with_an_unregistered_redirect_uri_is_an_error_page(site: Site) -> None:
    flow = Flow.start(site.rp.client_id)
    params = {**flow.params(scope="openid"), "redirect_uri": "https://evil.example.com/cb", "id_token_hint": "x"}
    response = await site.live.http.get("/authorize?" + urlencode(params))
    assert response.status_code == 400 and "location" not in response.headers


async def test_an_empty_hint_is_as_if_omitted(site: Site) -> None:
    alice = await signed_in_as_alice(site)
    flow = Flow.start(site.rp.client_id)
    response = await authorize(alice, flow, prompt="none", id_token_hint="")
    assert response.status_code == 302 and "code" in query_of(response.headers["location"]), response.text
