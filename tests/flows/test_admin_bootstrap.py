"""The first administrator: created at startup from the environment, then made to choose
their own password at the first sign-in.

``OSTIARY_ADMIN_EMAIL`` with ``OSTIARY_ADMIN_PASSWORD`` (or ``..._FILE``) makes startup
(:func:`server.bootstrap.prepare`, run by ``ostiary serve``) create one account, once: the
username is the address, it is an administrator, and it must change its password. Until it
has, signing in leads to the password-change page before any consent, code or account page.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from server.bootstrap import StartupError, prepare
from server.settings import Settings, SettingsError
from server.storage import users as user_store
from server.storage.engine import create_sessionmaker, make_engine
from server.storage.users import StoredUser
from server.users.passwords import Passwords
from tests.e2e.process import serving
from tests.helpers import Client, TestDatabase, create_client, make_settings, serve_in_process
from tests.hibp import BREACHED, RangeServer
from tests.oidc import REDIRECT_URI, Browser, Flow, query_of

pytestmark = pytest.mark.anyio

ADMIN = "admin@example.com"
FIRST = "the password from the environment"
NEW = "the admin's very own passphrase"
CHANGE_ERROR = re.compile(r'<div class="alert" role="alert" id="password-error">([^<]*)</div>')


async def stored_user(settings: Settings, email: str = ADMIN) -> StoredUser | None:
    engine = make_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            return await session.run_sync(user_store.get_user_by_email, email)
    finally:
        await engine.dispose()


async def password_works(settings: Settings, password: str) -> bool:
    admin = await stored_user(settings)
    assert admin is not None
    return Passwords(settings).verify(admin.password_hash, password).ok


# -- settings -----------------------------------------------------------------------------


def test_an_admin_address_without_a_password_is_refused_naming_the_password() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"OSTIARY_ADMIN_EMAIL": ADMIN})
    assert [name for name, _ in raised.value.problems] == ["OSTIARY_ADMIN_PASSWORD"]


def test_the_admin_password_may_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "admin-password"
    secret.write_text(FIRST + "\n")
    settings = Settings.from_env({"OSTIARY_ADMIN_EMAIL": ADMIN, "OSTIARY_ADMIN_PASSWORD_FILE": str(secret)})
    assert settings.admin_email == ADMIN
    assert settings.admin_password == FIRST
    assert FIRST not in repr(settings)


# -- startup ------------------------------------------------------------------------------


async def test_startup_creates_the_first_admin_flagged_to_change_the_password(
    database: TestDatabase, tmp_path: Path
) -> None:
    settings = make_settings(database, tmp_path, admin_email=ADMIN, admin_password=FIRST)
    assert await stored_user(settings) is None
    await prepare(settings)
    admin = await stored_user(settings)
    assert admin is not None
    assert (admin.username, admin.email) == (ADMIN, ADMIN)
    assert admin.is_admin and admin.must_change_password
    assert await password_works(settings, FIRST)


async def test_a_later_startup_leaves_the_admin_as_it_is(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path, admin_email=ADMIN, admin_password=FIRST)
    await prepare(settings)
    first = await stored_user(settings)
    await prepare(replace(settings, admin_password="another password from the environment"))
    assert await stored_user(settings) == first
    assert await password_works(settings, FIRST)
    # An administrator exists: another address does not make a second one.
    await prepare(replace(settings, admin_email="root@example.com"))
    assert await stored_user(settings, "root@example.com") is None


@pytest.mark.parametrize("password", ["eleven char", ADMIN])
async def test_an_admin_password_the_policy_refuses_stops_startup(
    database: TestDatabase, tmp_path: Path, password: str
) -> None:
    settings = make_settings(database, tmp_path, admin_email=ADMIN, admin_password=password)
    with pytest.raises(StartupError, match="^OSTIARY_ADMIN_PASSWORD: must "):
        await prepare(settings)
    assert await stored_user(settings) is None


async def test_ostiary_serve_creates_the_admin_from_a_password_file(database: TestDatabase, tmp_path: Path) -> None:
    settings = make_settings(database, tmp_path)
    secret = tmp_path / "admin-password"
    secret.write_text(FIRST + "\n")
    with serving(settings, tmp_path, OSTIARY_ADMIN_EMAIL=ADMIN, OSTIARY_ADMIN_PASSWORD_FILE=str(secret)) as (_, log):
        admin = await stored_user(settings)
    assert admin is not None and admin.is_admin and admin.must_change_password
    assert await password_works(settings, FIRST)
    assert FIRST not in "\n".join(log)


# -- the forced change ----------------------------------------------------------------------


@dataclass
class Site:
    """Ostiary over real HTTP, started with a first admin; a relying party that needs consent."""

    settings: Settings
    base_url: str
    rp: Client
    stack: AsyncExitStack

    async def browser(self) -> Browser:
        http = await self.stack.enter_async_context(httpx.AsyncClient(base_url=self.base_url, timeout=10))
        return Browser(http)

    async def signed_in_at_authorize(self, password: str = FIRST) -> tuple[Browser, Flow, httpx.Response]:
        """A new browser that signed in at an authorization request; the page it got."""
        browser, flow = await self.browser(), Flow.start(self.rp.client_id)
        login = await browser.authorize(**flow.params())
        return browser, flow, await browser.sign_in(login, ADMIN, password)

    async def signs_in(self, password: str) -> bool:
        """Whether the admin's password is ``password`` (a new browser signs in with it)."""
        browser = await self.browser()
        answered = await browser.sign_in(await browser.http.get("/account"), ADMIN, password)
        assert answered.status_code in (200, 303), answered.text
        return "do not match" not in answered.text


@pytest.fixture
def hibp() -> Iterator[RangeServer]:
    with RangeServer(listed={BREACHED: 3_861}) as server:
        yield server


@pytest.fixture
async def site(database: TestDatabase, tmp_path: Path, hibp: RangeServer) -> AsyncIterator[Site]:
    settings = make_settings(database, tmp_path, admin_email=ADMIN, admin_password=FIRST, hibp_url=hibp.url)
    async with AsyncExitStack() as stack:
        base_url = await stack.enter_async_context(serve_in_process(settings))  # runs prepare
        rp = await create_client(
            settings,
            name="Photo Prints",
            grant_types=["authorization_code"],
            scopes=["openid", "profile", "email"],
            redirect_uris=[REDIRECT_URI],
        )
        yield Site(settings, base_url, rp, stack)


def assert_change_page(page: httpx.Response) -> None:
    """The password-change page: not consent, no redirect (so no code)."""
    assert page.status_code == 200, page.text
    assert 'action="/login/password"' in page.text
    assert 'name="new_password"' in page.text and 'name="confirm_password"' in page.text
    assert 'name="decision"' not in page.text
    assert "location" not in page.headers


def change_error(page: httpx.Response) -> str:
    assert_change_page(page)
    match = CHANGE_ERROR.search(page.text)
    assert match, page.text
    return match.group(1)


async def choose(browser: Browser, page: httpx.Response, new: str, again: str | None = None) -> httpx.Response:
    return await browser.submit(page, {"new_password": new, "confirm_password": new if again is None else again})


async def test_signing_in_leads_to_the_change_page_and_only_there(site: Site) -> None:
    browser, flow, page = await site.signed_in_at_authorize()
    assert_change_page(page)
    assert "Photo Prints" in page.text
    # The same browser, signed in, asking again: still the change page, never a code.
    assert_change_page(await browser.authorize(**flow.params()))
    again = Flow.start(site.rp.client_id)
    assert_change_page(await browser.authorize(**again.params(prompt="consent")))


async def test_prompt_none_answers_interaction_required(site: Site) -> None:
    browser, flow, page = await site.signed_in_at_authorize()
    assert_change_page(page)
    silent = await browser.authorize(**flow.params(prompt="none"))
    assert silent.status_code == 302
    answer = query_of(silent.headers["location"])
    assert answer["error"] == "interaction_required"
    assert answer["state"] == flow.state
    assert "code" not in answer


async def test_a_refused_new_password_shows_the_page_again_with_why(site: Site) -> None:
    browser, _flow, page = await site.signed_in_at_authorize()
    refusals = [
        (NEW, NEW + " typo", "The new password and its confirmation differ."),
        ("eleven char", None, "The new password must be at least 12 characters."),
        ("x" * 1025, None, "The new password must be at most 1024 characters."),
        (ADMIN.upper(), None, "The new password must not be the username or the email address."),
        (BREACHED, None, "breach"),
    ]
    for new, again, why in refusals:
        page = await choose(browser, page, new, again)
        assert why in change_error(page)
    admin = await stored_user(site.settings)
    assert admin is not None and admin.must_change_password
    assert await password_works(site.settings, FIRST)


async def test_the_password_from_the_environment_is_not_a_new_password(site: Site) -> None:
    browser, _flow, page = await site.signed_in_at_authorize()
    change_error(await choose(browser, page, FIRST))
    admin = await stored_user(site.settings)
    assert admin is not None and admin.must_change_password


async def test_a_valid_new_password_continues_the_flow(site: Site) -> None:
    browser, flow, page = await site.signed_in_at_authorize()
    consent = await choose(browser, page, NEW)
    assert consent.status_code == 200, consent.text
    assert 'name="decision"' in consent.text
    back = await browser.submit(consent, decision="allow")
    assert back.status_code == 303, back.text
    answer = query_of(back.headers["location"])
    assert answer["state"] == flow.state
    tokens = await browser.http.post(
        "/token", data=flow.token_form(answer["code"]), auth=(site.rp.client_id, site.rp.client_secret)
    )
    assert tokens.status_code == 200, tokens.text
    admin = await stored_user(site.settings)
    assert admin is not None and not admin.must_change_password
    assert not await site.signs_in(FIRST)
    assert await site.signs_in(NEW)
    # The browser keeps a session: a silent request now gets a code.
    silent = await browser.authorize(**Flow.start(site.rp.client_id).params(prompt="none"))
    assert "code" in query_of(silent.headers["location"])


async def test_signing_in_to_the_account_leads_to_the_change_page_first(site: Site) -> None:
    browser = await site.browser()
    page = await browser.sign_in(await browser.http.get("/account"), ADMIN, FIRST)
    assert_change_page(page)
    assert "your Ostiary account" in page.text
    done = await choose(browser, page, NEW)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/account"
    account = await browser.http.get("/account")
    assert f'<strong id="account-username">{ADMIN}</strong>' in account.text
    assert await site.signs_in(NEW)


async def test_a_signed_in_admin_who_must_change_gets_the_change_page_at_the_account(site: Site) -> None:
    browser, _flow, page = await site.signed_in_at_authorize()
    assert_change_page(page)
    assert_change_page(await browser.http.get("/account"))
