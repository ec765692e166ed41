from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser as Chromium, Page, Route, async_playwright

from server.settings import Settings
from tests.helpers import Client, TestDatabase, create_client, create_user, make_settings, serve_in_process
from tests.oidc import LOGOUT_URI, REDIRECT_URI, Browser, Flow, query_of


@dataclass
class Live:
    settings: Settings
    base_url: str
    http: httpx.AsyncClient
    client: Client

    async def jwks(self) -> dict[str, object]:
        response = await self.http.get("/jwks")
        assert response.status_code == 200
        data: dict[str, object] = response.json()
        return data


@pytest.fixture
async def live(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Live]:
    """Ostiary over real HTTP on a fresh database, with one client_credentials client."""
    settings = make_settings(database, tmp_path)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        client = await create_client(settings, audiences=["https://api.example.com", "https://billing.example.com"])
        yield Live(settings, base_url, http, client)


@dataclass
class SignIn:
    """Ostiary with a user and a relying party registered for the code flow."""

    live: Live
    rp: Client
    username: str
    browser: Browser

    @property
    def http(self) -> httpx.AsyncClient:
        return self.live.http

    async def code(self, flow: Flow, **extra: str) -> str:
        """Run the flow to the redirect (signing in and consenting as needed); returns the code."""
        page = await self.browser.authorize(**flow.params(**extra))
        if page.status_code == 200 and 'name="password"' in page.text:
            page = await self.browser.sign_in(page, self.username)
        if page.status_code == 200 and 'name="decision"' in page.text:
            page = await self.browser.submit(page, decision="allow")
        assert page.status_code in (302, 303), page.text
        params = query_of(page.headers["location"])
        assert params["state"] == flow.state
        return params["code"]

    async def tokens(self, flow: Flow, **extra: str) -> dict[str, str]:
        code = await self.code(flow, **extra)
        response = await self.http.post(
            "/token", data=flow.token_form(code), auth=(self.rp.client_id, self.rp.client_secret)
        )
        assert response.status_code == 200, response.text
        tokens: dict[str, str] = response.json()
        return tokens


@pytest.fixture
async def signin(live: Live) -> AsyncIterator[SignIn]:
    rp = await create_client(
        live.settings,
        name="Photo Prints",
        grant_types=["authorization_code"],
        scopes=["openid", "profile", "email"],
        redirect_uris=[REDIRECT_URI],
        post_logout_redirect_uris=[LOGOUT_URI],
    )
    await create_user(live.settings, "alice")
    yield SignIn(live, rp, "alice", Browser(live.http))


CHROMIUM = os.environ.get("OSTIARY_CHROMIUM", "/usr/bin/chromium")
#: headless, and nothing the tests do not ask for (no background traffic, no first-run pages)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("OSTIARY_TEST_ARTIFACTS", "/tmp/ostiary-test-artifacts"))


@pytest.fixture
async def chromium() -> AsyncIterator[Chromium]:
    if not shutil.which(CHROMIUM):
        if os.environ.get("OSTIARY_REQUIRE_BROWSER"):
            pytest.fail(f"Chromium is required but {CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def capture_callback(page: Page) -> dict[str, str]:
    """Stand in for the relying party: the browser's request to its callback is answered here."""
    captured: dict[str, str] = {}

    async def answer(route: Route) -> None:
        captured["url"] = route.request.url
        await route.fulfill(status=200, content_type="text/html", body="<title>Back at the app</title>")

    await page.route("https://rp.example.com/**", answer)
    return captured
