"""Every page Ostiary shows people, reached in a real browser the way a person reaches it.

One walk through the user-facing pages (not the admin console): sign-in and its errors, the
forgotten and reset password, consent, the second factor, the account with its re-entry of
the password, TOTP enrolment and backup codes, a device's pages, signing out, the error page
and the home page. :func:`walk` calls ``shown(name, page)`` on each page once it is on
screen; the page tests check every page there (tests/flows/test_pages_everywhere_in_browser.py)
and ``scripts/screenshots`` photographs it (docs/pages/), so both see the same pages.

A walk registers its own users (alice, bob and carol, suffixed with its ``tag`` if it has
one), so walks in the same server (one per viewport and colour scheme) do not meet.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
from playwright.async_api import BrowserContext, Page, Route
from sqlalchemy import select, update

from server.settings import Settings
from server.storage import transactions
from server.storage.base import sha256, utcnow
from server.storage.engine import create_sessionmaker, make_engine
from server.storage.models import BrowserSession, EmailVerification, User
from server.storage.resets import replace_reset
from server.users.admin import require_password_change
from tests.helpers import Client, create_client, create_user
from tests.mfa import Authenticator
from tests.oidc import LOGOUT_URI, PASSWORD, REDIRECT_URI, Flow

#: what the walk's servers need beyond the defaults: one address (the browser's) signs in
#: and enters device codes for every walk within the same minute
SETTINGS: dict[str, Any] = {
    "rate_limit_login": 1000,
    "rate_limit_device": 1000,
    "rate_limit_signup": 1000,
    "signup": "open",
}

NEW_PASSWORD = "a long new phrase for carol"
_RP = "https://rp.example.com"
_LOGO = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
    '<rect width="64" height="64" rx="12" fill="#c2410c"/><circle cx="32" cy="32" r="14" fill="#fff"/></svg>'
)

Shown = Callable[[str, Page], Awaitable[None]]


@dataclass(frozen=True)
class Look:
    """A viewport and a colour scheme to show the pages in."""

    device: Literal["phone", "desktop"]
    scheme: Literal["light", "dark"]
    width: int
    height: int

    @property
    def name(self) -> str:
        return f"{self.scheme}-{self.device}"

    async def context(self, browser: Any) -> BrowserContext:
        """A new browser context (its own cookies) showing pages this way."""
        context: BrowserContext = await browser.new_context(
            viewport={"width": self.width, "height": self.height},
            color_scheme=self.scheme,
            is_mobile=self.device == "phone",
            has_touch=self.device == "phone",
        )
        return context


LOOKS = (
    Look("phone", "light", 390, 844),
    Look("phone", "dark", 390, 844),
    Look("desktop", "light", 1280, 800),
    Look("desktop", "dark", 1280, 800),
)


@dataclass(frozen=True)
class Site:
    """A running Ostiary with the applications the walk signs in to."""

    settings: Settings
    base_url: str
    #: "Photo Prints": the code flow, a logo, a privacy policy and terms
    rp: Client
    #: "Living Room TV": the device flow, public
    tv: Client


async def register(settings: Settings, base_url: str) -> Site:
    rp = await create_client(
        settings,
        name="Photo Prints",
        grant_types=["authorization_code"],
        scopes=["openid", "profile", "email"],
        redirect_uris=[REDIRECT_URI],
        post_logout_redirect_uris=[LOGOUT_URI],
        logo_uri=f"{_RP}/logo.svg",
        policy_uri=f"{_RP}/privacy",
        tos_uri=f"{_RP}/terms",
    )
    tv = await create_client(
        settings,
        name="Living Room TV",
        grant_types=["urn:ietf:params:oauth:grant-type:device_code"],
        scopes=["openid", "profile"],
        public=True,
    )
    return Site(settings, base_url, rp, tv)


async def stand_in_for_the_application(page: Page) -> None:
    """Answer the browser's requests to the relying party here: its logo, its callback
    (a page), and the form_post response (204, so the page that posts it stays on screen)."""

    async def answer(route: Route) -> None:
        request = route.request
        if request.url.endswith("/logo.svg"):
            await route.fulfill(status=200, content_type="image/svg+xml", body=_LOGO)
        elif request.method == "POST":
            await route.fulfill(status=204)
        else:
            await route.fulfill(status=200, content_type="text/html", body="<title>Back at the app</title>")

    await page.route(f"{_RP}/**", answer)


async def walk(site: Site, page: Page, tag: str, shown: Shown) -> None:
    """Every user-facing page, in an order a person could meet them, on ``page`` (a fresh
    context); ``shown(name, page)`` once each is on screen."""
    people = await _People.register(site.settings, tag)
    await stand_in_for_the_application(page)
    await _front(site, page, shown)
    await _first_sign_in(site, page, people, shown)
    app, codes = await _account(site, page, people, shown)
    await _device(site, page, shown)
    await _second_factor(site, page, people, app, codes[0], shown)
    await _sign_out(site, page, shown)
    await _password_pages(site, page, people, shown)
    await _sign_up_pages(site, page, people, tag, shown)


@dataclass(frozen=True)
class _People:
    #: signs in, sets up a second factor, connects a device, signs out
    alice: str
    #: must choose a new password at the next sign-in
    bob: str
    #: resets a forgotten password
    carol: str

    @classmethod
    async def register(cls, settings: Settings, tag: str) -> _People:
        people = cls(*(f"{name}-{tag}" if tag else name for name in ("alice", "bob", "carol")))
        for username in (people.alice, people.bob, people.carol):
            await create_user(settings, username, email=f"{username}@example.com", name=username.title())
        await _in_database(settings, lambda db: require_password_change(db, people.bob, actor="cli"))
        return people


async def _front(site: Site, page: Page, shown: Shown) -> None:
    await page.goto(site.base_url + "/")
    await page.wait_for_selector(".facts")
    await shown("home", page)
    await page.goto(site.base_url + "/authorize?" + urlencode({"client_id": "no-such-client"}))
    await page.wait_for_selector("[role=alert]")
    await shown("error", page)


async def _first_sign_in(site: Site, page: Page, people: _People, shown: Shown) -> None:
    """A wrong password, the forgotten-password page and back to the same sign-in, consent."""
    flow = Flow.start(site.rp.client_id)
    await page.goto(f"{site.base_url}/authorize?{urlencode(flow.params())}")
    await page.wait_for_selector("input[name=password]")
    await shown("sign-in", page)
    await _sign_in(page, people.alice, "not the password")
    await page.wait_for_selector("#login-error")
    await shown("sign-in-error", page)
    await page.click("#forgot-password")
    await page.wait_for_selector("input[name=email]")
    await shown("password-forgot", page)
    await page.click("#back-to-sign-in")
    await page.wait_for_selector("input[name=password]")
    await _sign_in(page, people.alice)
    await page.wait_for_selector("button[name=decision][value=allow]")
    await shown("consent", page)
    await page.click("button[name=decision][value=allow]")
    # the sign-in the forgotten-password page led back to is the application's
    await page.wait_for_url(re.compile(re.escape(REDIRECT_URI) + r"\?.*state=" + re.escape(flow.state)))


async def _account(site: Site, page: Page, people: _People, shown: Shown) -> tuple[Authenticator, list[str]]:
    """The account; the password asked again; TOTP enrolment; the backup codes; a problem."""
    await page.goto(site.base_url + "/account")
    await page.wait_for_selector("#enrol-form")
    await shown("account", page)
    await page.click("#passkey-new-form button")
    await page.wait_for_selector("#passkey-enrol-form")
    await shown("passkey-enrol", page)
    await page.goto(site.base_url + "/account")
    await page.wait_for_selector("#enrol-form")
    await _age_sign_in(site.settings, people.alice, site.settings.reauth_seconds + 60)
    await page.click("#enrol-form button")
    await page.wait_for_selector("#reauth-form")
    await shown("reauth", page)
    await page.fill("#reauth-password", "not the password")
    await page.click("#reauth-form button[type=submit]")
    await page.wait_for_selector("#reauth-error")
    await shown("reauth-error", page)
    await page.fill("#reauth-password", PASSWORD)
    await page.click("#reauth-form button[type=submit]")
    await page.wait_for_selector("#account-done")
    await shown("account-notice", page)

    await page.click("#enrol-form button")
    await page.wait_for_selector("#totp-secret")
    await shown("totp-enrol", page)
    app = Authenticator((await page.inner_text("#totp-secret")).replace(" ", ""))
    await page.fill("#code", app.wrong())
    await page.click("button[type=submit]")
    await page.wait_for_selector("#enrol-error")
    await shown("totp-enrol-error", page)
    await page.fill("#code", await app.code())
    await page.click("button[type=submit]")
    await page.wait_for_selector("#backup-codes")
    await shown("backup-codes", page)
    codes = [code.strip() for code in await page.locator("#backup-codes code").all_inner_texts()]

    await page.click("a.button")
    await page.wait_for_selector("#regenerate-form")
    await shown("account-second-factor", page)
    await page.fill("#regen-password", PASSWORD)
    await page.fill("#regen-code", app.wrong())
    await page.click("#regenerate-form button[type=submit]")
    await page.wait_for_selector("#account-problem")
    await shown("account-problem", page)
    return app, codes


async def _device(site: Site, page: Page, shown: Shown) -> None:
    """A TV's code: typed wrong, then right, and allowed (the browser is signed in)."""
    async with httpx.AsyncClient(base_url=site.base_url, timeout=10) as http:
        started = await http.post("/device/authorize", data={"client_id": site.tv.client_id, "scope": "openid profile"})
        assert started.status_code == 200, started.text
    user_code = started.json()["user_code"]
    await page.goto(site.base_url + "/device")
    await page.wait_for_selector("#user_code")
    await shown("device", page)
    await page.fill("#user_code", "AEIOU")
    await page.click("button[type=submit]")
    await page.wait_for_selector("#device-error")
    await shown("device-error", page)
    await page.fill("#user_code", user_code)
    await page.click("button[type=submit]")
    await page.wait_for_selector("button[name=decision][value=allow]")
    await shown("device-confirm", page)
    await page.click("button[name=decision][value=allow]")
    await page.wait_for_selector("h1:has-text('Device connected')")
    await shown("device-done", page)


async def _second_factor(
    site: Site, page: Page, people: _People, app: Authenticator, backup_code: str, shown: Shown
) -> None:
    """Signing in again with the second factor: a wrong code, then a backup code; then a
    sign-in answered by ``form_post``."""
    flow = Flow.start(site.rp.client_id)
    await page.goto(f"{site.base_url}/authorize?{urlencode(flow.params(prompt='login'))}")
    await page.wait_for_selector("input[name=password]")
    await _sign_in(page, people.alice)
    await page.wait_for_selector("#use-backup")
    await shown("second-factor", page)
    await page.fill("#code", app.wrong())
    await page.click("button[type=submit]")
    await page.wait_for_selector("#otp-error")
    await shown("second-factor-error", page)
    await page.click("#use-backup")
    await page.wait_for_selector("#use-app")
    await shown("second-factor-backup", page)
    await page.fill("#code", backup_code)
    await page.click("button[type=submit]")
    await page.wait_for_url(re.compile(re.escape(REDIRECT_URI) + r"\?.*state=" + re.escape(flow.state)))

    posted = Flow.start(site.rp.client_id)
    # the page posts itself at once; answered 204, it stays on screen
    async with page.expect_response(lambda response: response.url == REDIRECT_URI and response.status == 204):
        url = f"{site.base_url}/authorize?{urlencode(posted.params(response_mode='form_post'))}"
        await page.goto(url, wait_until="commit")
    await page.wait_for_selector("#form-post", state="attached")
    await shown("returning-to-the-application", page)


async def _sign_out(site: Site, page: Page, shown: Shown) -> None:
    """Asked to confirm: first staying signed in, then signing out."""
    await page.goto(site.base_url + "/logout")
    await page.wait_for_selector("button[name=confirm]")
    await shown("sign-out", page)
    await page.click("#cancel-sign-out")
    await page.wait_for_selector("#account-username")  # still signed in
    await page.goto(site.base_url + "/logout")
    await page.click("button[name=confirm]")
    await page.wait_for_selector("h1:has-text('You are signed out')")
    await shown("signed-out", page)


async def _password_pages(site: Site, page: Page, people: _People, shown: Shown) -> None:
    """A new password forced at sign-in; a link asked for; a reset link used, and used again."""
    flow = Flow.start(site.rp.client_id)
    await page.goto(f"{site.base_url}/authorize?{urlencode(flow.params())}")
    await page.wait_for_selector("input[name=password]")
    await _sign_in(page, people.bob)
    await page.wait_for_selector("#new-password-hint")
    await shown("password-change", page)

    await page.goto(site.base_url + "/password/forgot")
    await page.fill("#email", "nobody@example.com")
    await page.click("button[type=submit]")
    await page.wait_for_selector("#forgot-sent")
    await shown("password-forgot-sent", page)

    token = await _reset_token(site.settings, people.carol)
    await page.goto(f"{site.base_url}/password/reset?{urlencode({'token': token})}")
    await page.wait_for_selector("#new-password")
    await shown("password-reset", page)
    await page.fill("#new-password", NEW_PASSWORD)
    await page.fill("#confirm-password", NEW_PASSWORD + " and more")
    await page.click("button[type=submit]")
    await page.wait_for_selector("#reset-error")
    await shown("password-reset-error", page)
    await page.fill("#new-password", NEW_PASSWORD)
    await page.fill("#confirm-password", NEW_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_selector("#reset-done")
    await shown("password-reset-done", page)
    await page.goto(f"{site.base_url}/password/reset?{urlencode({'token': token})}")
    await page.wait_for_selector("#reset-expired")
    await shown("password-reset-expired", page)


async def _sign_up_pages(site: Site, page: Page, people: _People, tag: str, shown: Shown) -> None:
    """Sign-up from an application's sign-in: a username in use, then the mail is on its
    way; the link's confirmation, done, and used again."""
    flow = Flow.start(site.rp.client_id)
    await page.goto(f"{site.base_url}/authorize?{urlencode(flow.params())}")
    await page.click("#create-account")
    await page.wait_for_selector("#confirm-password")
    await shown("sign-up", page)
    newcomer = f"dave-{tag}" if tag else "dave"
    for username in (people.alice, newcomer):
        await page.fill("#username", username)
        await page.fill("#email", f"{newcomer}@example.com")
        await page.fill("#password", NEW_PASSWORD)
        await page.fill("#confirm-password", NEW_PASSWORD)
        await page.click("button[type=submit]")
        if username == people.alice:
            await page.wait_for_selector("#signup-error")
            await shown("sign-up-error", page)
    await page.wait_for_selector("#signup-sent")
    await shown("sign-up-sent", page)

    token = await _verification_token(site.settings, newcomer)
    await page.goto(f"{site.base_url}/email/verify?{urlencode({'token': token})}")
    await page.wait_for_selector("form[action='/email/verify']")
    await shown("email-verify", page)
    await page.click("button[type=submit]")
    await page.wait_for_selector("#verify-done")
    await shown("email-verify-done", page)
    await page.goto(f"{site.base_url}/email/verify?{urlencode({'token': token})}")
    await page.wait_for_selector("#verify-error")
    await shown("email-verify-expired", page)


async def _sign_in(page: Page, username: str, password: str = PASSWORD) -> None:
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")


async def _in_database(settings: Settings, work: Callable[[Any], Any]) -> Any:
    engine = make_engine(settings.database_url)
    try:
        return await transactions.run(create_sessionmaker(engine), work)
    finally:
        await engine.dispose()


async def _age_sign_in(settings: Settings, username: str, seconds: int) -> None:
    """``username``'s sessions as if the password had been typed ``seconds`` ago."""
    then = utcnow() - timedelta(seconds=seconds)

    def work(db: Any) -> None:
        user_id = db.execute(select(User.id).where(User.username == username)).scalar_one()
        db.execute(update(BrowserSession).where(BrowserSession.user_id == user_id).values(auth_time=then))

    await _in_database(settings, work)


async def _verification_token(settings: Settings, username: str) -> str:
    """A new link's token for the pending sign-up of ``username``, as its mail carries it
    (the one the form mailed is sealed in the outbox)."""
    token = secrets.token_urlsafe(32)

    def work(db: Any) -> None:
        digest = db.execute(
            select(EmailVerification.token_digest).where(EmailVerification.username == username)
        ).scalar_one()
        db.execute(
            update(EmailVerification).where(EmailVerification.token_digest == digest).values(token_digest=sha256(token))
        )

    await _in_database(settings, work)
    return token


async def _reset_token(settings: Settings, username: str) -> str:
    """A password-reset link's token for ``username``, as the reset mail carries it."""
    token = secrets.token_urlsafe(32)

    def work(db: Any) -> None:
        user_id = db.execute(select(User.id).where(User.username == username)).scalar_one()
        replace_reset(db, user_id, sha256(token), utcnow() + timedelta(seconds=settings.password_reset_ttl))

    await _in_database(settings, work)
    return token
