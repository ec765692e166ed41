"""The rules for a new password, over real HTTP and from the command line.

A new password is at least ``password_min_length`` (12) characters, at most 1,024, not the
account's username or email address, and not in Have I Been Pwned's list of breached
passwords. The breach check asks a local range server (``RangeServer``); when the service
cannot be reached, the password is accepted (fail open).
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest

from server.settings import Settings
from server.storage import users as user_store
from server.storage.engine import create_sessionmaker, make_engine
from server.users.passwords import Passwords
from tests.helpers import TestDatabase, create_user, make_settings, ostiary_command, ostiary_env, serve_in_process
from tests.hibp import BREACHED, CLEAN, RangeServer, closed_port_url, sha1_hex
from tests.mfa import sign_in_to_account, submit_form
from tests.oidc import PASSWORD, Browser

pytestmark = pytest.mark.anyio

USERNAME = "alice.wonderland"
EMAIL = "alice@example.com"
PROBLEM = re.compile(r'<div class="alert" role="alert" id="account-problem">([^<]*)</div>')


@dataclass
class Site:
    """Ostiary over real HTTP with one user, checking new passwords against ``hibp``."""

    settings: Settings
    base_url: str
    hibp: RangeServer | None
    stack: AsyncExitStack

    async def browser(self) -> Browser:
        http = await self.stack.enter_async_context(httpx.AsyncClient(base_url=self.base_url, timeout=10))
        return Browser(http)

    async def signs_in(self, password: str) -> bool:
        """Whether a new browser signs in to the account with ``password``."""
        browser = await self.browser()
        page = await browser.http.get("/account")
        answered = await browser.sign_in(page, USERNAME, password)
        return answered.status_code == 303


@asynccontextmanager
async def site_checking(database: TestDatabase, tmp_path: Path, hibp_url: str) -> AsyncIterator[Site]:
    settings = make_settings(database, tmp_path, hibp_url=hibp_url)
    async with AsyncExitStack() as stack:
        base_url = await stack.enter_async_context(serve_in_process(settings))
        await create_user(settings, USERNAME, email=EMAIL)
        yield Site(settings, base_url, None, stack)


@pytest.fixture
async def site(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Site]:
    with RangeServer(listed={BREACHED: 52_579}) as hibp:
        async with site_checking(database, tmp_path, hibp.url) as served:
            served.hibp = hibp
            yield served


async def change_on_account_page(site: Site, new: str, again: str | None = None) -> httpx.Response:
    """Sign in to /account in a new browser and submit the password form."""
    browser = await site.browser()
    page = await sign_in_to_account(browser, USERNAME)
    assert 'id="password-form"' in page.text, page.text
    return await submit_form(
        browser,
        page,
        "/account/password",
        current_password=PASSWORD,
        new_password=new,
        confirm_password=new if again is None else again,
    )


def problem_of(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    match = PROBLEM.search(response.text)
    assert match, response.text
    return match.group(1)


def prefixes_asked(hibp: RangeServer | None) -> list[str]:
    assert hibp is not None
    return [received.path.rpartition("/range/")[2] for received in hibp.requests]


# -- the account page ---------------------------------------------------------------------


async def test_the_account_page_refuses_a_breached_password(site: Site) -> None:
    refused = await change_on_account_page(site, BREACHED)
    assert "breach" in problem_of(refused)
    assert prefixes_asked(site.hibp) == [sha1_hex(BREACHED)[:5]]
    assert await site.signs_in(PASSWORD)
    assert not await site.signs_in(BREACHED)


async def test_the_account_page_refuses_a_short_password(site: Site) -> None:
    refused = await change_on_account_page(site, "eleven char")
    assert problem_of(refused) == "The new password must be at least 12 characters."
    assert await site.signs_in(PASSWORD)


@pytest.mark.parametrize("own_name", [USERNAME.upper(), EMAIL])
async def test_the_account_page_refuses_the_accounts_own_name(site: Site, own_name: str) -> None:
    refused = await change_on_account_page(site, own_name)
    assert problem_of(refused) == "The new password must not be the username or the email address."
    assert await site.signs_in(PASSWORD)


async def test_the_account_page_accepts_a_clean_password(site: Site) -> None:
    accepted = await change_on_account_page(site, CLEAN)
    assert accepted.status_code == 303, accepted.text
    assert accepted.headers["location"] == "/account?done=password"
    assert prefixes_asked(site.hibp) == [sha1_hex(CLEAN)[:5]]
    assert await site.signs_in(CLEAN)
    assert not await site.signs_in(PASSWORD)


async def test_a_password_is_accepted_when_the_breach_service_is_down(
    database: TestDatabase, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ostiary.passwords")
    async with site_checking(database, tmp_path, closed_port_url()) as down:
        # Fail open: the service cannot say, so even a breached password goes through.
        accepted = await change_on_account_page(down, BREACHED)
        assert accepted.status_code == 303, accepted.text
        assert accepted.headers["location"] == "/account?done=password"
        assert await down.signs_in(BREACHED)
    warnings = [r for r in caplog.records if r.name == "ostiary.passwords" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert BREACHED not in caplog.text


# -- the command line ---------------------------------------------------------------------


async def ostiary_users(settings: Settings, tmp_path: Path, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    env = ostiary_env(settings, OSTIARY_ARGON2_TIME_COST="2", OSTIARY_ARGON2_MEMORY_KIB="19456")
    done = await anyio.run_process(
        [*ostiary_command(), "users", *args], input=stdin.encode(), env=env, cwd=tmp_path, check=False
    )
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


async def password_works(settings: Settings, username: str, password: str) -> bool:
    engine = make_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            user = await session.run_sync(user_store.get_user_by_username, username)
    finally:
        await engine.dispose()
    assert user is not None, f"no user {username}"
    return Passwords(settings).verify(user.password_hash, password).ok


@pytest.fixture
def hibp() -> Iterator[RangeServer]:
    with RangeServer(listed={BREACHED: 52_579}) as server:
        yield server


def assert_refused_naming_the_password(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("ostiary: password: "), result.stderr
    assert "breach" in result.stderr


async def test_users_create_refuses_a_breached_password(
    database: TestDatabase, tmp_path: Path, hibp: RangeServer
) -> None:
    settings = make_settings(database, tmp_path, hibp_url=hibp.url)
    create = ("create", "--username", "carol", "--email", "carol@example.com", "--password-stdin")
    refused = await ostiary_users(settings, tmp_path, *create, stdin=BREACHED + "\n")
    assert_refused_naming_the_password(refused)
    assert prefixes_asked(hibp) == [sha1_hex(BREACHED)[:5]]
    created = await ostiary_users(settings, tmp_path, *create, stdin=CLEAN + "\n")
    assert created.returncode == 0, created.stderr
    assert "created user carol" in created.stdout
    assert await password_works(settings, "carol", CLEAN)


async def test_users_set_password_refuses_a_breached_password(
    database: TestDatabase, tmp_path: Path, hibp: RangeServer
) -> None:
    settings = make_settings(database, tmp_path, hibp_url=hibp.url)
    await create_user(settings, "alice")
    set_password = ("set-password", "--username", "alice", "--password-stdin")
    refused = await ostiary_users(settings, tmp_path, *set_password, stdin=BREACHED + "\n")
    assert_refused_naming_the_password(refused)
    assert prefixes_asked(hibp) == [sha1_hex(BREACHED)[:5]]
    assert await password_works(settings, "alice", PASSWORD)
    changed = await ostiary_users(settings, tmp_path, *set_password, stdin=CLEAN + "\n")
    assert changed.returncode == 0, changed.stderr
    assert await password_works(settings, "alice", CLEAN)
    assert not await password_works(settings, "alice", PASSWORD)


@pytest.mark.parametrize(
    "password, reason",
    [
        ("eleven char", "must be at least 12 characters"),
        ("x" * 1025, "must be at most 1024 characters"),
        ("Alice.Wonderland", "must not be the username or the email address"),
    ],
)
async def test_users_set_password_applies_the_policy(
    database: TestDatabase, tmp_path: Path, hibp: RangeServer, password: str, reason: str
) -> None:
    settings = make_settings(database, tmp_path, hibp_url=hibp.url)
    await create_user(settings, USERNAME, email=EMAIL)
    refused = await ostiary_users(
        settings, tmp_path, "set-password", "--username", USERNAME, "--password-stdin", stdin=password + "\n"
    )
    assert refused.returncode != 0
    assert refused.stderr == f"ostiary: password: {reason}\n"
    assert hibp.requests == []  # the policy is checked first; the service is asked only about a valid one
    assert await password_works(settings, USERNAME, PASSWORD)
