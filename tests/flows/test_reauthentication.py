"""Sudo mode on /account: turning the second factor on needs the password proved within
``OSTIARY_REAUTH_SECONDS`` (signing in counts); a browser left signed in longer than that
asks for it again before the change, and a wrong password there counts toward the lockout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from server.storage.engine import make_engine
from server.storage.models import AuditEvent, TotpCredential
from tests.helpers import TestDatabase, create_user, make_settings, serve_in_process
from tests.mfa import Authenticator, secret_of, sign_in_to_account, submit_form
from tests.oidc import PASSWORD, Browser

pytestmark = pytest.mark.anyio

#: seconds after which the password must be typed again in these tests
#: long enough for a sign-in and the next form on a loaded CI machine (1 s was not, once)
WINDOW = 4


@pytest.fixture
async def browser(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Browser]:
    """Alice's browser on an Ostiary whose sudo window is ``WINDOW`` seconds."""
    settings = make_settings(database, tmp_path, reauth_seconds=WINDOW, lockout_threshold=3)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        await create_user(settings, "alice")
        yield Browser(http)


@pytest.fixture
def database_url(database: TestDatabase) -> str:
    return database.url


async def count(url: str, column: object, *where: object) -> int:
    """Rows in the database behind the server, read past it."""
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            return int((await connection.execute(select(func.count(column)).where(*where))).scalar_one())
    finally:
        await engine.dispose()


def asks_for_the_password(page: httpx.Response) -> bool:
    return page.status_code == 200 and 'id="reauth-form"' in page.text and 'action="/account/reauth"' in page.text


async def stale_account_page(browser: Browser) -> httpx.Response:
    """The account page of a session signed in longer ago than the window."""
    page = await sign_in_to_account(browser, "alice")
    await asyncio.sleep(WINDOW + 0.5)
    return page


async def test_right_after_signing_in_the_second_factor_can_be_turned_on(browser: Browser) -> None:
    page = await sign_in_to_account(browser, "alice")

    started = await submit_form(browser, page, "/account/totp/start")

    assert secret_of(started.text)


async def test_a_stale_session_is_asked_for_the_password_before_turning_the_factor_on(
    browser: Browser, database_url: str
) -> None:
    page = await stale_account_page(browser)

    asked = await submit_form(browser, page, "/account/totp/start")

    assert asks_for_the_password(asked), asked.text
    assert await count(database_url, TotpCredential.user_id) == 0

    confirmed = await submit_form(browser, asked, "/account/reauth", password=PASSWORD)
    assert confirmed.status_code == 303 and confirmed.headers["location"] == "/account?done=reauth"
    page = await browser.http.get("/account?done=reauth")
    assert "Your password is confirmed." in page.text
    started = await submit_form(browser, page, "/account/totp/start")
    assert secret_of(started.text)
    assert await count(database_url, AuditEvent.id, AuditEvent.kind == "user.reauthenticated") == 1


async def test_confirming_the_factor_after_the_window_asks_again_and_leaves_it_off(
    browser: Browser, database_url: str
) -> None:
    page = await sign_in_to_account(browser, "alice")
    started = await submit_form(browser, page, "/account/totp/start")
    app = Authenticator(secret_of(started.text))
    await asyncio.sleep(WINDOW + 0.5)

    asked = await submit_form(browser, started, "/account/totp/confirm", code=await app.code())

    assert asks_for_the_password(asked), asked.text
    confirmed = await count(database_url, TotpCredential.user_id, TotpCredential.confirmed_at.is_not(None))
    assert confirmed == 0


async def test_a_wrong_password_is_refused_and_counted_by_the_lockout(browser: Browser) -> None:
    page = await stale_account_page(browser)
    asked = await submit_form(browser, page, "/account/totp/start")

    answers = [await submit_form(browser, asked, "/account/reauth", password="not the password") for _ in range(3)]
    assert [a.status_code for a in answers] == [400, 400, 400]
    assert "That password is not right." in answers[0].text and 'id="reauth-error"' in answers[0].text

    locked = await submit_form(browser, asked, "/account/reauth", password=PASSWORD)
    assert locked.status_code == 400 and "Too many wrong passwords" in locked.text
    still = await submit_form(browser, await browser.http.get("/account"), "/account/totp/start")
    assert asks_for_the_password(still), still.text


async def test_the_reauthentication_form_needs_its_csrf_token(browser: Browser) -> None:
    await stale_account_page(browser)

    forged = await browser.http.post("/account/reauth", data={"password": PASSWORD})

    assert forged.status_code == 403
    page = await browser.http.get("/account")
    assert asks_for_the_password(await submit_form(browser, page, "/account/totp/start"))
