"""examples/spa, started by its one command (``run.sh``: it registers a public client for its
origin and serves the page), in Chromium: the page signs in with PKCE, gets its tokens from
Ostiary's /token and the claims from /userinfo across origins (CORS), refreshes, revokes and
signs out, all under its Content-Security-Policy."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest
from playwright.async_api import Browser as Chromium, ConsoleMessage, Page, Response

from tests.examples.running import running
from tests.helpers import TestDatabase, create_user, free_port, make_settings, ostiary_env, serve_in_process
from tests.oidc import PASSWORD

pytestmark = pytest.mark.anyio


async def sign_in_at_ostiary(page: Page, username: str, *, consent: bool) -> None:
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.click("button[type=submit]")
    if consent:
        await page.click("button[name=decision][value=allow]")


async def token_response(response: Response, app: str) -> dict[str, str]:
    """The JSON of a /token response, which the page of ``app`` could read (CORS)."""
    assert response.status == 200, await response.text()
    assert await response.header_value("access-control-allow-origin") == app
    body: dict[str, str] = await response.json()
    return body


async def test_the_single_page_app_signs_in_through_cors_refreshes_and_signs_out(
    database: TestDatabase, tmp_path: Path, chromium: Chromium
) -> None:
    settings = make_settings(database, tmp_path)
    port = free_port()
    app = f"http://127.0.0.1:{port}"
    with anyio.fail_after(120):
        async with (
            serve_in_process(settings) as issuer,
            running(["examples/spa/run.sh"], ostiary_env(settings, PORT=str(port)), app + "/", tmp_path / "app.log"),
            httpx.AsyncClient(timeout=15) as http,
        ):
            await create_user(settings, "alice")
            client_id = (await http.get(app + "/config.json")).json()["client_id"]
            context = await chromium.new_context()
            page = await context.new_page()
            problems: list[str] = []  # CSP violations are console errors; so are the page's own failures
            page.on("console", lambda message: problems.append(message.text) if is_error(message) else None)
            page.on("pageerror", lambda error: problems.append(str(error)))

            def is_token(response: Response) -> bool:
                return response.url == issuer + "/token"

            first = await page.goto(app + "/")
            assert first is not None
            policy = first.headers["content-security-policy"]
            assert "script-src 'self';" in policy and f"connect-src 'self' {issuer};" in policy
            await page.click("#sign-in")
            async with page.expect_response(is_token) as exchanged:
                await sign_in_at_ostiary(page, "alice", consent=True)
            tokens = await token_response(await exchanged.value, app)
            await page.locator("#status", has_text="Signed in.").wait_for()
            assert page.url == app + "/"  # the code is out of the address bar
            assert "alice@example.com" in (await page.text_content("#userinfo") or "")
            assert "preferred_usernamealice" in (await page.text_content("#userinfo") or "")
            assert tokens["token_type"] == "Bearer" and tokens["refresh_token"]

            async with page.expect_response(is_token) as refreshing:
                await page.click("#refresh")
            refreshed = await token_response(await refreshing.value, app)
            await page.locator("#status", has_text="Tokens refreshed").wait_for()
            assert refreshed["refresh_token"] != tokens["refresh_token"]

            async with page.expect_response(issuer + "/revoke") as revoking:
                await page.click("#sign-out")
            revoked = await revoking.value
            assert revoked.status == 200 and await revoked.header_value("access-control-allow-origin") == app
            await page.locator("#status", has_text="You are signed out.").wait_for()
            assert page.url == app + "/" and await page.is_hidden("#error")
            # the refresh token is revoked (and its family ended with Ostiary's session)
            spent = {"grant_type": "refresh_token", "refresh_token": refreshed["refresh_token"], "client_id": client_id}
            after = await http.post(issuer + "/token", data=spent)
            assert after.status_code == 400 and after.json()["error"] == "invalid_grant", after.text
            await page.click("#sign-in")
            await page.get_by_label("Password").wait_for()
            assert page.url.startswith(issuer + "/authorize")
            await context.close()
    assert problems == []


def is_error(message: ConsoleMessage) -> bool:
    return message.type == "error"
