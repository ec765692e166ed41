"""Browser sessions, the sign-in pages' defences, RP-Initiated Logout 1.0 and ``/userinfo``'s bearer rules.

Cookies (RFC 6265bis ``__Host-``), session fixation, CSRF and browser binding of the sign-in
pages, login failures, password rehashing, page security headers, logout (OpenID Connect
RP-Initiated Logout 1.0 §2-§4, §6) and RFC 6750 at ``/userinfo``.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache

import argon2
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select, update
from starlette.responses import Response

from server.authn.secrets import CsrfTokens
from server.settings import Settings
from server.storage.base import utcnow
from server.storage.engine import make_engine
from server.storage.models import User
from server.web.pages import Pages
from tests.flows.conftest import Live, SignIn
from tests.helpers import create_client, create_user
from tests.oidc import LOGOUT_URI, PASSWORD, REDIRECT_URI, Browser, Flow, Form, forms_of, query_of

pytestmark = pytest.mark.anyio

SESSION = "ostiary_session"  # the test issuer is http: no __Host- prefix
BROWSER = "ostiary_browser"


# -- helpers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SetCookie:
    value: str
    attributes: dict[str, str]  # lower-cased names; flags map to ""


def set_cookies(headers: list[str]) -> dict[str, SetCookie]:
    """The ``Set-Cookie`` header lines of one response, by cookie name."""
    cookies: dict[str, SetCookie] = {}
    for line in headers:
        first, *rest = (part.strip() for part in line.split(";"))
        name, _, value = first.partition("=")
        attributes = {}
        for attribute in rest:
            key, _, val = attribute.partition("=")
            attributes[key.lower()] = val
        cookies[name] = SetCookie(value, attributes)
    return cookies


def cookies_of(response: httpx.Response) -> dict[str, SetCookie]:
    return set_cookies(response.headers.get_list("set-cookie"))


@asynccontextmanager
async def another_browser(live: Live, **cookies: str) -> AsyncIterator[Browser]:
    """A second, independent browser, optionally holding ``cookies`` for the server's host."""
    async with httpx.AsyncClient(base_url=live.base_url, timeout=10) as http:
        for name, value in cookies.items():
            http.cookies.set(name, value, domain=httpx.URL(live.base_url).host)
        yield Browser(http)


async def login_page(browser: Browser, signin: SignIn, **extra: str) -> httpx.Response:
    page = await browser.authorize(**Flow.start(signin.rp.client_id).params(**extra))
    assert page.status_code == 200 and 'name="password"' in page.text, page.text
    return page


async def consent_page(browser: Browser, signin: SignIn) -> httpx.Response:
    page = await browser.sign_in(await login_page(browser, signin), signin.username)
    assert page.status_code == 200 and 'name="decision"' in page.text, page.text
    return page


async def landing(browser: Browser, signin: SignIn) -> str:
    """Where a new authorization request from ``browser`` lands: "login", "consent" or "redirect"."""
    page = await browser.authorize(**Flow.start(signin.rp.client_id).params())
    if page.status_code == 302:
        assert page.headers["location"].startswith(REDIRECT_URI + "?")
        assert "code" in query_of(page.headers["location"])
        return "redirect"
    assert page.status_code == 200, page.text
    if 'name="password"' in page.text:
        return "login"
    assert 'name="decision"' in page.text, page.text
    return "consent"


def post_form(page: httpx.Response) -> Form:
    (form,) = [form for form in forms_of(page.text) if form.method == "post"]
    return form


def login_error(page: httpx.Response) -> str:
    match = re.search(r'id="login-error">(.*?)</div>', page.text, re.S)
    assert match, page.text
    return match.group(1).strip()


def field_tag(page: httpx.Response, name: str) -> str:
    match = re.search(rf'<input[^>]*name="{name}"[^>]*>', page.text)
    assert match, page.text
    return match.group(0)


async def userinfo(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.get("/userinfo", headers={"Authorization": f"Bearer {token}"})


def assert_invalid_token(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.split()[0] == "Bearer" and 'error="invalid_token"' in challenge, challenge
    assert response.json()["error"] == "invalid_token"


@cache
def foreign_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def forged(token: str) -> str:
    """``token``'s header (kid, typ) and claims, signed by a key that is not ours."""
    header = {k: v for k, v in jwt.get_unverified_header(token).items() if k != "alg"}
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode(claims, foreign_key(), algorithm="RS256", headers=header)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def tampered(token: str) -> str:
    """``token`` with its payload changed (another subject) and its signature kept."""
    header, _, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    return ".".join([header, b64(json.dumps({**claims, "sub": "someone-else"}).encode()), signature])


def unsigned(token: str) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    return ".".join([b64(b'{"alg":"none"}'), b64(json.dumps(claims).encode()), ""])


async def disable_user(settings: Settings, username: str) -> None:
    engine = make_engine(settings.database_url)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(
                update(User).where(User.username == username).values(disabled_at=utcnow())
            )
            assert result.rowcount == 1
    finally:
        await engine.dispose()


async def password_hash_of(settings: Settings, username: str) -> str:
    engine = make_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            stored = (
                await connection.execute(select(User.password_hash).where(User.username == username))
            ).scalar_one()
    finally:
        await engine.dispose()
    assert stored is not None
    return stored


# -- cookies ----------------------------------------------------------------------------


async def test_session_and_browser_cookies_are_httponly_lax_host_wide_and_not_secure_over_http(
    signin: SignIn,
) -> None:
    page = await signin.browser.authorize(**Flow.start(signin.rp.client_id).params())
    browser_cookie = cookies_of(page)[BROWSER]
    page = await signin.browser.sign_in(page, signin.username)
    assert page.status_code == 200, page.text
    session_cookie = cookies_of(page)[SESSION]
    assert len(session_cookie.value) >= 43
    assert session_cookie.attributes["max-age"] == str(signin.live.settings.session_ttl)
    for cookie in (browser_cookie, session_cookie):
        assert "httponly" in cookie.attributes
        assert cookie.attributes["samesite"].lower() == "lax"
        assert cookie.attributes["path"] == "/"
        assert "secure" not in cookie.attributes
        assert "domain" not in cookie.attributes


async def test_https_issuer_uses_host_prefixed_secure_cookies() -> None:
    pages = Pages(Settings(issuer="https://id.example.com"), CsrfTokens(b"k" * 32))
    assert pages.session_cookie == "__Host-ostiary_session"
    assert pages.browser_cookie == "__Host-ostiary_browser"
    response = Response()
    pages.set_session(response, "session-token")
    pages.set_browser(response, "browser-token")
    cookies = set_cookies(response.headers.getlist("set-cookie"))
    assert cookies["__Host-ostiary_session"].value == "session-token"
    assert cookies["__Host-ostiary_browser"].value == "browser-token"
    for cookie in cookies.values():
        # RFC 6265bis §4.1.3.2: __Host- needs Secure, Path=/ and no Domain
        assert "secure" in cookie.attributes and "httponly" in cookie.attributes
        assert cookie.attributes["path"] == "/" and "domain" not in cookie.attributes
        assert cookie.attributes["samesite"].lower() == "lax"
    cleared = Response()
    pages.clear_session(cleared)
    (line,) = cleared.headers.getlist("set-cookie")
    cookie = set_cookies([line])["__Host-ostiary_session"]
    assert "secure" in cookie.attributes and cookie.attributes["max-age"] == "0"


# -- session fixation -------------------------------------------------------------------


async def test_a_session_value_planted_before_sign_in_is_replaced_and_stays_useless(signin: SignIn) -> None:
    planted = secrets.token_urlsafe(32)
    async with another_browser(signin.live, **{SESSION: planted}) as victim:
        page = await victim.sign_in(await login_page(victim, signin), signin.username)
        assert page.status_code == 200, page.text
        issued = cookies_of(page)[SESSION].value
        assert issued != planted
        assert victim.http.cookies[SESSION] == issued
        redirect = await victim.submit(page, decision="allow")
        assert redirect.status_code == 303
    async with another_browser(signin.live, **{SESSION: planted}) as attacker:
        assert await landing(attacker, signin) == "login"
    async with another_browser(signin.live, **{SESSION: issued}) as holder:
        assert await landing(holder, signin) == "redirect"


async def test_signing_in_again_issues_a_new_session_and_ends_the_old_one(signin: SignIn) -> None:
    await signin.tokens(Flow.start(signin.rp.client_id))
    first = signin.http.cookies[SESSION]
    page = await login_page(signin.browser, signin, prompt="login")
    redirect = await signin.browser.sign_in(page, signin.username)
    assert redirect.status_code == 303, redirect.text
    second = cookies_of(redirect)[SESSION].value
    assert second != first
    async with another_browser(signin.live, **{SESSION: first}) as old:
        assert await landing(old, signin) == "login"
    async with another_browser(signin.live, **{SESSION: second}) as new:
        assert await landing(new, signin) == "redirect"


# -- CSRF and browser binding -----------------------------------------------------------


@pytest.mark.parametrize("csrf", [None, ""], ids=["missing", "empty"])
async def test_login_without_a_csrf_token_is_forbidden(signin: SignIn, csrf: str | None) -> None:
    page = await login_page(signin.browser, signin)
    data = {**post_form(page).fields, "username": signin.username, "password": PASSWORD}
    del data["csrf_token"]
    if csrf is not None:
        data["csrf_token"] = csrf
    refused = await signin.http.post("/login", data=data)
    assert refused.status_code == 403, refused.text
    assert "This form has expired" in refused.text
    assert SESSION not in cookies_of(refused)
    # the same form with its token signs in: only the token was missing
    assert (await signin.browser.sign_in(page, signin.username)).status_code == 200


async def test_login_with_another_browsers_csrf_token_is_forbidden(signin: SignIn) -> None:
    page = await login_page(signin.browser, signin)
    async with another_browser(signin.live) as other:
        theirs = post_form(await login_page(other, signin)).fields["csrf_token"]
    assert theirs != post_form(page).fields["csrf_token"]
    refused = await signin.browser.submit(
        page, {"csrf_token": theirs, "username": signin.username, "password": PASSWORD}
    )
    assert refused.status_code == 403, refused.text
    assert SESSION not in cookies_of(refused)


async def test_a_sign_in_started_in_one_browser_cannot_be_finished_in_another(signin: SignIn) -> None:
    started = await login_page(signin.browser, signin)
    handle = post_form(started).fields["interaction"]
    async with another_browser(signin.live) as other:
        own = post_form(await login_page(other, signin))
        response = await other.http.post(
            "/login",
            data={**own.fields, "interaction": handle, "username": signin.username, "password": PASSWORD},
        )
        assert response.status_code == 400, response.text
        assert "This sign-in has expired" in response.text
        assert SESSION not in cookies_of(response)
        assert SESSION not in other.http.cookies
    # the browser that started it can still finish it
    page = await signin.browser.sign_in(started, signin.username)
    assert page.status_code == 200 and 'name="decision"' in page.text, page.text


async def test_consent_needs_a_csrf_token_and_a_known_decision(signin: SignIn) -> None:
    page = await consent_page(signin.browser, signin)
    fields = post_form(page).fields
    without_csrf = {k: v for k, v in fields.items() if k != "csrf_token"}
    refused = await signin.http.post("/consent", data={**without_csrf, "decision": "allow"})
    assert refused.status_code == 403, refused.text
    assert "location" not in refused.headers
    for decision in ("maybe", "ALLOW", ""):
        odd = await signin.http.post("/consent", data={**fields, "decision": decision})
        assert odd.status_code == 400, (decision, odd.text)
        assert "location" not in odd.headers
    assert (await signin.http.post("/consent", data=fields)).status_code == 400
    redirect = await signin.browser.submit(page, decision="allow")
    assert redirect.status_code == 303 and redirect.headers["location"].startswith(REDIRECT_URI + "?")


# -- login failures ---------------------------------------------------------------------


async def test_wrong_password_and_unknown_user_get_the_same_answer(signin: SignIn) -> None:
    # 200, not 401: a 401 needs WWW-Authenticate (RFC 9110 §15.5.2); see docs/decisions.md
    wrong_password = "not-the-password-" + secrets.token_hex(4)
    page = await login_page(signin.browser, signin)
    wrong = await signin.browser.sign_in(page, signin.username, wrong_password)
    unknown = await signin.browser.sign_in(wrong, "mallory", PASSWORD)
    for response, username, password in ((wrong, signin.username, wrong_password), (unknown, "mallory", PASSWORD)):
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        assert SESSION not in cookies_of(response)
        form = post_form(response)
        assert form.fields["username"] == username
        assert form.fields["password"] == ""
        assert "value=" not in field_tag(response, "password")
        assert password not in response.text
    assert login_error(wrong) == login_error(unknown)
    assert "do not match" in login_error(wrong)
    # the re-rendered form still works
    page = await signin.browser.sign_in(unknown, signin.username)
    assert page.status_code == 200 and 'name="decision"' in page.text, page.text


async def test_a_disabled_user_cannot_sign_in(signin: SignIn) -> None:
    settings = signin.live.settings
    await create_user(settings, "bob", PASSWORD, email="bob@example.com", name="Bob")
    await disable_user(settings, "bob")
    refused = await signin.browser.sign_in(await login_page(signin.browser, signin), "bob")
    assert refused.status_code == 200 and 'id="login-error"' in refused.text, refused.text
    assert SESSION not in cookies_of(refused)
    wrong = await signin.browser.sign_in(refused, signin.username, "not the password at all")
    assert login_error(refused) == login_error(wrong)


async def test_disabling_a_signed_in_user_ends_their_session_and_tokens(signin: SignIn) -> None:
    tokens = await signin.tokens(Flow.start(signin.rp.client_id))
    assert (await userinfo(signin.http, tokens["access_token"])).status_code == 200
    await disable_user(signin.live.settings, signin.username)
    assert await landing(signin.browser, signin) == "login"
    assert_invalid_token(await userinfo(signin.http, tokens["access_token"]))


# -- password rehash --------------------------------------------------------------------


async def test_a_hash_with_weaker_parameters_is_replaced_at_the_next_sign_in(signin: SignIn) -> None:
    settings = signin.live.settings
    password = "a perfectly long passphrase"
    weak = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(password)
    await create_user(settings, "carol", password, email="carol@example.com", password_hash=weak)
    page = await login_page(signin.browser, signin)
    failed = await signin.browser.sign_in(page, "carol", "not the passphrase")
    assert failed.status_code == 200 and 'id="login-error"' in failed.text, failed.text
    assert await password_hash_of(settings, "carol") == weak  # only a successful sign-in rehashes
    page = await signin.browser.sign_in(failed, "carol", password)
    assert page.status_code == 200 and 'name="decision"' in page.text, page.text
    stored = await password_hash_of(settings, "carol")
    assert stored != weak
    params = f"m={settings.argon2_memory_kib},t={settings.argon2_time_cost},p={settings.argon2_parallelism}"
    assert params == "m=19456,t=2,p=1"
    assert stored.startswith("$argon2id$v=19$" + params + "$"), stored
    assert argon2.PasswordHasher().verify(stored, password)


# -- page security headers --------------------------------------------------------------


async def test_sign_in_pages_forbid_framing_inline_code_referrers_and_caching(signin: SignIn) -> None:
    login = await login_page(signin.browser, signin)
    failed = await signin.browser.sign_in(login, signin.username, "not the password at all")
    consent = await signin.browser.sign_in(failed, signin.username)
    assert consent.status_code == 200 and 'name="decision"' in consent.text
    for page in (login, failed, consent):
        csp = page.headers["content-security-policy"]
        directives = {part.split()[0]: part.split()[1:] for part in csp.split(";") if part.strip()}
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
        assert directives["frame-ancestors"] == ["'none'"]
        assert directives["default-src"] == ["'none'"]
        # scripts of our own origin only (the passkey ceremony), never inline ones
        assert directives["script-src"] == ["'self'"] and directives["connect-src"] == ["'self'"]
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-store"
        posts = [form for form in forms_of(page.text) if form.method == "post"]
        assert posts, page.text
        for form in posts:
            assert form.fields.get("csrf_token"), form


# -- logout (RP-Initiated Logout 1.0) ---------------------------------------------------


async def test_logout_with_an_id_token_hint_redirects_with_state_and_ends_the_session(signin: SignIn) -> None:
    tokens = await signin.tokens(Flow.start(signin.rp.client_id))
    old_session = signin.http.cookies[SESSION]
    assert (await userinfo(signin.http, tokens["access_token"])).status_code == 200
    state = secrets.token_urlsafe(12)
    response = await signin.http.get(
        "/logout",
        params={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": LOGOUT_URI, "state": state},
    )
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(LOGOUT_URI + "?")
    assert query_of(location) == {"state": state}
    cleared = cookies_of(response)[SESSION]
    assert cleared.value in ("", '""') and cleared.attributes["max-age"] == "0"
    assert SESSION not in signin.http.cookies
    assert await landing(signin.browser, signin) == "login"
    async with another_browser(signin.live, **{SESSION: old_session}) as replay:
        assert await landing(replay, signin) == "login"
    # the access token of that session (no offline_access) ends with it
    assert_invalid_token(await userinfo(signin.http, tokens["access_token"]))


@pytest.mark.parametrize(
    "uri",
    ["https://evil.example.com/signed-out", LOGOUT_URI + "/more", LOGOUT_URI.upper(), REDIRECT_URI],
    ids=["foreign", "longer", "other-case", "redirect-uri"],
)
async def test_an_unregistered_post_logout_redirect_uri_is_not_followed(signin: SignIn, uri: str) -> None:
    tokens = await signin.tokens(Flow.start(signin.rp.client_id))
    response = await signin.http.get(
        "/logout", params={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": uri, "state": "s"}
    )
    assert response.status_code == 200, response.text
    assert "location" not in response.headers
    assert "You are signed out" in response.text
    assert uri not in response.text
    assert await landing(signin.browser, signin) == "login"


async def test_logout_without_an_id_token_hint_asks_for_confirmation_first(signin: SignIn) -> None:
    await signin.tokens(Flow.start(signin.rp.client_id))
    state = 'x"><b>bold</b>'
    page = await signin.http.get(
        "/logout",
        params={"client_id": signin.rp.client_id, "post_logout_redirect_uri": LOGOUT_URI, "state": state},
    )
    assert page.status_code == 200, page.text
    assert "Sign out?" in page.text and "Photo Prints" in page.text
    assert SESSION not in cookies_of(page)
    assert "<b>bold</b>" not in page.text
    form = post_form(page)
    assert form.action == "/logout" and ("confirm", "yes") in form.buttons
    assert form.fields["csrf_token"]
    assert form.fields["state"] == state
    assert form.fields["post_logout_redirect_uri"] == LOGOUT_URI
    assert await landing(signin.browser, signin) == "redirect"  # still signed in


async def test_confirming_logout_signs_out_without_redirecting(signin: SignIn) -> None:
    await signin.tokens(Flow.start(signin.rp.client_id))
    page = await signin.http.get(
        "/logout",
        params={"client_id": signin.rp.client_id, "post_logout_redirect_uri": LOGOUT_URI, "state": "s"},
    )
    assert page.status_code == 200 and "Sign out?" in page.text, page.text
    done = await signin.browser.submit(page, confirm="yes")
    # no id_token_hint: the post_logout_redirect_uri is not trusted (§3)
    assert done.status_code == 200, done.text
    assert "location" not in done.headers
    assert "You are signed out" in done.text
    assert cookies_of(done)[SESSION].attributes["max-age"] == "0"
    assert await landing(signin.browser, signin) == "login"


async def test_logout_confirmation_needs_this_browsers_csrf_token(signin: SignIn) -> None:
    await signin.tokens(Flow.start(signin.rp.client_id))
    async with another_browser(signin.live) as other:
        theirs = post_form(await login_page(other, signin)).fields["csrf_token"]
    for csrf in (None, "", theirs, "x" * 43):
        data = {"confirm": "yes"} if csrf is None else {"confirm": "yes", "csrf_token": csrf}
        page = await signin.http.post("/logout", data=data)
        assert page.status_code == 200, page.text
        assert "Sign out?" in page.text, (csrf, page.text)
        assert SESSION not in cookies_of(page)
    assert await landing(signin.browser, signin) == "redirect"


async def test_someone_elses_id_token_hint_does_not_silently_sign_this_browser_out(signin: SignIn) -> None:
    # §2: a hint whose sid is not this browser's session is suspect; §6: unconfirmed logout is a DoS vector
    await signin.tokens(Flow.start(signin.rp.client_id))
    await create_user(signin.live.settings, "mallory", PASSWORD, email="mallory@example.com", name="Mallory")
    async with another_browser(signin.live) as theirs:
        mallory = await SignIn(signin.live, signin.rp, "mallory", theirs).tokens(Flow.start(signin.rp.client_id))
    response = await signin.http.get(
        "/logout", params={"id_token_hint": mallory["id_token"], "post_logout_redirect_uri": LOGOUT_URI}
    )
    assert await landing(signin.browser, signin) == "redirect"  # alice is still signed in
    assert "location" not in response.headers, response.headers["location"]


async def test_an_access_token_is_not_an_id_token_hint(signin: SignIn) -> None:
    tokens = await signin.tokens(Flow.start(signin.rp.client_id))
    response = await signin.http.get(
        "/logout", params={"id_token_hint": tokens["access_token"], "post_logout_redirect_uri": LOGOUT_URI}
    )
    assert response.status_code == 400, response.text
    assert "location" not in response.headers
    assert SESSION not in cookies_of(response)
    assert "This sign-out request cannot be used" in response.text
    assert await landing(signin.browser, signin) == "redirect"
    assert (await userinfo(signin.http, tokens["access_token"])).status_code == 200


BAD_HINTS: dict[str, Callable[[dict[str, str]], str]] = {
    "garbage": lambda _: "garbage",
    "three-parts": lambda _: "a.b.c",
    "list-header": lambda _: "W10.e30.c2ln",
    "non-ascii": lambda _: "é.é.é",
    "alg-none": lambda tokens: unsigned(tokens["id_token"]),
    "tampered": lambda tokens: tampered(tokens["id_token"]),
    "foreign-key": lambda tokens: forged(tokens["id_token"]),
}


@pytest.mark.parametrize("make_hint", BAD_HINTS.values(), ids=BAD_HINTS.keys())
async def test_a_bad_id_token_hint_is_a_clean_error_and_signs_nobody_out(
    signin: SignIn, make_hint: Callable[[dict[str, str]], str]
) -> None:
    tokens = await signin.tokens(Flow.start(signin.rp.client_id))
    response = await signin.http.get(
        "/logout", params={"id_token_hint": make_hint(tokens), "post_logout_redirect_uri": LOGOUT_URI}
    )
    assert response.status_code == 400, response.text
    assert "location" not in response.headers
    assert "This sign-out request cannot be used" in response.text
    assert "Traceback" not in response.text
    assert await landing(signin.browser, signin) == "redirect"


# -- /userinfo (OIDC Core §5.3, RFC 6750) -----------------------------------------------


async def test_userinfo_without_a_token_gets_a_bare_bearer_challenge(live: Live) -> None:
    for response in (
        await live.http.get("/userinfo"),
        await live.http.post("/userinfo"),
        await live.http.get("/userinfo", headers={"Authorization": "Basic YTpi"}),
    ):
        assert response.status_code == 401, response.text
        challenge = response.headers["www-authenticate"]
        # a challenge per scheme (RFC 9110 §11.6.1): bearer tokens, and DPoP-bound ones (RFC 9449 §7.1)
        assert [part.split()[0] for part in challenge.split(", ")] == ["Bearer", "DPoP"]
        assert "error=" not in challenge  # RFC 6750 §3.1: no error code without a token


async def client_credentials_token(signin: SignIn) -> str:
    client = await create_client(signin.live.settings, grant_types=["client_credentials"], scopes=["openid", "api"])
    form = {"grant_type": "client_credentials", "scope": "openid"}
    response = await signin.http.post("/token", data=form, auth=(client.client_id, client.client_secret))
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    assert "openid" in jwt.decode(token, options={"verify_signature": False})["scope"].split()
    return token


async def user_tokens(signin: SignIn) -> dict[str, str]:
    return await signin.tokens(Flow.start(signin.rp.client_id))


async def garbage(signin: SignIn) -> str:
    return "not-a-token"


async def id_token(signin: SignIn) -> str:
    return (await user_tokens(signin))["id_token"]


async def foreign_access_token(signin: SignIn) -> str:
    return forged((await user_tokens(signin))["access_token"])


async def tampered_access_token(signin: SignIn) -> str:
    return tampered((await user_tokens(signin))["access_token"])


NOT_USER_ACCESS_TOKENS: dict[str, Callable[[SignIn], Awaitable[str]]] = {
    "garbage": garbage,
    "client-credentials": client_credentials_token,
    "id-token": id_token,
    "foreign-key": foreign_access_token,
    "tampered": tampered_access_token,
}


@pytest.mark.parametrize("make_token", NOT_USER_ACCESS_TOKENS.values(), ids=NOT_USER_ACCESS_TOKENS.keys())
async def test_userinfo_refuses_what_is_not_a_users_access_token(
    signin: SignIn, make_token: Callable[[SignIn], Awaitable[str]]
) -> None:
    token = await make_token(signin)
    assert_invalid_token(await userinfo(signin.http, token))
    assert_invalid_token(await signin.http.post("/userinfo", data={"access_token": token}))


async def test_userinfo_takes_the_token_from_a_form_body(signin: SignIn) -> None:
    tokens = await user_tokens(signin)
    sub = jwt.decode(tokens["id_token"], options={"verify_signature": False})["sub"]
    response = await signin.http.post("/userinfo", data={"access_token": tokens["access_token"]})
    assert response.status_code == 200, response.text
    assert response.json()["sub"] == sub
    assert response.json()["preferred_username"] == signin.username
