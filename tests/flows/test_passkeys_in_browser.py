"""Passkeys in headless Chromium with a virtual authenticator (the DevTools protocol's
``WebAuthn.addVirtualAuthenticator``), on SQLite and PostgreSQL: enrolment on the account
page, a passkey as the second factor, signing in with a passkey alone, a replayed answer
and an answer made on another origin refused, a copied passkey's counter caught, removal.

WebAuthn needs a domain as the relying party: the server's issuer is ``http://localhost:…``
(a secure context), and the other origin is ``http://localhost:<another port>``, the same
RP ID on a different origin, as a phishing page on the same host would be.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest
from playwright.async_api import Browser as Chromium, BrowserContext, Page
from sqlalchemy import select, update

from server.storage.models import AuditEvent, Passkey
from tests.flows.conftest import capture_callback
from tests.flows.test_pages_everywhere_in_browser import _axe as axe
from tests.helpers import Client, TestDatabase, create_client, create_user, free_port, make_settings, serve_in_process
from tests.mail import run_sql
from tests.oidc import PASSWORD, REDIRECT_URI, Flow, query_of

pytestmark = pytest.mark.anyio

PHR = "urn:ostiary:acr:phr"


@dataclass
class Site:
    base_url: str
    database_url: str
    rp: Client

    async def sql(self, statement: Any) -> list[Any]:
        return await run_sql(self.database_url, statement)


@pytest.fixture
async def site(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Site]:
    port = free_port()
    settings = make_settings(database, tmp_path, port=port, issuer=f"http://localhost:{port}")
    async with serve_in_process(settings):
        rp = await create_client(
            settings,
            name="Photo Prints",
            grant_types=["authorization_code"],
            scopes=["openid", "profile"],
            redirect_uris=[REDIRECT_URI],
        )
        await create_user(settings, "alice")
        yield Site(f"http://localhost:{port}", settings.database_url, rp)


#: a browser without conditional mediation: its sign-in page offers passkeys only by the button
NO_AUTOFILL = "Object.defineProperty(PublicKeyCredential, 'isConditionalMediationAvailable', {value: undefined});"


async def with_authenticator(chromium: Chromium, *, autofill: bool = False) -> tuple[BrowserContext, Page, Any]:
    """A browser context whose page has a platform authenticator that verifies its user.
    Its autofill (conditional mediation) takes a discoverable passkey at once, unasked: the
    tests that use the button turn it off."""
    context = await chromium.new_context()
    context.set_default_timeout(15_000)
    if not autofill:
        await context.add_init_script(NO_AUTOFILL)
    page = await context.new_page()
    cdp = await context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable")
    options = {
        "protocol": "ctap2",
        "transport": "internal",
        "hasResidentKey": True,
        "hasUserVerification": True,
        "isUserVerified": True,
        "automaticPresenceSimulation": True,
    }
    added = await cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})
    return context, page, (cdp, added["authenticatorId"])


async def sign_in_with_password(page: Page, base_url: str, path: str = "/account") -> None:
    await page.goto(base_url + path)
    await page.fill("#username", "alice")
    await page.fill("#password", PASSWORD)
    await page.click("form[action='/login'] button[type=submit]")


async def enrol(page: Page, base_url: str, name: str = "Laptop") -> list[str]:
    """Alice, signed in, adds a passkey; her first second factor comes with backup codes,
    which are returned."""
    await page.goto(base_url + "/account")
    await page.click("#passkey-new-form button")
    await page.fill("#passkey-name", name)
    await page.click("#passkey-enrol-form button[type=submit]")
    await page.wait_for_selector("#backup-codes")
    codes = [code.strip() for code in await page.locator("#backup-codes code").all_inner_texts()]
    await page.click("a.button")
    await page.wait_for_selector("#passkey-list")
    return codes


async def sign_out(page: Page, base_url: str) -> None:
    await page.goto(base_url + "/logout")
    await page.click("button[name=confirm]")
    await page.wait_for_selector("h1#page-title")


async def tokens(site: Site, page: Page, flow: Flow, start: Any) -> dict[str, Any]:
    """Run ``start()`` (the sign-in steps) for ``flow`` to the application's callback; the
    ID token's claims."""
    captured = await capture_callback(page)
    await page.goto(f"{site.base_url}/authorize?{urlencode(flow.params(scope='openid profile'))}")
    await start()
    await until_back_at_the_application(page)
    code = query_of(captured["url"])["code"]
    async with httpx.AsyncClient(base_url=site.base_url) as http:
        response = await http.post(
            "/token", data=flow.token_form(code), auth=(site.rp.client_id, site.rp.client_secret)
        )
    assert response.status_code == 200, response.text
    claims: dict[str, Any] = jwt.decode(response.json()["id_token"], options={"verify_signature": False})
    return claims


async def until_back_at_the_application(page: Page) -> None:
    """Consent if asked, and wait for the redirect to the application."""
    consent = page.locator("button[name=decision][value=allow]")
    for _ in range(150):
        if page.url.startswith(REDIRECT_URI):
            return
        if await consent.count():
            await consent.click()
        await page.wait_for_timeout(100)
    Path("/tmp/ostiary-test-artifacts").mkdir(exist_ok=True)
    await page.screenshot(path="/tmp/ostiary-test-artifacts/passkey-stuck.png")
    raise AssertionError(f"still at {page.url}")


async def test_a_passkey_is_enrolled_then_used_as_the_second_factor_and_alone(site: Site, chromium: Chromium) -> None:
    context, page, _ = await with_authenticator(chromium, autofill=True)
    await sign_in_with_password(page, site.base_url)
    await page.wait_for_selector("#passkey-new-form")
    await enrol(page, site.base_url)
    assert await page.inner_text("#passkey-1-name") == "Laptop"
    (stored,) = await site.sql(select(Passkey.name, Passkey.sign_count, Passkey.aaguid))
    assert stored.name == "Laptop"

    # Alone, through the sign-in page's autofill: no username, no password, no click.
    await sign_out(page, site.base_url)

    async def nothing() -> None:
        pass

    claims = await tokens(site, page, Flow.start(site.rp.client_id), nothing)
    assert claims["acr"] == PHR and "pwd" not in claims["amr"] and "mfa" in claims["amr"]

    # The second factor: the password, then the passkey (now her only second factor).
    await page.add_init_script(NO_AUTOFILL)
    await sign_out(page, site.base_url)

    async def password_then_passkey() -> None:
        await page.fill("#username", "alice")
        await page.fill("#password", PASSWORD)
        await page.click("form[action='/login'] button[type=submit]")
        await page.wait_for_selector("#passkey-sign-in")
        assert await page.locator("input[name=code]").count() == 0, "no app: the passkey is the way"
        assert await axe(page) == [], "the second-factor page with a passkey"
        await page.click("#passkey-sign-in")

    claims = await tokens(site, page, Flow.start(site.rp.client_id), password_then_passkey)
    assert claims["acr"] == PHR
    assert {"pwd", "mfa", "user", "pin"} <= set(claims["amr"]) and {"hwk", "swk"} & set(claims["amr"])

    # Alone, by the button.
    await sign_out(page, site.base_url)

    async def passkey_alone() -> None:
        await page.click("#passkey-sign-in")

    claims = await tokens(site, page, Flow.start(site.rp.client_id), passkey_alone)
    assert claims["acr"] == PHR and "pwd" not in claims["amr"] and "mfa" in claims["amr"]
    used = await site.sql(select(Passkey.sign_count, Passkey.last_used_at))
    assert used[0].sign_count > stored.sign_count and used[0].last_used_at is not None
    kinds = [row.kind for row in await site.sql(select(AuditEvent.kind))]
    assert "passkey.registered" in kinds and kinds.count("login.succeeded") >= 4
    await context.close()


async def test_acr_values_can_ask_for_a_passkey(site: Site, chromium: Chromium) -> None:
    context, page, _ = await with_authenticator(chromium)
    await sign_in_with_password(page, site.base_url)
    await page.wait_for_selector("#passkey-new-form")
    await enrol(page, site.base_url)

    # Signed in with the password and the passkey already: a request for phr is met at once
    # only by a passkey session; this browser's session is one (the enrolment raised it to
    # two factors, not to phr), so the passkey is asked for.
    flow = Flow.start(site.rp.client_id)
    captured = await capture_callback(page)
    await page.goto(f"{site.base_url}/authorize?{urlencode(flow.params(scope='openid', acr_values=PHR))}")
    await page.wait_for_selector("#passkey-sign-in")
    assert await page.locator("#use-backup").count() == 0, "a backup code is not a passkey"
    await page.click("#passkey-sign-in")
    await until_back_at_the_application(page)
    assert "code" in query_of(captured["url"])
    await context.close()


async def passkey_page_of(page: Page, site: Site) -> dict[str, str]:
    """A new sign-in's passkey data: its CSRF token and handle."""
    flow = Flow.start(site.rp.client_id)
    await page.goto(f"{site.base_url}/authorize?{urlencode(flow.params(scope='openid'))}")
    await page.wait_for_selector("#passkey-sign-in")
    return {
        "csrf_token": await page.get_attribute("#passkey", "data-csrf") or "",
        "interaction": await page.get_attribute("#passkey", "data-interaction") or "",
    }


async def test_a_replayed_answer_and_an_answer_from_another_origin_are_refused(site: Site, chromium: Chromium) -> None:
    context, page, _ = await with_authenticator(chromium)
    await sign_in_with_password(page, site.base_url)
    await page.wait_for_selector("#passkey-new-form")
    await enrol(page, site.base_url)
    await sign_out(page, site.base_url)

    # A sign-in with the passkey alone; its answer is recorded on the way.
    answers: list[str] = []
    page.on(
        "request",
        lambda request: answers.append(request.post_data or "") if request.url.endswith("/login/passkey") else None,
    )
    flow = Flow.start(site.rp.client_id)
    await capture_callback(page)
    await page.goto(f"{site.base_url}/authorize?{urlencode(flow.params(scope='openid'))}")
    await page.click("#passkey-sign-in")
    await until_back_at_the_application(page)
    (posted,) = answers
    answer = dict(httpx.QueryParams(posted))["answer"]
    await sign_out(page, site.base_url)

    # The same answer again, in a new sign-in of the same browser: its challenge is spent.
    fresh = await passkey_page_of(page, site)
    replayed = await context.request.post(f"{site.base_url}/login/passkey", form={**fresh, "answer": answer})
    assert replayed.status == 400
    assert "expired or was already answered" in await replayed.text()

    # An answer made on another origin (same host, another port: the same RP ID) for a
    # challenge this server handed out: refused on its origin, not signed in.
    fresh = await passkey_page_of(page, site)
    options = await page.evaluate(
        """async (data) => {
            const response = await fetch('/login/passkey/options', {method: 'POST', body: new URLSearchParams(data)});
            return await response.json();
        }""",
        fresh,
    )
    elsewhere = f"http://localhost:{free_port()}"
    await page.route(elsewhere + "/**", lambda route: route.fulfill(status=200, content_type="text/html", body="<p>"))
    await page.goto(elsewhere + "/")
    foreign = await page.evaluate(
        """async (json) => {
            const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(json);
            const credential = await navigator.credentials.get({publicKey});
            return JSON.stringify(credential.toJSON());
        }""",
        options,
    )
    assert json.loads(foreign)["response"]["clientDataJSON"]
    refused = await context.request.post(f"{site.base_url}/login/passkey", form={**fresh, "answer": foreign})
    assert refused.status == 400 and "could not be checked" in await refused.text()
    account = await context.request.get(f"{site.base_url}/account")
    assert 'name="password"' in await account.text(), "not signed in"
    await context.close()


async def test_a_copied_passkey_is_refused_and_audited_and_a_passkey_can_be_removed(
    site: Site, chromium: Chromium
) -> None:
    context, page, _ = await with_authenticator(chromium)
    await sign_in_with_password(page, site.base_url)
    await page.wait_for_selector("#passkey-new-form")
    await enrol(page, site.base_url)
    await sign_out(page, site.base_url)

    # The stored counter ahead of the authenticator's: another copy of the key signed since.
    await site.sql(update(Passkey).values(sign_count=1_000_000))
    await passkey_page_of(page, site)
    await page.click("#passkey-sign-in")
    await page.wait_for_selector("#login-error")
    assert "looks copied" in await page.inner_text("#login-error")
    kinds = [row.kind for row in await site.sql(select(AuditEvent.kind))]
    assert "passkey.clone_warning" in kinds

    # Removal (the password proved just now): the passkey and, with it gone, the backup codes.
    await site.sql(update(Passkey).values(sign_count=0))
    await sign_in_with_password(page, site.base_url)
    await page.wait_for_selector("#passkey-sign-in")  # her second factor, before the account
    await page.click("#passkey-sign-in")
    await page.wait_for_selector("#passkey-list")
    await page.click(".passkey-remove-form button")
    await page.wait_for_selector("#no-passkeys")
    assert await site.sql(select(Passkey.id)) == []
    assert "passkey.removed" in [row.kind for row in await site.sql(select(AuditEvent.kind))]
    await context.close()


async def test_a_cancelled_ceremony_and_a_browser_without_passkeys_are_told_plainly(
    site: Site, chromium: Chromium
) -> None:
    # No passkey on this authenticator: the browser ends the ceremony with NotAllowedError,
    # as when the person cancels it. Reached from the keyboard alone.
    context, page, _ = await with_authenticator(chromium)
    await passkey_page_of(page, site)
    await page.focus("form[action='/login'] button[type=submit]")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "passkey-sign-in", "next after the form's button"
    await page.keyboard.press("Enter")
    error = page.locator("#passkey-error")
    await error.wait_for(state="visible")
    assert "cancelled or timed out" in await error.inner_text()
    assert await axe(page) == [], "the sign-in page showing the error"
    assert await page.evaluate("document.activeElement.id") == "passkey-error", "the message takes the focus"
    await context.close()

    # A browser without WebAuthn: the button goes, a note says why, the password form stays.
    context = await chromium.new_context()
    await context.add_init_script("delete window.PublicKeyCredential;")
    page = await context.new_page()
    await passkey_page_of_without_button(page, site)
    assert await page.locator("#passkey-unsupported").is_visible()
    assert not await page.locator("#passkey-sign-in").is_visible()
    assert await page.locator("#password").is_visible()
    await context.close()


async def passkey_page_of_without_button(page: Page, site: Site) -> None:
    flow = Flow.start(site.rp.client_id)
    await page.goto(f"{site.base_url}/authorize?{urlencode(flow.params(scope='openid'))}")
    await page.wait_for_selector("#password")
    await page.wait_for_selector("#passkey-unsupported", state="visible")


async def test_a_backup_code_recovers_an_account_whose_passkey_is_lost(site: Site, chromium: Chromium) -> None:
    context, page, _ = await with_authenticator(chromium)
    await sign_in_with_password(page, site.base_url)
    await page.wait_for_selector("#passkey-new-form")
    codes = await enrol(page, site.base_url)
    assert len(codes) == 10
    await context.close()

    # Another browser, no authenticator: the password, then a backup code.
    context = await chromium.new_context()
    page = await context.new_page()
    await sign_in_with_password(page, site.base_url)
    await page.click("#use-backup")
    # the backup page knows her second factor is a passkey, not an app
    assert await page.inner_text("#use-app") == "Use your passkey instead"
    await page.fill("#code", codes[0])
    await page.click("form[action='/login/otp'] button[type=submit]")
    await page.wait_for_selector("#passkey-list")  # the account page, signed in
    await context.close()


#: the model Chromium's virtual authenticators report
VIRTUAL = "01020304-0506-0708-0102-030405060708"


@pytest.mark.parametrize("listed", [VIRTUAL, "08987058-cadc-4b81-b6e1-30de50dcbe96"], ids=["listed", "other"])
async def test_only_the_listed_authenticator_models_are_accepted(
    database: TestDatabase, tmp_path: Path, chromium: Chromium, listed: str
) -> None:
    port = free_port()
    settings = make_settings(
        database, tmp_path, port=port, issuer=f"http://localhost:{port}", passkey_aaguids=(listed,)
    )
    async with serve_in_process(settings):
        await create_user(settings, "alice")
        context, page, _ = await with_authenticator(chromium)
        base_url = f"http://localhost:{port}"
        await sign_in_with_password(page, base_url)
        await page.wait_for_selector("#passkey-new-form")
        await page.click("#passkey-new-form button")
        await page.fill("#passkey-name", "Laptop")
        await page.click("#passkey-enrol-form button[type=submit]")
        if listed == VIRTUAL:  # attestation asked for, checked, and the model is listed
            await page.wait_for_selector("#backup-codes")
            (stored,) = await run_sql(settings.database_url, select(Passkey.aaguid))
            assert stored.aaguid == VIRTUAL
        else:
            await page.wait_for_selector("#account-problem")
            assert "not accepted here" in await page.inner_text("#account-problem")
            assert await run_sql(settings.database_url, select(Passkey.id)) == []
        await context.close()


async def test_refused_passkeys_count_toward_the_accounts_lockout(
    database: TestDatabase, tmp_path: Path, chromium: Chromium
) -> None:
    port = free_port()
    settings = make_settings(database, tmp_path, port=port, issuer=f"http://localhost:{port}", lockout_threshold=2)
    async with serve_in_process(settings):
        rp = await create_client(
            settings, grant_types=["authorization_code"], scopes=["openid"], redirect_uris=[REDIRECT_URI]
        )
        await create_user(settings, "alice")
        site = Site(f"http://localhost:{port}", settings.database_url, rp)
        context, page, _ = await with_authenticator(chromium)
        await sign_in_with_password(page, site.base_url)
        await page.wait_for_selector("#passkey-new-form")
        await enrol(page, site.base_url)
        await sign_out(page, site.base_url)

        # Two refused answers (the counter looks copied) lock the account's second factor...
        await site.sql(update(Passkey).values(sign_count=1_000_000))
        for _ in range(2):
            await passkey_page_of(page, site)
            await page.click("#passkey-sign-in")
            await page.wait_for_selector("#login-error")
        # ...and then even a good answer is refused until the lock ends.
        await site.sql(update(Passkey).values(sign_count=0))
        await passkey_page_of(page, site)
        await page.click("#passkey-sign-in")
        await page.wait_for_selector("#login-error")
        assert "Too many failed attempts" in await page.inner_text("#login-error")
        failed = [row for row in await site.sql(select(AuditEvent.kind)) if row.kind == "mfa.failed"]
        assert len(failed) == 2
        await context.close()
