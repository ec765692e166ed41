"""Refresh tokens without ``offline_access`` live only as long as the sign-in they came from.

OpenID Connect Core §11: ``offline_access`` is what asks for access while the user is not
signed in. So a family issued without it is bound to the browser session of its sign-in
and ends with it: RP-initiated logout, signing out from /account, signing out everywhere,
the session expiring, another user signing in in that browser, a password change made in
another session. A family with ``offline_access`` survives all of them except signing out
everywhere (and revocation, and a password reset: tests/storage/test_session_end.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.flows.conftest import Live, SignIn
from tests.flows.test_refresh_tokens import Offline, make_offline, run_sql
from tests.helpers import Client, TestDatabase, create_client, create_user, make_settings, serve_in_process
from tests.mfa import change_password_at_account, sign_in_to_account, submit_form
from tests.oidc import Browser, Flow

pytestmark = pytest.mark.anyio

BOUND = "openid profile"
OFFLINE = "openid offline_access"
NEW_PASSWORD = "a new passphrase for alice"


@dataclass
class Families:
    """Two families from one sign-in in ``browser``: one bound to it, one offline."""

    offline: Offline
    browser: Browser
    bound: dict[str, str]
    kept: dict[str, str]

    async def alive(self) -> tuple[bool, bool]:
        """Does each family still refresh (bound, offline)? Each success is the family's next token."""
        results = []
        for name in ("bound", "kept"):
            tokens = getattr(self, name)
            response = await self.offline.refresh(tokens["refresh_token"])
            if response.status_code == 200:
                setattr(self, name, response.json())
            else:
                assert response.json()["error"] == "invalid_grant", response.text
            results.append(response.status_code == 200)
        return results[0], results[1]

    async def access_active(self) -> tuple[bool, bool]:
        return (
            (await self.offline.introspect(self.bound["access_token"]))["active"],
            (await self.offline.introspect(self.kept["access_token"]))["active"],
        )


async def families_in(offline: Offline, browser: Browser) -> Families:
    def sign_in() -> SignIn:
        return SignIn(offline.signin.live, offline.rp, "alice", browser)

    bound = await sign_in().tokens(Flow.start(offline.rp.client_id), scope=BOUND)
    kept = await sign_in().tokens(Flow.start(offline.rp.client_id), scope=OFFLINE)
    return Families(offline, browser, bound, kept)


@pytest.fixture
async def offline(signin: SignIn) -> Offline:
    await create_user(signin.live.settings, "bob", email="bob@example.com")
    return await make_offline(signin)


async def logout_with_hint(families: Families) -> None:
    hint = families.bound["id_token"]
    out = await families.browser.http.get(
        "/logout", params={"id_token_hint": hint, "client_id": families.offline.rp.client_id}
    )
    assert out.status_code == 200, out.text


async def sign_out_from_account(families: Families) -> None:
    """The account page's "Sign out of this browser": /logout without a hint, confirmed."""
    page = await families.browser.http.get("/logout")
    assert 'name="confirm"' in page.text, page.text
    done = await families.browser.submit(page, confirm="yes")
    assert done.status_code == 200 and "signed out" in done.text.lower(), done.text


async def sign_out_everywhere(families: Families) -> None:
    page = await sign_in_to_account(families.browser, "alice")
    done = await submit_form(families.browser, page, "/account/sign-out-everywhere")
    assert done.status_code == 303, done.text


async def another_user_signs_in(families: Families) -> None:
    flow = Flow.start(families.offline.rp.client_id)
    page = await families.browser.authorize(**flow.params(scope="openid", prompt="login"))
    page = await families.browser.sign_in(page, "bob")
    assert page.status_code in (200, 302, 303), page.text


async def the_same_user_signs_in_again(families: Families) -> None:
    flow = Flow.start(families.offline.rp.client_id)
    page = await families.browser.authorize(**flow.params(scope="openid", prompt="login"))
    page = await families.browser.sign_in(page, "alice")
    assert page.status_code in (200, 302, 303), page.text


Event = Callable[[Families], Awaitable[None]]


@pytest.mark.parametrize(
    ("event", "survivors"),
    [
        (logout_with_hint, (False, True)),
        (sign_out_from_account, (False, True)),
        (another_user_signs_in, (False, True)),
        (sign_out_everywhere, (False, False)),
        (the_same_user_signs_in_again, (True, True)),
    ],
    ids=lambda value: getattr(value, "__name__", None) or str(value),
)
async def test_which_families_survive_the_end_of_a_sign_in(
    offline: Offline, event: Event, survivors: tuple[bool, bool]
) -> None:
    families = await families_in(offline, offline.signin.browser)
    assert await families.alive() == (True, True)
    await event(families)
    assert await families.access_active() == survivors
    assert await families.alive() == survivors


async def test_a_password_change_ends_the_families_of_the_other_sessions_only(offline: Offline) -> None:
    here = await families_in(offline, offline.signin.browser)
    async with httpx.AsyncClient(base_url=offline.signin.live.base_url, timeout=10) as http:
        elsewhere = await families_in(offline, Browser(http))
        changed = await change_password_at_account(here.browser, NEW_PASSWORD)
        assert changed.status_code == 303, changed.text
        assert await elsewhere.alive() == (False, True)
    # The session that made the change goes on, and so do its families.
    assert await here.alive() == (True, True)
    assert (await sign_in_to_account(here.browser, "alice")).status_code == 200


async def test_a_code_redeemed_after_signing_out_gives_a_family_that_has_ended(offline: Offline) -> None:
    browser = offline.signin.browser
    flow = Flow.start(offline.rp.client_id)
    code = await SignIn(offline.signin.live, offline.rp, "alice", browser).code(flow, scope=BOUND)
    out = await browser.http.get("/logout")
    await browser.submit(out, confirm="yes")
    response = await offline.http.post("/token", data=flow.token_form(code), auth=offline.auth)
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert await offline.introspect(tokens["access_token"]) == {"active": False}
    assert (await offline.refresh(tokens["refresh_token"])).json()["error"] == "invalid_grant"


@pytest.fixture
async def short_sessions(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Offline]:
    settings = make_settings(database, tmp_path, session_ttl=4)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        await create_user(settings, "alice")
        live = Live(settings, base_url, http, await create_client(settings))
        yield await make_offline(SignIn(live, Client("", ""), "alice", Browser(http)))


async def test_a_bound_family_ends_when_its_session_expires(short_sessions: Offline) -> None:
    families = await families_in(short_sessions, short_sessions.signin.browser)
    (ends,) = await run_sql(short_sessions.signin.live.settings, "SELECT max(expires_at) FROM browser_sessions")
    ends_at = ends[0] if isinstance(ends[0], datetime) else datetime.fromisoformat(ends[0]).replace(tzinfo=UTC)
    assert await families.alive() == (True, True)
    await asyncio.sleep(max(0.0, (ends_at - datetime.now(UTC)).total_seconds()) + 0.5)
    assert await families.alive() == (False, True)
