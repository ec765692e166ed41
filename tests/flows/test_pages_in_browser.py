"""The real pages in headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

Set OSTIARY_REQUIRE_BROWSER=1 (CI does) to fail instead of skip when Chromium is missing.
"""

from __future__ import annotations

from urllib.parse import urlencode

import jwt
import pytest
from playwright.async_api import Browser

from tests.flows.conftest import ARTIFACTS, SignIn, capture_callback
from tests.oidc import REDIRECT_URI, Flow, query_of

pytestmark = pytest.mark.anyio


async def test_sign_in_and_consent_in_a_real_browser(signin: SignIn, chromium: Browser) -> None:
    page = await chromium.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    captured = await capture_callback(page)
    flow = Flow.start(signin.rp.client_id)

    await page.goto(f"{signin.live.base_url}/authorize?{urlencode(flow.params())}")
    assert await page.title() == "Sign in · Ostiary"
    # Labels are tied to their inputs (the accessible names a screen reader announces).
    await page.get_by_label("Username").fill("alice")
    await page.get_by_label("Password").fill("not the password")
    await page.click("button[type=submit]")
    alert = page.get_by_role("alert")
    assert "do not match" in await alert.inner_text()
    assert await page.get_by_label("Username").input_value() == "alice"
    assert await page.get_by_label("Password").get_attribute("aria-invalid") == "true"

    await page.get_by_label("Password").fill("correct horse battery staple")
    await page.click("button[type=submit]")
    await page.wait_for_selector("button[name=decision][value=allow]")
    assert "Photo Prints" in await page.inner_text("h1")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "consent.png"), full_page=True)

    await page.click("button[name=decision][value=allow]")
    await page.wait_for_url(f"{REDIRECT_URI}**")
    assert problems == []  # no CSP violation, no failed resource

    params = query_of(captured["url"])
    assert params["state"] == flow.state and params["iss"] == signin.live.settings.issuer
    response = await signin.http.post(
        "/token", data=flow.token_form(params["code"]), auth=(signin.rp.client_id, signin.rp.client_secret)
    )
    assert response.status_code == 200, response.text
    id_token = jwt.decode(response.json()["id_token"], options={"verify_signature": False})
    assert id_token["nonce"] == flow.nonce and id_token["amr"] == ["pwd"]


async def test_keyboard_order_is_username_password_submit(signin: SignIn, chromium: Browser) -> None:
    page = await chromium.new_page()
    flow = Flow.start(signin.rp.client_id)
    await page.goto(f"{signin.live.base_url}/authorize?{urlencode(flow.params())}")
    await page.screenshot(path=str(ARTIFACTS / "login.png"), full_page=True)
    focused = [await page.evaluate("document.activeElement.name")]
    for _ in range(2):
        await page.keyboard.press("Tab")
        focused.append(await page.evaluate("document.activeElement.name || document.activeElement.type"))
    assert focused == ["username", "password", "submit"]
