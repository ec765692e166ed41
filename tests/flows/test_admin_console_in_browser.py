"""The admin console in headless Chromium: an administrator signs in with the password and
a TOTP code, finds a user and disables them, and registers a client; axe-core finds no
WCAG 2.1 A/AA violation on any console page, and no page breaks its CSP."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser as Chromium, Page

from tests.flows.conftest import ARTIFACTS, Live
from tests.flows.test_admin_console import age_sessions, make_admin
from tests.helpers import create_user
from tests.mfa import Authenticator, enrol
from tests.oidc import PASSWORD, Browser

pytestmark = pytest.mark.anyio

WCAG_21_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


#: what Chromium logs for a page answered with a 4xx on purpose (a refusal, a wrong code)
_STATUS = re.compile(r"Failed to load resource: the server responded with a status of 4\d\d")


def watch(page: Page) -> list[str]:
    """Console errors (a CSP violation, a stylesheet not loaded) collected while the page
    runs, but for the status of the pages that answer 4xx on purpose."""
    problems: list[str] = []

    def seen(text: str, kind: str) -> None:
        if kind == "error" and not _STATUS.match(text):
            problems.append(text)

    page.on("console", lambda message: seen(message.text, message.type))
    return problems


async def accessible(page: Page, name: str) -> None:
    """axe-core on the page as shown: no WCAG 2.1 A or AA violation; a screenshot kept."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"admin-{name}.png"), full_page=True)
    results = await Axe().run(page, options=WCAG_21_AA)
    assert results.violations_count == 0, f"{name} ({page.url}):\n{results.generate_report()}"


async def sign_in(page: Page, base_url: str, path: str, username: str, app: Authenticator | None) -> None:
    await page.goto(base_url + path)
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.click("button[type=submit]")
    if app is not None:
        await page.get_by_label("Code from your authenticator app").fill(await app.code())
        await page.click("button[type=submit]")


@pytest.fixture
async def enrolled_root(live: Live) -> AsyncIterator[Authenticator]:
    """The administrator ``root``, with TOTP enrolled (through the account pages)."""
    await create_user(live.settings, "root", email="root@example.com")
    await make_admin(live.settings, "root")
    async with httpx.AsyncClient(base_url=live.base_url, timeout=10) as http:
        yield (await enrol(Browser(http), "root")).app


async def test_an_admin_disables_a_user_and_registers_a_client(
    live: Live,
    chromium: Chromium,
    enrolled_root: Authenticator,
) -> None:
    await create_user(live.settings, "alice")
    page = await chromium.new_page()
    problems = watch(page)
    await sign_in(page, live.base_url, "/admin", "root", enrolled_root)
    await page.wait_for_selector("#user-search")
    assert await page.title() == "Overview · Ostiary admin"
    await accessible(page, "home")

    await page.get_by_label("Username or e-mail contains").fill("ALI")
    await page.get_by_role("button", name="Search").click()
    await page.wait_for_selector("#users")
    await accessible(page, "users")
    await page.get_by_role("link", name="alice").click()
    await page.wait_for_selector("#disable-form")
    await accessible(page, "user")
    await page.get_by_role("button", name="Disable the account").click()
    assert "disabled" in await page.inner_text("#done")
    assert (await page.inner_text("#user-state")).startswith("disabled since")
    await accessible(page, "user-disabled")

    await page.get_by_role("link", name="Clients").click()
    await page.wait_for_selector("#create-client-form")
    await accessible(page, "clients")
    await page.get_by_label("Name", exact=True).fill("Nightly export")
    await page.get_by_label("authorization_code").uncheck()
    await page.get_by_label("client_credentials").check()
    await page.get_by_label("Scopes").fill("api:read")
    await page.get_by_role("button", name="Register the client").click()
    secret = await page.inner_text("#client-secret")
    assert len(secret) > 20
    await accessible(page, "client-secret")
    await page.click("#client-link")
    await page.wait_for_selector("#rotate-secret-form")
    assert secret not in await page.content()
    await accessible(page, "client")

    for name, path in (("keys", "/admin/keys"), ("audit", "/admin/audit?type=user"), ("problem", "/admin/users/x")):
        await page.goto(live.base_url + path)
        await accessible(page, name)
    await page.goto(live.base_url + "/admin/audit")
    assert "client.created" in await page.inner_text("#events")

    await age_sessions(live.settings, "root", live.settings.admin_step_up_seconds + 60)
    await page.goto(live.base_url + "/admin/keys")
    await page.wait_for_selector("#step-up-form")
    await accessible(page, "step-up")
    await page.get_by_label("Code from your authenticator app (or a backup code)").fill(enrolled_root.wrong())
    await page.get_by_role("button", name="Verify").click()
    assert "not right" in await page.inner_text("#step-up-error")
    await accessible(page, "step-up-error")
    await page.get_by_label("Code from your authenticator app (or a backup code)").fill(await enrolled_root.code())
    await page.get_by_role("button", name="Verify").click()
    await page.wait_for_selector("#keys")
    assert problems == []


async def test_the_refusal_pages_are_accessible(live: Live, chromium: Chromium) -> None:
    await create_user(live.settings, "alice")
    await create_user(live.settings, "root", email="root@example.com")
    await make_admin(live.settings, "root")
    for username, selector, name in (("alice", "#forbidden", "forbidden"), ("root", "#enrol-link", "enrol")):
        context = await chromium.new_context()
        page = await context.new_page()
        problems = watch(page)
        await page.goto(live.base_url + "/admin")
        await accessible(page, f"sign-in-{name}")
        await sign_in(page, live.base_url, "/admin", username, None)
        await page.wait_for_selector(selector)
        await accessible(page, name)
        assert problems == []
        await context.close()


async def test_an_admin_makes_and_revokes_an_invitation(
    live: Live,
    chromium: Chromium,
    enrolled_root: Authenticator,
) -> None:
    page = await chromium.new_page()
    problems = watch(page)
    await sign_in(page, live.base_url, "/admin", "root", enrolled_root)
    await page.wait_for_selector("#user-search")
    await page.get_by_role("link", name="Invitations").click()
    await page.wait_for_selector("#create-invitation-form")
    assert await page.title() == "Invitations · Ostiary admin"
    await accessible(page, "invitations-empty")

    await page.get_by_label("E-mail address (optional)").fill("ann@example.com")
    await page.get_by_label("Works for").select_option(label="one day")
    await page.get_by_role("button", name="Make the link").click()
    link = await page.inner_text("#invitation-link")
    assert link.startswith(live.base_url + "/signup?invitation=")
    await accessible(page, "invited")
    await page.click("#invitations-link")
    await page.wait_for_selector("#invitations")
    assert "ann@example.com" in await page.inner_text("#invitations") and link not in await page.content()
    await accessible(page, "invitations")

    await page.get_by_role("button", name=re.compile(r"Revoke invitation \d+")).click()
    assert "revoked" in await page.inner_text("#done")
    await page.wait_for_selector("#no-invitations")
    await page.click("#show-all")
    assert "revoked" in await page.inner_text("#invitations")
    await accessible(page, "invitations-all")
    assert problems == []
