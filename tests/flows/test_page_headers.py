"""Page security headers and the CSRF token's life, over real HTTP.

Every page's CSP limits ``form-action`` to our own origin; a page of a sign-in adds exactly
the origin of the redirect URI that sign-in ends at (Chromium checks ``form-action`` on the
redirect that follows a form's POST). The browser's binding token, which CSRF tokens are
made from, is replaced when the browser signs in: a token seen before is void after.
"""

from __future__ import annotations

import httpx
import pytest

from tests.flows.conftest import Live, SignIn
from tests.helpers import create_client
from tests.oidc import LOGOUT_URI, REDIRECT_URI, Flow, forms_of, query_of

pytestmark = pytest.mark.anyio

BROWSER = "ostiary_browser"  # the test issuer is http: no __Host- prefix
NATIVE_REDIRECT = "com.example.prints:/callback"


def form_action(response: httpx.Response) -> list[str]:
    csp = response.headers["content-security-policy"]
    directives = {part.split()[0]: part.split()[1:] for part in csp.split(";") if part.strip()}
    assert "default-src" in directives and directives["default-src"] == ["'none'"], csp
    return directives["form-action"]


def csrf_of(page: httpx.Response) -> str:
    (form,) = forms_of(page.text)
    return form.fields["csrf_token"]


# -- form-action ------------------------------------------------------------------------


async def test_a_sign_in_page_may_post_to_us_and_lead_to_the_clients_redirect_origin(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    page = await signin.browser.authorize(**flow.params())
    assert form_action(page) == ["'self'", "https://rp.example.com"]

    wrong = await signin.browser.submit(page, {"username": "alice", "password": "not it"})
    assert 'name="password"' in wrong.text and form_action(wrong) == ["'self'", "https://rp.example.com"]

    consent = await signin.browser.sign_in(wrong, "alice")
    assert 'name="decision"' in consent.text, consent.text
    assert form_action(consent) == ["'self'", "https://rp.example.com"]


async def test_a_native_apps_sign_in_pages_name_its_private_use_scheme(signin: SignIn) -> None:
    app = await create_client(
        signin.live.settings,
        name="Prints for phones",
        grant_types=["authorization_code"],
        scopes=["openid"],
        redirect_uris=[NATIVE_REDIRECT],
        public=True,
    )
    flow = Flow.start(app.client_id)
    page = await signin.browser.authorize(**{**flow.params(scope="openid"), "redirect_uri": NATIVE_REDIRECT})
    assert form_action(page) == ["'self'", "com.example.prints:"], page.text


async def test_pages_outside_a_clients_sign_in_post_to_us_only(live: Live) -> None:
    account = await live.http.get("/account")  # signed out: the account's own sign-in page
    assert 'name="password"' in account.text
    assert form_action(account) == ["'self'"]
    assert form_action(await live.http.get("/password/forgot")) == ["'self'"]
    error = await live.http.get("/authorize", params={"client_id": "no-such-client"})
    assert error.status_code == 400 and form_action(error) == ["'self'"]


async def test_a_sign_out_confirmation_leads_only_where_the_confirmed_sign_out_redirects(signin: SignIn) -> None:
    hint = (await signin.tokens(Flow.start(signin.rp.client_id)))["id_token"]
    # Without a hint, a confirmed sign-out ends on our own page: its form leads nowhere else.
    bare = await signin.http.get("/logout", params={"post_logout_redirect_uri": LOGOUT_URI})
    assert 'name="confirm"' in bare.text, bare.text
    assert form_action(bare) == ["'self'"]

    signed_out = await signin.http.get(
        "/logout", params={"id_token_hint": hint, "post_logout_redirect_uri": LOGOUT_URI}
    )
    assert signed_out.status_code == 302 and signed_out.headers["location"].startswith(LOGOUT_URI)
    await signin.code(Flow.start(signin.rp.client_id))  # signed in again: a session the hint is not of
    page = await signin.http.get("/logout", params={"id_token_hint": hint, "post_logout_redirect_uri": LOGOUT_URI})
    assert 'name="confirm"' in page.text, page.text
    assert form_action(page) == ["'self'", "https://rp.example.com"]


# -- the CSRF token is rotated at sign-in ----------------------------------------------------


async def test_signing_in_voids_the_csrf_token_seen_before(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    login = await signin.browser.authorize(**flow.params())
    before, browser_before = csrf_of(login), signin.http.cookies[BROWSER]

    consent = await signin.browser.sign_in(login, "alice")
    assert signin.http.cookies[BROWSER] != browser_before
    after = csrf_of(consent)
    assert after != before

    (form,) = forms_of(consent.text)
    stale = await signin.http.post("/consent", data={**form.fields, "csrf_token": before, "decision": "allow"})
    assert stale.status_code == 403 and "This form has expired" in stale.text

    allowed = await signin.browser.submit(consent, decision="allow")
    assert allowed.status_code == 303 and "code" in query_of(allowed.headers["location"])
    assert allowed.headers["location"].startswith(REDIRECT_URI + "?")


async def test_a_token_from_before_sign_in_is_refused_by_the_account_pages_too(signin: SignIn) -> None:
    page = await signin.http.get("/account")
    before = csrf_of(page)
    signed_in = await signin.browser.sign_in(page, "alice")
    assert signed_in.status_code == 303, signed_in.text

    account = await signin.http.get("/account")
    assert 'id="enrol-form"' in account.text, account.text
    refused = await signin.http.post("/account/totp/start", data={"csrf_token": before})
    assert refused.status_code == 403
    (form,) = [f for f in forms_of(account.text) if f.action == "/account/totp/start"]
    assert form.fields["csrf_token"] != before
