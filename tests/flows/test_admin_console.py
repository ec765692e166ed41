"""The admin console (``/admin``) over real HTTP, on SQLite and PostgreSQL: who gets in
(signed out, not an administrator, no second factor, a stale second factor), and what its
forms do, each through the same services as the CLI, each refused without its CSRF token."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from html import unescape
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from server.settings import Settings
from server.storage import transactions
from server.storage.base import utcnow
from server.storage.engine import create_sessionmaker, make_engine
from server.storage.models import AuditEvent, BrowserSession, Invitation, SigningKey, User
from server.users import admin as user_admin
from server.users.admin import ProfileChanges
from tests.flows.conftest import Live, SignIn
from tests.helpers import create_client, create_user
from tests.mfa import Authenticator, enrol, sign_in_to_account, submit_form
from tests.oidc import REDIRECT_URI, Browser, Flow

pytestmark = pytest.mark.anyio

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_SECRET = re.compile(r'<code class="secret" id="client-secret">([^<]+)</code>')
_CLIENT_ID = re.compile(r'<code id="client-id">([^<]+)</code>')
_INVITATION_LINK = re.compile(r'<code class="secret" id="invitation-link">([^<]+)</code>')


async def db_run(settings: Settings, work: Any) -> Any:
    """``work(db)`` in one transaction on the server's database (test setup and checks)."""
    engine = make_engine(settings.database_url)
    try:
        return await transactions.run(create_sessionmaker(engine), work)
    finally:
        await engine.dispose()


async def make_admin(settings: Settings, username: str) -> str:
    """Give ``username`` the admin role (as ``ostiary users update --admin`` does); returns its sub."""
    user = await db_run(
        settings, lambda db: user_admin.update(db, username, ProfileChanges(is_admin=True), actor="cli")
    )
    return str(user.sub)


async def age_sessions(settings: Settings, username: str, seconds: int) -> None:
    """Make ``username``'s sessions look as if they had signed in ``seconds`` ago."""
    then = utcnow() - timedelta(seconds=seconds)

    def work(db: Any) -> None:
        user_id = db.execute(select(User.id).where(User.username == username)).scalar_one()
        db.execute(update(BrowserSession).where(BrowserSession.user_id == user_id).values(auth_time=then))

    await db_run(settings, work)


async def audit_count(settings: Settings) -> int:
    return int(await db_run(settings, lambda db: db.execute(select(func.count()).select_from(AuditEvent)).scalar_one()))


def csrf_of(page: httpx.Response) -> str:
    match = _CSRF.search(page.text)
    assert match, page.text
    return unescape(match.group(1))


@dataclass
class Console:
    live: Live
    browser: Browser
    app: Authenticator
    sub: str

    @property
    def http(self) -> httpx.AsyncClient:
        return self.browser.http

    async def post(self, path: str, **values: str) -> httpx.Response:
        """Post a console form with this browser's CSRF token."""
        page = await self.http.get("/admin/keys")  # a page with a form
        assert page.status_code == 200, page.text
        return await self.http.post(path, data={"csrf_token": csrf_of(page), **values})


@pytest.fixture
async def console(live: Live) -> AsyncIterator[Console]:
    """An administrator ``root`` with TOTP, signed in with both factors just now."""
    await create_user(live.settings, "root", email="root@example.com")
    sub = await make_admin(live.settings, "root")
    browser = Browser(live.http)
    enrolled = await enrol(browser, "root")
    yield Console(live, browser, enrolled.app, sub)


async def new_browser(live: Live) -> AsyncIterator[Browser]:
    async with httpx.AsyncClient(base_url=live.base_url, timeout=10) as http:
        yield Browser(http)


@pytest.fixture
async def other_browser(live: Live) -> AsyncIterator[Browser]:
    async for browser in new_browser(live):
        yield browser


# -- who gets in -------------------------------------------------------------------------


async def test_signed_out_gets_the_sign_in_page_which_comes_back(live: Live, other_browser: Browser) -> None:
    await create_user(live.settings, "root", email="root@example.com")
    await make_admin(live.settings, "root")
    page = await other_browser.http.get("/admin/users?q=ro")
    assert page.status_code == 200
    assert 'name="password"' in page.text and 'action="/login"' in page.text
    signed_in = await other_browser.sign_in(page, "root")
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/admin/users?q=ro"
    assert signed_in.headers["cache-control"] == "no-store"


async def test_a_user_without_the_admin_role_is_refused(live: Live, other_browser: Browser) -> None:
    await create_user(live.settings, "alice")
    await sign_in_to_account(other_browser, "alice")
    for path in ("/admin", "/admin/users", "/admin/clients", "/admin/keys", "/admin/audit"):
        page = await other_browser.http.get(path)
        assert page.status_code == 403, path
        assert 'id="forbidden"' in page.text
        assert page.headers["cache-control"] == "no-store"
    posted = await other_browser.http.post(
        "/admin/keys/rotate", data={"csrf_token": csrf_of(await other_browser.http.get("/account")), "alg": "RS256"}
    )
    assert posted.status_code == 403


async def test_an_admin_without_a_second_factor_is_sent_to_enrol_one(live: Live, other_browser: Browser) -> None:
    await create_user(live.settings, "root", email="root@example.com")
    await make_admin(live.settings, "root")
    await sign_in_to_account(other_browser, "root")
    page = await other_browser.http.get("/admin")
    assert page.status_code == 403
    assert 'id="enrol-needed"' in page.text and 'href="/account"' in page.text


async def test_a_password_only_sign_in_is_asked_for_the_code(console: Console, other_browser: Browser) -> None:
    page = await other_browser.http.get("/admin/keys")
    page = await other_browser.sign_in(page, "root")
    assert page.status_code == 200 and 'name="code"' in page.text  # not in yet: the code is due
    wrong = await submit_form(other_browser, page, "/login/otp", code=console.app.wrong())
    assert 'id="otp-error"' in wrong.text
    right = await submit_form(other_browser, wrong, "/login/otp", code=await console.app.code())
    assert right.status_code == 303 and right.headers["location"] == "/admin/keys"
    keys = await other_browser.http.get("/admin/keys")
    assert keys.status_code == 200 and 'id="keys"' in keys.text


async def test_a_stale_second_factor_is_asked_for_again(console: Console) -> None:
    assert (await console.http.get("/admin/users")).status_code == 200
    await age_sessions(console.live.settings, "root", console.live.settings.admin_step_up_seconds + 60)
    page = await console.http.get("/admin/users?q=ro")
    assert page.status_code == 200 and 'id="step-up-form"' in page.text
    assert 'id="users"' not in page.text
    wrong = await submit_form(console.browser, page, "/admin/step-up", code=console.app.wrong())
    assert wrong.status_code == 400 and 'id="step-up-error"' in wrong.text
    before = await audit_count(console.live.settings)
    refused = await console.http.post("/admin/users/" + console.sub + "/unlock", data={"csrf_token": csrf_of(wrong)})
    assert refused.status_code == 200 and 'id="step-up-form"' in refused.text  # a form waits, too
    assert await audit_count(console.live.settings) == before
    right = await submit_form(console.browser, wrong, "/admin/step-up", code=await console.app.code())
    assert right.status_code == 303 and right.headers["location"] == "/admin/users?q=ro"
    page = await console.http.get("/admin/users?q=ro")
    assert page.status_code == 200 and 'id="users"' in page.text and "root" in page.text


async def test_the_step_up_counts_toward_the_lockout(console: Console) -> None:
    settings = console.live.settings
    await age_sessions(settings, "root", settings.admin_step_up_seconds + 60)
    page = await console.http.get("/admin")
    for _ in range(settings.lockout_threshold):
        page = await submit_form(console.browser, page, "/admin/step-up", code=console.app.wrong())
    assert page.status_code == 429, page.text
    page = await submit_form(console.browser, page, "/admin/step-up", code=await console.app.unspent())
    assert page.status_code == 429 and "Too many wrong codes" in page.text


# -- forms -------------------------------------------------------------------------------


async def test_every_form_without_its_csrf_token_is_refused_and_changes_nothing(console: Console) -> None:
    settings = console.live.settings
    await create_user(settings, "alice")
    alice = await db_run(settings, lambda db: user_admin.find(db, "alice"))
    client_id = console.live.client.client_id
    posts = [
        (f"/admin/users/{alice.sub}/{action}", {})
        for action in ("disable", "enable", "unlock", "reset-mfa", "end-sessions")
    ]
    posts += [
        (f"/admin/users/{console.sub}/end-session", {"sid": "x"}),
        ("/admin/clients", {"name": "Evil", "grant_client_credentials": "on", "scopes": "api:read"}),
        (f"/admin/clients/{client_id}/rotate-secret", {"keep_old_for": "0"}),
        (f"/admin/clients/{client_id}/disable", {}),
        ("/admin/keys/rotate", {"alg": "RS256", "now": "on"}),
        ("/admin/invitations", {"email": "", "expires_in": ""}),
        ("/admin/invitations/1/revoke", {}),
        ("/admin/step-up", {"code": "123456", "next": "/admin"}),
    ]
    before = await audit_count(settings)
    for path, values in posts:
        for token in ({}, {"csrf_token": "forged"}):
            response = await console.http.post(path, data={**values, **token})
            assert response.status_code == 403, (path, response.text)
    assert await audit_count(settings) == before
    alice = await db_run(settings, lambda db: user_admin.find(db, "alice"))
    assert alice.disabled_at is None


async def test_disabling_a_user_refuses_their_sign_in_until_enabled(console: Console, other_browser: Browser) -> None:
    settings = console.live.settings
    await create_user(settings, "alice")
    await sign_in_to_account(other_browser, "alice")
    alice = await db_run(settings, lambda db: user_admin.find(db, "alice"))
    page = await console.http.get(f"/admin/users?q={'ALI'}")
    assert f'href="/admin/users/{alice.sub}"' in page.text
    profile = await console.http.get(f"/admin/users/{alice.sub}")
    assert 'id="sessions"' in profile.text and 'id="disable-form"' in profile.text
    done = await submit_form(console.browser, profile, f"/admin/users/{alice.sub}/disable")
    assert done.status_code == 303 and done.headers["location"] == f"/admin/users/{alice.sub}?done=disabled"
    profile = await console.http.get(done.headers["location"])
    assert 'id="done"' in profile.text and "disabled since" in profile.text and 'id="no-sessions"' in profile.text
    assert "user.disabled" in profile.text and f"user:{console.sub}" in profile.text  # the audit row names the admin
    # the session the user had is over, and signing in again is refused
    page = await other_browser.http.get("/account")
    assert 'name="password"' in page.text
    refused = await other_browser.sign_in(page, "alice")
    assert refused.status_code == 200 and 'name="password"' in refused.text
    enabled = await submit_form(console.browser, profile, f"/admin/users/{alice.sub}/enable")
    assert enabled.headers["location"].endswith("?done=enabled")
    page = await other_browser.http.get("/account")
    assert (await other_browser.sign_in(page, "alice")).status_code == 303


async def test_an_admin_cannot_disable_themselves(console: Console) -> None:
    response = await console.post(f"/admin/users/{console.sub}/disable")
    assert response.status_code == 400 and 'id="admin-problem"' in response.text
    assert (await console.http.get("/admin")).status_code == 200


async def test_unlock_reset_second_factor_and_end_sessions(console: Console, other_browser: Browser) -> None:
    settings = console.live.settings
    await create_user(settings, "alice")
    await enrol(other_browser, "alice")
    alice = await db_run(settings, lambda db: user_admin.find(db, "alice"))
    async for stranger in new_browser(console.live):
        for _ in range(settings.lockout_threshold):
            page = await stranger.http.get("/account")
            await stranger.sign_in(page, "alice", "wrong password")
    profile = await console.http.get(f"/admin/users/{alice.sub}")
    assert "yes: too many wrong password attempts" in profile.text
    assert "yes: an authenticator app" in profile.text
    (sid,) = re.findall(r'name="sid" value="([^"]+)"', profile.text)
    moved = await console.post(f"/admin/users/{alice.sub}/unlock")
    assert moved.headers["location"].endswith("?done=unlocked")
    profile = await console.http.get(f"/admin/users/{alice.sub}")
    assert 'id="lock-state">no<' in profile.text
    unknown = await console.post(f"/admin/users/{alice.sub}/end-session", sid="no-such-session")
    assert unknown.status_code == 400 and 'id="admin-problem"' in unknown.text
    ended = await console.post(f"/admin/users/{alice.sub}/end-session", sid=sid)
    assert ended.headers["location"].endswith("?done=session-ended")
    assert 'name="password"' in (await other_browser.http.get("/account")).text
    reset = await console.post(f"/admin/users/{alice.sub}/reset-mfa")
    assert reset.headers["location"].endswith("?done=mfa-reset")
    profile = await console.http.get(f"/admin/users/{alice.sub}")
    assert 'id="mfa-state">no<' in profile.text and "mfa.reset" in profile.text
    # with no second factor left, the password alone signs her in
    page = await other_browser.http.get("/account")
    assert (await other_browser.sign_in(page, "alice")).status_code == 303
    all_ended = await console.post(f"/admin/users/{alice.sub}/end-sessions")
    assert all_ended.headers["location"].endswith("?done=sessions-ended")
    assert 'name="password"' in (await other_browser.http.get("/account")).text


async def test_a_new_client_shows_its_secret_once_and_the_secret_works(console: Console) -> None:
    created = await console.post(
        "/admin/clients", name="Nightly export", kind="confidential", grant_client_credentials="on", scopes="api:read"
    )
    assert created.status_code == 200, created.text
    assert created.headers["cache-control"] == "no-store"
    secret = unescape(_SECRET.search(created.text).group(1))  # type: ignore[union-attr]
    client_id = unescape(_CLIENT_ID.search(created.text).group(1))  # type: ignore[union-attr]
    token = await console.http.post(
        "/token", data={"grant_type": "client_credentials", "scope": "api:read"}, auth=(client_id, secret)
    )
    assert token.status_code == 200, token.text
    details = await console.http.get(f"/admin/clients/{client_id}")
    assert details.status_code == 200 and "Nightly export" in details.text and secret not in details.text
    listing = await console.http.get("/admin/clients")
    assert client_id in listing.text and secret not in listing.text
    events = await console.http.get(f"/admin/audit?client={client_id}")
    assert "client.created" in events.text and f"user:{console.sub}" in events.text


async def test_a_public_client_has_no_secret_and_bad_input_is_explained(console: Console) -> None:
    public = await console.post(
        "/admin/clients",
        name="Phone app",
        kind="public",
        grant_authorization_code="on",
        scopes="openid",
        redirect_uris="com.example.app:/callback https://app.example.com/cb",
    )
    assert public.status_code == 303 and public.headers["location"].endswith("?done=created")
    for values in (
        {"name": "", "grant_client_credentials": "on"},
        {"name": "No grant"},
        {"name": "Bad URI", "grant_authorization_code": "on", "redirect_uris": "http://example.com/cb"},
        {"name": "x" * 300, "grant_client_credentials": "on"},
        {"name": "Bad scope", "grant_client_credentials": "on", "scopes": "a\\b"},
    ):
        refused = await console.post("/admin/clients", **values)
        assert refused.status_code == 400 and 'id="admin-problem"' in refused.text, values
    # a control character is refused by the form reader itself, as on every form
    assert (await console.post("/admin/clients", name="Bad\x00name", grant_client_credentials="on")).status_code == 403


async def test_rotating_a_secret_shows_the_new_one_and_keeps_the_old_for_the_overlap(console: Console) -> None:
    client = console.live.client

    async def works(secret: str) -> bool:
        response = await console.http.post(
            "/token", data={"grant_type": "client_credentials", "scope": "api:read"}, auth=(client.client_id, secret)
        )
        return response.status_code == 200

    rotated = await console.post(f"/admin/clients/{client.client_id}/rotate-secret", keep_old_for="3600")
    assert rotated.status_code == 200 and 'id="client-secret"' in rotated.text
    new = unescape(_SECRET.search(rotated.text).group(1))  # type: ignore[union-attr]
    assert await works(new) and await works(client.client_secret)
    again = await console.post(f"/admin/clients/{client.client_id}/rotate-secret", keep_old_for="0")
    newest = unescape(_SECRET.search(again.text).group(1))  # type: ignore[union-attr]
    await asyncio.sleep(console.live.settings.client_cache_ttl + 0.5)  # the server's cached client ends
    assert await works(newest) and not await works(new)
    page = await console.http.get(f"/admin/clients/{client.client_id}")
    assert "Old secret accepted until" not in page.text and newest not in page.text
    bad = await console.post(f"/admin/clients/{client.client_id}/rotate-secret", keep_old_for="-5")
    assert bad.status_code == 400


async def test_disabling_a_client_refuses_it(console: Console) -> None:
    client = console.live.client
    moved = await console.post(f"/admin/clients/{client.client_id}/disable")
    assert moved.headers["location"].endswith("?done=disabled")
    token = await console.http.post(
        "/token", data={"grant_type": "client_credentials"}, auth=(client.client_id, client.client_secret)
    )
    assert token.status_code == 401
    page = await console.http.get(moved.headers["location"])
    assert "disabled since" in page.text and 'id="enable-client-form"' in page.text
    assert (await console.post(f"/admin/clients/{client.client_id}/enable")).headers["location"].endswith("=enabled")


async def test_keys_rotate_staged_and_at_once(console: Console) -> None:
    settings = console.live.settings

    async def count() -> int:
        query = select(func.count()).select_from(SigningKey)
        return int(await db_run(settings, lambda db: db.execute(query).scalar_one()))

    before = await count()
    staged = await console.post("/admin/keys/rotate", alg="ES256")
    assert staged.status_code == 303 and staged.headers["location"] == "/admin/keys?done=staged"
    page = await console.http.get(staged.headers["location"])
    assert "staged" in page.text and "ES256" in page.text and 'id="done"' in page.text
    now = await console.post("/admin/keys/rotate", alg="RS256", now="on")
    assert now.headers["location"] == "/admin/keys?done=now"
    assert await count() == before + 2
    page = await console.http.get("/admin/audit?type=key")
    assert "key.staged" in page.text and "key.activated" in page.text
    assert (await console.post("/admin/keys/rotate", alg="HS256")).status_code == 400


async def test_search_pages_and_bad_addresses_are_readable(console: Console) -> None:
    settings = console.live.settings
    hashed = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$ZmFrZWhhc2hmYWtlaGFzaGZha2VoYXNo"
    for n in range(26):
        await create_user(settings, f"member{n:02d}", email=f"member{n:02d}@example.com", password_hash=hashed)
    first = await console.http.get("/admin/users?q=MEMBER")
    assert first.text.count('href="/admin/users/') == 25
    (next_page,) = re.findall(r'href="([^"]+)" id="next-page"', first.text)
    second = await console.http.get(unescape(next_page))
    assert second.status_code == 200 and "member25" in second.text and "member00" not in second.text
    for path, status in (
        ("/admin/users?after=abc", 400),
        ("/admin/users/no-such-sub", 404),
        ("/admin/users/%00", 404),
        ("/admin/users?q=%00", 400),
        ("/admin/clients/no-such-client", 404),
        ("/admin/audit?before=-1", 400),
        ("/admin/audit?user=%00", 400),
        (f"/admin/users?q={'x' * 300}", 400),
    ):
        response = await console.http.get(path)
        assert response.status_code == status, (path, response.text)
        assert 'id="admin-problem"' in response.text
    audit = await console.http.get("/admin/audit?type=mfa")
    kinds = re.findall(r"<td><code>([a-z_.]+)</code>", audit.text)
    assert kinds and all(kind.startswith("mfa.") for kind in kinds)


async def test_a_users_page_shows_their_grants_and_clients_link_back(console: Console, other_browser: Browser) -> None:
    settings = console.live.settings
    rp = await create_client(
        settings,
        name="Photo Prints",
        grant_types=["authorization_code", "refresh_token"],
        scopes=["openid", "profile", "offline_access"],
        redirect_uris=[REDIRECT_URI],
    )
    await create_user(settings, "alice")
    flow = Flow.start(rp.client_id)
    signed_in = SignIn(console.live, rp, "alice", other_browser)
    tokens = await signed_in.tokens(flow, scope="openid offline_access", prompt="consent")
    assert "refresh_token" in tokens
    alice = await db_run(settings, lambda db: user_admin.find(db, "alice"))
    profile = await console.http.get(f"/admin/users/{alice.sub}")
    assert 'id="grants"' in profile.text and f'href="/admin/clients/{rp.client_id}"' in profile.text
    assert "offline access" in profile.text
    client_page = await console.http.get(f"/admin/clients/{rp.client_id}")
    assert "Photo Prints" in client_page.text and REDIRECT_URI in client_page.text


async def test_invitations_are_made_shown_once_and_revoked(console: Console) -> None:
    settings = console.live.settings
    page = await console.http.get("/admin/invitations")
    assert page.status_code == 200 and 'id="no-invitations"' in page.text and 'id="create-invitation-form"' in page.text
    assert '<a href="/admin/invitations" aria-current="page">Invitations</a>' in page.text
    assert 'id="signup-mode"' in page.text  # OSTIARY_SIGNUP is off here: the page says so
    made = await submit_form(console.browser, page, "/admin/invitations", email="Ann@Example.com", expires_in="86400")
    assert made.status_code == 200 and made.headers["cache-control"] == "no-store", made.text
    link = unescape(_INVITATION_LINK.search(made.text).group(1))  # type: ignore[union-attr]
    assert link.startswith(settings.issuer + "/signup?invitation=")
    (stored,) = await db_run(settings, lambda db: db.execute(select(Invitation)).scalars().all())
    assert bytes(stored.token_digest) == hashlib.sha256(link.split("invitation=")[1].encode()).digest()
    assert stored.email == "Ann@Example.com" and stored.created_by == f"user:{console.sub}"
    assert timedelta(hours=23) < stored.expires_at - utcnow() <= timedelta(days=1)
    any_address = await console.post("/admin/invitations", email="", expires_in="")
    assert any_address.status_code == 200 and 'id="invitation-link"' in any_address.text

    listing = await console.http.get("/admin/invitations")
    assert "Ann@Example.com" in listing.text and "any address" in listing.text and link not in listing.text
    assert listing.text.count('class="revoke-invitation-form"') == 2
    revoked = await submit_form(console.browser, listing, f"/admin/invitations/{stored.id}/revoke")
    assert revoked.status_code == 303 and revoked.headers["location"] == "/admin/invitations?done=revoked"
    listing = await console.http.get(revoked.headers["location"])
    assert 'id="done"' in listing.text and "Ann@Example.com" not in listing.text
    every = await console.http.get("/admin/invitations?state=all")
    assert "Ann@Example.com" in every.text and '<span class="tag off">revoked</span>' in every.text
    events = await console.http.get("/admin/audit?type=invitation")
    assert "invitation.revoked" in events.text and f"user:{console.sub}" in events.text

    for path, values, status in (
        (f"/admin/invitations/{stored.id}/revoke", {}, 404),  # no longer live
        ("/admin/invitations/abc/revoke", {}, 404),
        ("/admin/invitations/99999999999/revoke", {}, 404),
        ("/admin/invitations", {"email": "not an address", "expires_in": ""}, 400),
        ("/admin/invitations", {"email": "", "expires_in": "5"}, 400),
        ("/admin/invitations", {"email": "x" * 300, "expires_in": ""}, 400),
    ):
        refused = await console.post(path, **values)
        assert refused.status_code == status and 'id="admin-problem"' in refused.text, (path, refused.text)
    assert await db_run(settings, lambda db: db.execute(select(func.count()).select_from(Invitation)).scalar_one()) == 2


async def test_an_invitation_waits_for_a_fresh_second_factor(console: Console) -> None:
    settings = console.live.settings
    page = await console.http.get("/admin/invitations")
    await age_sessions(settings, "root", settings.admin_step_up_seconds + 60)
    before = await audit_count(settings)
    waiting = await submit_form(console.browser, page, "/admin/invitations", email="", expires_in="")
    assert waiting.status_code == 200 and 'id="step-up-form"' in waiting.text
    assert 'name="next" value="/admin/invitations"' in waiting.text and 'id="invitation-link"' not in waiting.text
    assert await audit_count(settings) == before
