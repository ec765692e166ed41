"""Pages and mails in the reader's language, over real HTTP: ``ui_locales`` on the
authorization request (kept for the rest of that sign-in), else ``Accept-Language``, else
``OSTIARY_DEFAULT_LOCALE``; a mail in the language of the page that asked for it; and
discovery lists the languages (``ui_locales_supported``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from server import i18n
from tests.flows.conftest import SignIn
from tests.helpers import TestDatabase
from tests.mail import Mailed, forgot, mailed_server
from tests.oidc import Browser, Flow

pytestmark = pytest.mark.anyio


def said(locale: str, message: str) -> str:
    """``message`` as the ``locale`` catalog has it (and not the English)."""
    with i18n.using(locale):
        translated = i18n.gettext(message)
    assert translated != message or locale == "en", f"{message!r} has no {locale} translation"
    return translated


def in_language(page: httpx.Response, locale: str) -> bool:
    return f'<html lang="{locale}">' in page.text


async def test_discovery_lists_the_languages(signin: SignIn) -> None:
    metadata = (await signin.http.get("/.well-known/openid-configuration")).json()
    assert metadata["ui_locales_supported"] == ["en", "de", "fr"]


async def test_ui_locales_chooses_the_language_of_the_whole_sign_in(signin: SignIn) -> None:
    browser = signin.browser
    page = await browser.authorize(**Flow.start(signin.rp.client_id).params(ui_locales="ja de-CH fr"))
    assert page.status_code == 200 and in_language(page, "de")
    assert said("de", "Sign in") in page.text and ">Sign in<" not in page.text
    assert page.cookies.get(i18n.COOKIE) == "de" or "ostiary_locale=de" in page.headers.get("set-cookie", "")

    # the form's answer (a POST without ui_locales) keeps the language: the cookie
    refused = await browser.sign_in(page, "alice", "not the password")
    assert in_language(refused, "de")
    assert said("de", "That username and password do not match.") in refused.text
    consent = await browser.sign_in(refused, "alice")
    assert in_language(consent, "de") and said("de", "Allow") in consent.text


async def test_accept_language_chooses_when_the_request_names_none(signin: SignIn) -> None:
    async with httpx.AsyncClient(base_url=signin.live.base_url, headers={"Accept-Language": "fr-CA, de;q=0.5"}) as http:
        page = await Browser(http).authorize(**Flow.start(signin.rp.client_id).params())
        assert in_language(page, "fr") and said("fr", "Sign in") in page.text
        assert i18n.COOKIE not in page.headers.get("set-cookie", ""), "only ui_locales is remembered"
    async with httpx.AsyncClient(base_url=signin.live.base_url, headers={"Accept-Language": "ja, es"}) as http:
        page = await Browser(http).authorize(**Flow.start(signin.rp.client_id).params())
        assert in_language(page, "en") and ">Sign in<" in page.text


async def test_the_default_language_is_a_setting(database: TestDatabase, tmp_path: Path) -> None:
    async with mailed_server(database, tmp_path, default_locale="de") as mailed:
        page = await mailed.browser().http.get("/password/forgot")
        assert in_language(page, "de") and said("de", "Reset your password") in page.text


@pytest.fixture
async def mailed(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Mailed]:
    async with mailed_server(database, tmp_path) as server:
        yield server


async def test_a_mail_is_written_in_the_language_of_the_page_that_asked_for_it(mailed: Mailed) -> None:
    http = httpx.AsyncClient(base_url=mailed.live.base_url, timeout=10, headers={"Accept-Language": "de"})
    mailed.browsers.append(http)
    page = await forgot(Browser(http), "alice@example.com")
    assert in_language(page, "de")
    (message,) = await mailed.mailbox.wait_for(1)
    assert message["Subject"] == said("de", "Reset your password")
    html = message.get_body(preferencelist=("html",))
    assert html is not None and 'lang="de"' in html.get_content()

    await forgot(mailed.browser(), "alice@example.com")
    (_, english) = await mailed.mailbox.wait_for(2)
    assert english["Subject"] == "Reset your password"
