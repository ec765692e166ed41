"""examples/webapp, started by its one command (``run.sh``: it registers its client with
``ostiary clients create`` and starts the app), signs a user in through Ostiary's pages,
shows their claims, refreshes its tokens and signs out at Ostiary."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import text

from server.settings import Settings
from server.storage.engine import make_engine
from tests.examples.running import running
from tests.helpers import TestDatabase, create_user, free_port, make_settings, ostiary_env, serve_in_process
from tests.oidc import Browser, forms_of

pytestmark = pytest.mark.anyio


def cell(page: httpx.Response, table: str, claim: str) -> str:
    """A claim's value in one of the home page's tables."""
    section = re.search(rf'<table id="{table}">(.*?)</table>', page.text, re.S)
    assert section, page.text
    value = re.search(rf"<tr><th>{re.escape(claim)}</th><td>(.*?)</td></tr>", section.group(1))
    assert value, section.group(1)
    return html.unescape(value.group(1))


async def press(http: httpx.AsyncClient, page: httpx.Response, action: str) -> httpx.Response:
    """Submit the page's form that posts to ``action`` (the app's own, relative to the page)."""
    (form,) = [form for form in forms_of(page.text) if form.action == action]
    return await http.post(page.url.join(form.action), data=form.fields)


async def rows(settings: Settings, statement: str, **params: Any) -> list[Any]:
    engine = make_engine(settings.database_url)
    try:
        async with engine.begin() as connection:
            return list((await connection.execute(text(statement), params)).all())
    finally:
        await engine.dispose()


async def test_the_web_app_signs_in_refreshes_and_signs_out(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path)
    port = free_port()
    app = f"http://127.0.0.1:{port}/"
    with anyio.fail_after(120):
        async with (
            serve_in_process(settings) as issuer,
            running(["examples/webapp/run.sh"], ostiary_env(settings, PORT=str(port)), app, tmp_path / "app.log"),
            httpx.AsyncClient(base_url=issuer, follow_redirects=True, timeout=15) as http,
        ):
            await create_user(settings, "alice")
            browser = Browser(http)  # cookies of both ports, as a browser keeps them for 127.0.0.1

            page = await http.get(app + "login")
            assert page.url.path == "/authorize" and 'name="password"' in page.text, page.text
            before_sign_in = http.cookies["example_webapp_session"]  # holds state, nonce and verifier
            consent = await browser.sign_in(page, "alice")
            home = await browser.submit(consent, decision="allow")
            assert str(home.url) == app, home.text
            assert http.cookies["example_webapp_session"] != before_sign_in  # a new session id at sign-in
            assert "Signed in as alice" in home.text
            assert cell(home, "userinfo", "email") == "alice@example.com"
            assert cell(home, "id-token", "iss") == issuer
            client_id = cell(home, "id-token", "aud")
            assert cell(home, "userinfo", "sub") == cell(home, "id-token", "sub")
            assert "refreshed 0 time(s)" in home.text

            # no CSRF token, no refresh
            assert (await http.post(app + "refresh")).status_code == 403
            spent = "SELECT token_digest FROM refresh_tokens WHERE client_id = :client AND consumed_at IS NOT NULL"
            assert await rows(settings, spent, client=client_id) == []

            refreshed = await press(http, home, "/refresh")
            assert str(refreshed.url) == app and "refreshed 1 time(s)" in refreshed.text, refreshed.text
            assert 'id="notice">Tokens refreshed at' in refreshed.text
            assert cell(refreshed, "userinfo", "preferred_username") == "alice"
            assert len(await rows(settings, spent, client=client_id)) == 1  # the refresh token rotated at Ostiary

            signed_out = await press(http, refreshed, "/logout")
            assert signed_out.url.path == "/signed-out" and "You are signed out." in signed_out.text, signed_out.text
            # through Ostiary's end_session_endpoint, which asked nothing (the ID token hint was valid)
            assert [(r.url.host, r.url.port, r.url.path) for r in signed_out.history] == [
                ("127.0.0.1", port, "/logout"),
                ("127.0.0.1", settings.port, "/logout"),
            ]
            grants = await rows(settings, "SELECT revoked_at FROM grants WHERE client_id = :client", client=client_id)
            assert len(grants) == 1 and grants[0].revoked_at is not None  # its refresh tokens ended with the session

            assert 'id="sign-in"' in (await http.get(app)).text
            again = await http.get(app + "login")
            assert again.url.path == "/authorize" and 'name="password"' in again.text  # Ostiary's session ended
