"""The second factor in headless Chromium: enrolment on the account page, then a sign-in
that goes password → code → consent → back to the application."""

from __future__ import annotations

from urllib.parse import urlencode

import jwt
import pytest
from playwright.async_api import Browser, Page

from tests.flows.conftest import ARTIFACTS, SignIn, capture_callback
from tests.mfa import Authenticator
from tests.oidc import PASSWORD, REDIRECT_URI, Flow, query_of

pytestmark = pytest.mark.anyio


def _watch(page: Page, problems: list[str] | None = None) -> list[str]:
    """Console errors (a CSP violation, a failed resource) collected while the page runs."""
    problems = [] if problems is None else problems
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    return problems


async def _enrol_in_browser(page: Page, base_url: str) -> tuple[Authenticator, list[str]]:
    await page.goto(f"{base_url}/account")
    await page.get_by_label("Username").fill("alice")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_selector("#enrol-form")
    assert await page.title() == "Your account · Ostiary"
    await page.click("#enrol-form button[type=submit]")
    qr = page.locator("figure.qr svg")
    await qr.wait_for()
    box = await qr.bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 100  # large enough to scan
    app = Authenticator((await page.inner_text("#totp-secret")).replace(" ", ""))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "totp-enrol.png"), full_page=True)

    await page.get_by_label("Code from your authenticator app").fill(app.wrong())
    await page.click("form[action='/account/totp/confirm'] button[type=submit]")
    assert "not right" in await page.get_by_role("alert").inner_text()
    await page.get_by_label("Code from your authenticator app").fill(await app.code())
    await page.click("form[action='/account/totp/confirm'] button[type=submit]")
    codes = await page.locator("#backup-codes code").all_inner_texts()
    await page.screenshot(path=str(ARTIFACTS / "backup-codes.png"), full_page=True)
    await page.click("text=I have saved them")
    assert "On: an authenticator app" in await page.inner_text("#mfa-state")
    assert await page.inner_text("#codes-left") == "10"
    await page.screenshot(path=str(ARTIFACTS / "account.png"), full_page=True)
    return app, codes


async def test_enrol_then_sign_in_with_password_code_and_consent(signin: SignIn, chromium: Browser) -> None:
    base_url = signin.live.base_url
    account_page = await chromium.new_page()
    problems = _watch(account_page)
    app, codes = await _enrol_in_browser(account_page, base_url)
    assert len(codes) == 10 and len(set(codes)) == 10

    # A different browser (no cookies): the application sends the user to sign in.
    context = await chromium.new_context()
    page = await context.new_page()
    _watch(page, problems)
    captured = await capture_callback(page)
    flow = Flow.start(signin.rp.client_id)
    await page.goto(f"{base_url}/authorize?{urlencode(flow.params())}")
    await page.get_by_label("Username").fill("alice")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.click("button[type=submit]")

    await page.wait_for_selector("input[name=code]")
    assert await page.title() == "Second factor · Ostiary"
    assert await page.get_by_label("Code from your authenticator app").get_attribute("autocomplete") == "one-time-code"
    assert await page.locator("a#use-backup").is_visible()
    await page.screenshot(path=str(ARTIFACTS / "otp.png"), full_page=True)
    await page.get_by_label("Code from your authenticator app").fill(app.wrong())
    await page.click("button[type=submit]")
    assert "attempts left" in await page.get_by_role("alert").inner_text()
    assert await page.get_by_label("Code from your authenticator app").get_attribute("aria-invalid") == "true"
    await page.get_by_label("Code from your authenticator app").fill(await app.code())
    await page.click("button[type=submit]")

    await page.wait_for_selector("button[name=decision][value=allow]")
    await page.click("button[name=decision][value=allow]")
    await page.wait_for_url(f"{REDIRECT_URI}**")
    assert problems == [], problems

    params = query_of(captured["url"])
    assert params["state"] == flow.state
    response = await signin.http.post(
        "/token", data=flow.token_form(params["code"]), auth=(signin.rp.client_id, signin.rp.client_secret)
    )
    assert response.status_code == 200, response.text
    jwks = jwt.PyJWKSet.from_dict(await signin.live.jwks())
    id_token = response.json()["id_token"]
    key = jwks[jwt.get_unverified_header(id_token)["kid"]]
    claims = jwt.decode(id_token, key=key, algorithms=["RS256"], audience=signin.rp.client_id)
    assert claims["acr"] == "urn:ostiary:acr:mfa"
    assert claims["amr"] == ["pwd", "otp", "mfa"]
    assert claims["nonce"] == flow.nonce


async def test_a_backup_code_signs_in_through_the_link(signin: SignIn, chromium: Browser) -> None:
    base_url = signin.live.base_url
    _app, codes = await _enrol_in_browser(await chromium.new_page(), base_url)

    page = await (await chromium.new_context()).new_page()
    problems = _watch(page)
    captured = await capture_callback(page)
    flow = Flow.start(signin.rp.client_id)
    await page.goto(f"{base_url}/authorize?{urlencode(flow.params(prompt='consent'))}")
    await page.get_by_label("Username").fill("alice")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.click("button[type=submit]")
    await page.click("a#use-backup")
    await page.get_by_label("Backup code", exact=True).fill(codes[0].upper())  # however the user types it
    await page.click("button[type=submit]")
    await page.click("button[name=decision][value=allow]")
    await page.wait_for_url(f"{REDIRECT_URI}**")
    assert "code" in query_of(captured["url"])
    assert problems == [], problems
