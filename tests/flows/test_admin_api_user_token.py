"""An administrator's own token on the admin API, end to end over real HTTP on SQLite and
PostgreSQL: the user holds the admin role, signs in to a console-like client through the
browser code flow with password and TOTP, and calls ``/admin/api/v1/users`` with the access
token; the change it makes is audited as ``user:<sub>``. Refused: a user without the admin
role (403), an administrator who signed in with the password alone (403, RFC 9470's
``insufficient_user_authentication``), an administrator disabled since (401), and no token
at all (401, a bare ``Bearer`` challenge)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import jwt
import pytest
from sqlalchemy import update

from server.storage.base import utcnow
from server.storage.engine import make_engine
from server.storage.models import BrowserSession
from tests.admin import API, AdminApi, assert_problem
from tests.flows.conftest import Live
from tests.helpers import Client, create_client
from tests.mfa import Authenticator, enrol
from tests.oidc import PASSWORD, REDIRECT_URI, Browser, Flow, query_of

pytestmark = pytest.mark.anyio

ACR_MFA = "urn:ostiary:acr:mfa"


@pytest.fixture
async def console(live: Live) -> Client:
    """A client an administrator registered for the admin scope, as the console is."""
    return await create_client(
        live.settings,
        name="Admin console",
        grant_types=["authorization_code"],
        scopes=["openid", "ostiary:admin"],
        redirect_uris=[REDIRECT_URI],
    )


async def new_user(api: AdminApi, username: str, *, is_admin: bool) -> str:
    """A user made through the API (the admin role needs the full admin scope); their sub."""
    body = {"username": username, "email": f"{username}@example.com", "password": PASSWORD, "admin": is_admin}
    created = await api.ok("POST", "/users", json=body)
    assert created["admin"] is is_admin
    sub: str = created["sub"]
    return sub


async def with_totp(live: Live, username: str) -> Authenticator:
    async with httpx.AsyncClient(base_url=live.base_url, timeout=10) as http:
        return (await enrol(Browser(http), username)).app


async def token_through_browser(live: Live, console: Client, username: str, app: Authenticator | None) -> str:
    """Sign in at the console's authorization request (with the code of ``app`` when given,
    asking for the MFA level), consent, and redeem the code: the access token."""
    async with httpx.AsyncClient(base_url=live.base_url, timeout=10) as http:
        return await token_in(Browser(http), console, username, app)


async def token_in(browser: Browser, console: Client, username: str | None, app: Authenticator | None) -> str:
    """:func:`token_through_browser` in ``browser``; ``username`` None: it is signed in already."""
    flow = Flow.start(console.client_id)
    extra = {"acr_values": ACR_MFA} if app is not None or username is None else {}
    page = await browser.authorize(**flow.params(scope="openid ostiary:admin", **extra))
    if username is not None:
        page = await browser.sign_in(page, username)
    if app is not None:
        assert 'action="/login/otp"' in page.text, page.text
        page = await browser.submit(page, {"code": await app.code()})
    if page.status_code == 200 and 'name="decision"' in page.text:
        page = await browser.submit(page, decision="allow")
    assert page.status_code in (302, 303), page.text
    code = query_of(page.headers["location"])["code"]
    response = await browser.http.post(
        "/token", data=flow.token_form(code), auth=(console.client_id, console.client_secret)
    )
    assert response.status_code == 200, response.text
    assert "ostiary:admin" in response.json()["scope"].split()
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["aud"] == str(browser.http.base_url).rstrip("/") + API  # the admin API alone
    token: str = response.json()["access_token"]
    return token


async def test_an_admin_signed_in_with_a_second_factor_uses_the_api_as_themselves(
    admin_api: AdminApi, console: Client
) -> None:
    live = admin_api.live
    root = await new_user(admin_api, "root", is_admin=True)
    alice = await new_user(admin_api, "alice", is_admin=False)
    token = await token_through_browser(live, console, "root", await with_totp(live, "root"))

    listed = await admin_api.ok("GET", "/users", token=token)
    assert {user["username"] for user in listed["items"]} == {"root", "alice"}
    renamed = await admin_api.ok("PATCH", f"/users/{alice}", json={"name": "Alice L."}, token=token)
    assert renamed["name"] == "Alice L."

    events = (await admin_api.ok("GET", f"/audit?user={alice}&type=user.updated"))["items"]
    assert [event["actor"] for event in events] == [f"user:{root}"]


async def test_a_user_without_the_admin_role_is_403(admin_api: AdminApi, console: Client) -> None:
    live = admin_api.live
    await new_user(admin_api, "alice", is_admin=False)
    token = await token_through_browser(live, console, "alice", await with_totp(live, "alice"))

    response = await admin_api.call("GET", "/users", token=token)
    assert_problem(response, 403)
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


async def test_an_admin_signed_in_with_the_password_alone_must_step_up(admin_api: AdminApi, console: Client) -> None:
    await new_user(admin_api, "root", is_admin=True)
    token = await token_through_browser(admin_api.live, console, "root", None)

    response = await admin_api.call("GET", "/users", token=token)
    assert_problem(response, 403)
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_user_authentication"' in challenge and ACR_MFA in challenge


async def test_an_admin_disabled_since_is_401(admin_api: AdminApi, console: Client) -> None:
    live = admin_api.live
    root = await new_user(admin_api, "root", is_admin=True)
    await new_user(admin_api, "deputy", is_admin=True)  # the last administrator cannot be disabled
    token = await token_through_browser(live, console, "root", await with_totp(live, "root"))
    assert (await admin_api.call("GET", "/users", token=token)).status_code == 200

    await admin_api.ok("POST", f"/users/{root}/disable")
    response = await admin_api.call("GET", "/users", token=token)
    assert_problem(response, 401)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_no_token_is_401_with_a_bare_challenge(admin_api: AdminApi) -> None:
    response = await admin_api.http.get(f"{API}/users")
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == 'Bearer realm="ostiary-admin"'


async def test_an_admin_whose_second_factor_is_stale_must_sign_in_again(admin_api: AdminApi, console: Client) -> None:
    """A token from a sign-in older than OSTIARY_ADMIN_STEP_UP_SECONDS (a refreshed token,
    or one from a long single sign-on session) is refused, as the console would ask again."""
    live = admin_api.live
    await new_user(admin_api, "root", is_admin=True)
    app = await with_totp(live, "root")
    async with httpx.AsyncClient(base_url=live.base_url, timeout=10) as http:
        browser = Browser(http)
        fresh = await token_in(browser, console, "root", app)
        assert (await admin_api.call("GET", "/users", token=fresh)).status_code == 200
        await sign_in_earlier(live, timedelta(seconds=live.settings.admin_step_up_seconds + 60))
        stale = await token_in(browser, console, None, None)  # single sign-on: no password, no code
    response = await admin_api.call("GET", "/users", token=stale)
    assert_problem(response, 403)
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_user_authentication"' in challenge
    assert f'max_age="{live.settings.admin_step_up_seconds}"' in challenge


async def sign_in_earlier(live: Live, by: timedelta) -> None:
    """Date every browser session's sign-in ``by`` ago (test setup: time passing)."""
    engine = make_engine(live.settings.database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(update(BrowserSession).values(auth_time=utcnow() - by))
    finally:
        await engine.dispose()
