"""CSP ``form-action`` in headless Chromium, which applies it to the redirect that follows
a form's POST: every form that ends a flow must be allowed to lead where it ends."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
import pytest
from playwright.async_api import Browser

from tests.flows.conftest import SignIn, capture_callback
from tests.helpers import create_client
from tests.oidc import LOGOUT_URI, PASSWORD, REDIRECT_URI, Flow, query_of

pytestmark = pytest.mark.anyio


async def test_a_login_form_answered_by_a_redirect_to_the_client_reaches_it(signin: SignIn, chromium: Browser) -> None:
    console = await create_client(
        signin.live.settings,
        name="Console",
        grant_types=["authorization_code"],
        scopes=["openid"],
        redirect_uris=[REDIRECT_URI],
        first_party=True,  # no consent: the login form's POST is answered by the redirect
    )
    page = await chromium.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    captured = await capture_callback(page)
    flow = Flow.start(console.client_id)

    await page.goto(f"{signin.live.base_url}/authorize?{urlencode(flow.params(scope='openid'))}")
    await page.get_by_label("Username").fill("alice")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{REDIRECT_URI}**")

    assert problems == []
    assert query_of(captured["url"])["state"] == flow.state


async def test_a_confirmed_sign_out_reaches_the_clients_post_logout_uri(signin: SignIn, chromium: Browser) -> None:
    context = await chromium.new_context()
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    captured = await capture_callback(page)
    flow = Flow.start(signin.rp.client_id)
    await page.goto(f"{signin.live.base_url}/authorize?{urlencode(flow.params())}")
    await page.get_by_label("Username").fill("alice")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.click("button[type=submit]")
    await page.click("button[name=decision][value=allow]")
    await page.wait_for_url(f"{REDIRECT_URI}**")

    # An ID token of another session of alice's: this browser is asked to confirm.
    async with httpx.AsyncClient(base_url=signin.live.base_url, timeout=10) as http:
        other = SignIn(signin.live, signin.rp, "alice", type(signin.browser)(http))
        hint = (await other.tokens(Flow.start(signin.rp.client_id)))["id_token"]
    query = urlencode({"id_token_hint": hint, "post_logout_redirect_uri": LOGOUT_URI, "state": "s1"})
    await page.goto(f"{signin.live.base_url}/logout?{query}")
    await page.click("button[name=confirm][value=yes]")
    await page.wait_for_url(f"{LOGOUT_URI}**")

    assert problems == []
    assert query_of(captured["url"])["state"] == "s1"
