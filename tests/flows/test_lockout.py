"""Login lockout and per-address rate limits on the sign-in page, over real HTTP.

An attempt is counted before its password is checked, so a locked account answers ``429``
whatever the guess; unknown usernames are counted alike; a browser that signed in before
(the signed ``ostiary_device`` cookie) has a counter of its own, so an attacker cannot lock
the owner out. Per-address limits answer ``429`` with ``Retry-After`` (RFC 6585 §4).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError

from server.settings import Settings
from tests.helpers import (
    Client,
    TestDatabase,
    create_client,
    create_user,
    make_settings,
    ostiary_command,
    ostiary_env,
    serve_in_process,
)
from tests.oidc import PASSWORD, REDIRECT_URI, Flow, forms_of

pytestmark = pytest.mark.anyio

WRONG = "not the password at all"
NEW_PASSWORD = "a brand new passphrase"
FIRST_WRONG = "That username and password do not match. 2 attempts left before the account is locked."
SECOND_WRONG = "That username and password do not match. 1 attempt left before the account is locked."
THIRD_WRONG = "That username and password do not match. This account is now locked for 15 minutes."
LOCKED = "Too many failed sign-ins for this account. Try again in 15 minutes."


@dataclass
class LoginBrowser:
    """One browser (its own cookie jar) on the sign-in page of one relying party."""

    http: httpx.AsyncClient
    client_id: str
    page: httpx.Response | None = None

    async def attempt(self, username: str, password: str) -> httpx.Response:
        """Submit the login form on the page shown (opening one when none is)."""
        if self.page is None:
            self.page = await self.http.get("/authorize", params=Flow.start(self.client_id).params(scope="openid"))
            assert self.page.status_code == 200, self.page.text
        (form,) = forms_of(self.page.text)
        assert form.action == "/login"
        response = await self.http.post("/login", data={**form.fields, "username": username, "password": password})
        self.page = response if 'name="password"' in response.text else None
        return response


@dataclass
class Site:
    """Ostiary served with some settings, a relying party, and the user alice."""

    settings: Settings
    base_url: str
    rp: Client
    stack: AsyncExitStack

    async def browser(self, **options: Any) -> LoginBrowser:
        http = httpx.AsyncClient(base_url=self.base_url, timeout=10, **options)
        await self.stack.enter_async_context(http)
        return LoginBrowser(http, self.rp.client_id)


Start = Callable[..., Awaitable[Site]]


@pytest.fixture
async def start(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Start]:
    """Starts Ostiary with the given settings (``make_settings`` overrides); stops it after."""
    async with AsyncExitStack() as stack:

        async def start(**overrides: Any) -> Site:
            settings = make_settings(database, tmp_path, **overrides)
            base_url = await stack.enter_async_context(serve_in_process(settings))
            rp = await create_client(
                settings, grant_types=["authorization_code"], scopes=["openid"], redirect_uris=[REDIRECT_URI]
            )
            await create_user(settings, "alice")
            return Site(settings, base_url, rp, stack)

        yield start


@pytest.fixture
async def redis_server() -> AsyncIterator[str]:
    url = "redis://127.0.0.1:6379"
    async with redis.from_url(url) as client:
        try:
            await client.ping()
        except RedisConnectionError as error:
            pytest.skip(f"no Redis at {url}: {error}")
    yield url


@pytest.fixture
async def redis_url(redis_server: str, database: TestDatabase) -> AsyncIterator[str]:
    """An emptied Redis database, one per database variant so that both may run side by side."""
    url = f"{redis_server}/{15 if database.kind == 'sqlite' else 14}"
    async with redis.from_url(url) as client:
        await client.flushdb()
        yield url
        await client.flushdb()


def error_of(page: httpx.Response) -> str:
    found = re.search(r'id="login-error">(.*?)</div>', page.text, re.S)
    assert found, page.text
    return found.group(1).strip()


def signed_in(response: httpx.Response) -> bool:
    """The password was accepted: a session cookie and the next step (consent or the redirect)."""
    return response.status_code in (200, 303) and "ostiary_session" in response.cookies


def retry_after(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    value = response.headers["retry-after"]
    assert value.isdigit(), value  # delay-seconds, RFC 9110 §10.2.3
    return int(value)


async def clear_of_boundary(period: float, margin: float) -> None:
    """Fixed windows restart at each multiple of ``period`` seconds: a test must not straddle
    one, so when the next is under ``margin`` away, wait until it has passed."""
    left = period - time.time() % period
    if left < margin:
        await anyio.sleep(left + 0.1)


async def lock(browser: LoginBrowser, username: str, threshold: int = 3) -> list[str]:
    """Fail ``threshold`` times; returns the error messages shown."""
    messages = []
    for _ in range(threshold):
        response = await browser.attempt(username, WRONG)
        assert response.status_code == 200, response.text
        messages.append(error_of(response))
    return messages


async def test_wrong_passwords_count_down_to_a_lock_that_refuses_even_the_right_one(start: Start) -> None:
    site = await start(lockout_threshold=3)
    browser = await site.browser()
    assert await lock(browser, "alice") == [FIRST_WRONG, SECOND_WRONG, THIRD_WRONG]
    wrong = await browser.attempt("alice", WRONG)
    assert 880 <= retry_after(wrong) <= 900
    assert wrong.headers["content-type"].startswith("text/html") and error_of(wrong) == LOCKED
    # Readable: the sign-in form is still there, to try again later.
    assert 'name="password"' in wrong.text and 'value="alice"' in wrong.text
    # The password is not checked: the right one gets the very same page.
    right = await browser.attempt("alice", PASSWORD)
    assert retry_after(right) > 0 and not signed_in(right)
    assert right.text == wrong.text


async def test_a_successful_sign_in_starts_the_count_again(start: Start) -> None:
    site = await start(lockout_threshold=3)
    first = await site.browser()
    assert await lock(first, "alice", threshold=2) == [FIRST_WRONG, SECOND_WRONG]
    assert signed_in(await first.attempt("alice", PASSWORD))
    # A new browser (no device cookie) counts on the same shared counter, from zero.
    second = await site.browser()
    assert await lock(second, "alice", threshold=2) == [FIRST_WRONG, SECOND_WRONG]
    assert error_of(await second.attempt("alice", WRONG)) == THIRD_WRONG


async def test_an_unknown_username_is_counted_and_locked_at_the_threshold(start: Start) -> None:
    site = await start(lockout_threshold=3)
    await clear_of_boundary(site.settings.lockout_window_seconds, margin=30)
    browser = await site.browser()
    first, second, third = await lock(browser, "nobody")
    assert [first, second] == [FIRST_WRONG, SECOND_WRONG]
    assert third.startswith("That username and password do not match. This account is now locked for ")
    refused = await browser.attempt("nobody", PASSWORD)
    assert retry_after(refused) > 0
    assert error_of(refused).startswith("Too many failed sign-ins for this account. Try again in ")
    # The real account's counter is untouched.
    assert error_of(await browser.attempt("alice", WRONG)) == FIRST_WRONG


async def test_an_unknown_username_shows_the_same_messages_as_a_real_account(start: Start) -> None:
    site = await start(lockout_threshold=3)
    window = site.settings.lockout_window_seconds
    # Away from both ends of the clock-aligned window, where the two would agree by chance.
    while not 10 <= time.time() % window <= window - 30:
        await anyio.sleep(1)
    real, ghost = await site.browser(), await site.browser()
    assert await lock(ghost, "nobody") == await lock(real, "alice")
    real_refused, ghost_refused = await real.attempt("alice", WRONG), await ghost.attempt("nobody", WRONG)
    assert error_of(ghost_refused) == error_of(real_refused)
    assert abs(retry_after(ghost_refused) - retry_after(real_refused)) <= 2


async def test_the_owners_known_device_still_signs_in_during_an_attack(start: Start) -> None:
    site = await start(lockout_threshold=3)
    owner, attacker = await site.browser(), await site.browser()
    assert signed_in(await owner.attempt("alice", PASSWORD))
    assert "ostiary_device" in owner.http.cookies
    owner.http.cookies.delete("ostiary_session")  # signed out; the device cookie stays

    await lock(attacker, "alice")
    assert retry_after(await attacker.attempt("alice", PASSWORD)) > 0
    assert signed_in(await owner.attempt("alice", PASSWORD))
    # The owner's sign-in did not reset the attacker's counter.
    assert retry_after(await attacker.attempt("alice", PASSWORD)) > 0


def tampered(genuine: str) -> list[str]:
    version, device, user_id, mac = genuine.split(".")
    return [
        f"{version}.{device[::-1]}.{user_id}.{mac}",  # another device id under the same MAC
        f"{version}.{device}.{int(user_id) + 1}.{mac}",  # another user
        f"{version}.{device}.{user_id}.{'A' * len(mac)}",  # a made-up MAC
        f"{version}.{device}.{user_id}",  # no MAC
        "d1.x.1.x",
    ]


async def test_a_forged_device_cookie_does_not_escape_the_lock(start: Start) -> None:
    site = await start(lockout_threshold=3)
    owner, attacker = await site.browser(), await site.browser()
    assert signed_in(await owner.attempt("alice", PASSWORD))
    genuine = owner.http.cookies["ostiary_device"]
    await lock(attacker, "alice")
    for forged in tampered(genuine):
        attacker.http.cookies.set("ostiary_device", forged, domain="127.0.0.1")
        refused = await attacker.attempt("alice", PASSWORD)
        assert retry_after(refused) > 0, forged
        assert error_of(refused) == LOCKED


async def test_a_genuine_device_cookie_of_another_account_does_not_escape_the_lock(start: Start) -> None:
    site = await start(lockout_threshold=3)
    await create_user(site.settings, "mallory", email="mallory@example.com")
    attacker = await site.browser()
    # The attacker's own account gives their browser a genuine cookie, naming mallory.
    assert signed_in(await attacker.attempt("mallory", PASSWORD))
    attacker.http.cookies.delete("ostiary_session")
    assert error_of(await attacker.attempt("alice", WRONG)) == FIRST_WRONG
    victim = await site.browser()
    assert error_of(await victim.attempt("alice", WRONG)) == SECOND_WRONG  # one shared counter


async def test_the_lock_ends_with_its_window(start: Start) -> None:
    site = await start(lockout_threshold=3, lockout_window_seconds=10)
    browser = await site.browser()
    await lock(browser, "alice")
    wait = retry_after(await browser.attempt("alice", PASSWORD))
    assert wait <= 10
    await anyio.sleep(wait + 1)
    assert signed_in(await browser.attempt("alice", PASSWORD))


async def test_an_unknown_usernames_lock_ends_with_its_window(start: Start) -> None:
    site = await start(lockout_threshold=3, lockout_window_seconds=10)
    # The lock and the wait inside one minute, as they would be for most users.
    while time.time() % 60 > 35:
        await anyio.sleep(1)
    browser = await site.browser()
    await lock(browser, "nobody")
    wait = retry_after(await browser.attempt("nobody", PASSWORD))
    assert wait <= 10
    await anyio.sleep(wait + 1)
    answered = await browser.attempt("nobody", WRONG)
    assert answered.status_code == 200 and error_of(answered) == FIRST_WRONG


async def test_setting_a_new_password_from_the_command_line_lifts_the_lock(start: Start, tmp_path: Path) -> None:
    site = await start(lockout_threshold=3)
    browser = await site.browser()
    await lock(browser, "alice")
    changed = await anyio.run_process(
        [*ostiary_command(), "users", "set-password", "--username", "alice", "--password-stdin"],
        input=(NEW_PASSWORD + "\n").encode(),
        env=ostiary_env(site.settings),
        cwd=tmp_path,
        check=False,
    )
    assert changed.returncode == 0, changed.stderr.decode()
    assert signed_in(await browser.attempt("alice", NEW_PASSWORD))


async def _fifth_login_post_is_refused(site: Site) -> None:
    await clear_of_boundary(60, margin=15)
    browser = await site.browser()
    for _ in range(4):
        answered = await browser.attempt("alice", WRONG)
        assert answered.status_code == 200
        assert error_of(answered) == "That username and password do not match. Check them and try again."
    refused = await browser.attempt("alice", PASSWORD)
    assert 0 < retry_after(refused) <= 61
    assert not signed_in(refused)
    assert error_of(refused).startswith("Too many sign-in attempts from your network. Try again in ")
    # The limit is per address: another one still signs in.
    elsewhere = await site.browser(transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2"))
    assert signed_in(await elsewhere.attempt("alice", PASSWORD))


async def test_the_login_rate_limit_refuses_the_fifth_post_in_a_minute(start: Start) -> None:
    site = await start(lockout_threshold=0, rate_limit_login=4)
    await _fifth_login_post_is_refused(site)


async def test_the_login_rate_limit_counts_in_redis_when_configured(start: Start, redis_url: str) -> None:
    site = await start(lockout_threshold=0, rate_limit_login=4, redis_url=redis_url)
    await _fifth_login_post_is_refused(site)
    async with redis.from_url(redis_url) as client:
        keys = await client.keys("ostiary:rl:login|127.0.0.1:*")
        assert len(keys) == 1 and int(await client.get(keys[0]) or 0) == 5


async def test_a_stopped_server_leaves_no_redis_connection_open(start: Start, redis_server: str) -> None:
    name = f"ostiary-test-{uuid.uuid4().hex[:12]}"
    site = await start(rate_limit_token=100, redis_url=f"{redis_server}/13?client_name={name}")
    assert [r.status_code for r in await _tokens(site, 1)] == [200]
    observer = redis.from_url(redis_server)
    try:
        assert [c for c in await observer.client_list() if c["name"] == name] != []  # counted in Redis
        await site.stack.aclose()  # the server stops
        assert [c for c in await observer.client_list() if c["name"] == name] == []
    finally:
        await observer.aclose()


async def _tokens(site: Site, count: int) -> list[httpx.Response]:
    client = await create_client(site.settings)
    browser = await site.browser()
    form = {"grant_type": "client_credentials"}
    auth = (client.client_id, client.client_secret)
    return [await browser.http.post("/token", data=form, auth=auth) for _ in range(count)]


async def test_the_token_endpoint_limit_answers_429_in_json(start: Start) -> None:
    site = await start(rate_limit_token=3)
    await clear_of_boundary(60, margin=15)
    *allowed, refused = await _tokens(site, 4)
    assert [r.status_code for r in allowed] == [200, 200, 200]
    assert 0 < retry_after(refused) <= 61
    assert refused.headers["content-type"].startswith("application/json")
    assert refused.json()["error"] == "temporarily_unavailable"


async def test_the_token_endpoint_is_not_limited_by_default(start: Start) -> None:
    site = await start()
    assert site.settings.rate_limit_token == 0
    assert {r.status_code for r in await _tokens(site, 30)} == {200}


async def test_with_lockout_off_wrong_passwords_never_lock(start: Start) -> None:
    site = await start(lockout_threshold=0)
    browser = await site.browser()
    for _ in range(10):
        answered = await browser.attempt("alice", WRONG)
        assert answered.status_code == 200
        assert error_of(answered) == "That username and password do not match. Check them and try again."
    assert signed_in(await browser.attempt("alice", PASSWORD))
