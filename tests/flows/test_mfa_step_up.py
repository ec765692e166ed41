"""The second factor inside the authorization flow, over real HTTP: password then code, the
step-up of a password session, codes taken once, backup codes, the lockout, what asks for
the second factor, and the one gate that issues no code below the level a request needs."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.flows.conftest import Live, SignIn
from tests.helpers import TestDatabase, create_client, create_user, make_settings, serve_in_process
from tests.mfa import Enrolled, enrol
from tests.oidc import REDIRECT_URI, Browser, Flow, forms_of, query_of

pytestmark = pytest.mark.anyio

ACR_MFA = "urn:ostiary:acr:mfa"
ACR_PHR = "urn:ostiary:acr:phr"
ACR_PASSWORD = "urn:ostiary:acr:password"
SESSION = "ostiary_session"  # the test issuer is http: no __Host- prefix
ESSENTIAL_MFA = '{"id_token": {"acr": {"essential": true, "values": ["urn:ostiary:acr:mfa"]}}}'


@asynccontextmanager
async def serve(database: TestDatabase, tmp_path: Path, **overrides: Any) -> AsyncIterator[SignIn]:
    """Like the ``signin`` fixture, under other settings."""
    settings = make_settings(database, tmp_path, **overrides)
    async with serve_in_process(settings) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        rp = await create_client(
            settings,
            name="Photo Prints",
            grant_types=["authorization_code"],
            scopes=["openid", "profile", "email"],
            redirect_uris=[REDIRECT_URI],
        )
        await create_user(settings, "alice")
        yield SignIn(Live(settings, base_url, http, rp), rp, "alice", Browser(http))


@pytest.fixture
async def on_request(database: TestDatabase, tmp_path: Path) -> AsyncIterator[SignIn]:
    """OSTIARY_MFA=when-requested: the second factor only when a request or its client asks."""
    async with serve(database, tmp_path, mfa="when-requested") as signin:
        yield signin


@pytest.fixture
async def strict(database: TestDatabase, tmp_path: Path) -> AsyncIterator[SignIn]:
    """Three wrong codes within ten seconds lock the second factor."""
    async with serve(database, tmp_path, lockout_threshold=3, lockout_window_seconds=10) as signin:
        yield signin


async def signed_out_with_totp(signin: SignIn) -> Enrolled:
    enrolled = await enrol(signin.browser, signin.username)
    signin.http.cookies.clear()  # enrolment leaves a signed-in session behind
    return enrolled


async def otp_page_after_password(signin: SignIn, flow: Flow, **extra: str) -> httpx.Response:
    page = await signin.browser.authorize(**flow.params(**extra))
    page = await signin.browser.sign_in(page, signin.username)
    assert_otp_page(page)
    return page


def assert_otp_page(page: httpx.Response) -> None:
    """The UI contract: a form posting ``code`` to /login/otp, and the a#use-backup link."""
    assert page.status_code == 200, page.text
    (form,) = forms_of(page.text)
    assert form.action == "/login/otp" and "code" in form.fields, page.text
    assert 'id="use-backup"' in page.text
    assert 'name="password"' not in page.text


def otp_error(page: httpx.Response) -> str:
    match = re.search(r'<div class="alert" role="alert" id="otp-error">(.*?)</div>', page.text, re.S)
    assert match, page.text
    return unescape(match.group(1)).strip()


async def code_from(signin: SignIn, page: httpx.Response, flow: Flow) -> str:
    """From the page after the last factor to the redirect (consenting if asked): the code."""
    if page.status_code == 200 and 'name="decision"' in page.text:
        page = await signin.browser.submit(page, decision="allow")
    params = redirected(signin, page, flow)
    assert "error" not in params, params
    return params["code"]


def redirected(signin: SignIn, page: httpx.Response, flow: Flow) -> dict[str, str]:
    """The parameters of a redirect back to the client, which carries ``state`` and ``iss``."""
    assert page.status_code in (302, 303), page.text
    assert page.headers["location"].startswith(REDIRECT_URI + "?")
    params = query_of(page.headers["location"])
    assert params["state"] == flow.state
    assert params["iss"] == signin.live.settings.issuer
    return params


async def id_token(signin: SignIn, flow: Flow, code: str, rp_secret: str | None = None) -> dict[str, Any]:
    """The ID token the code buys, verified against /jwks."""
    auth = (flow.client_id, rp_secret or signin.rp.client_secret)
    response = await signin.http.post("/token", data=flow.token_form(code), auth=auth)
    assert response.status_code == 200, response.text
    token = response.json()["id_token"]
    keys = jwt.PyJWKSet.from_dict(await signin.live.jwks())
    claims: dict[str, Any] = jwt.decode(
        token,
        keys[jwt.get_unverified_header(token)["kid"]],
        algorithms=["RS256"],
        audience=flow.client_id,
        issuer=signin.live.settings.issuer,
    )
    assert claims["nonce"] == flow.nonce
    return claims


async def password_session(signin: SignIn) -> tuple[Enrolled, dict[str, Any]]:
    """Under when-requested: alice has TOTP but signs in with her password alone."""
    enrolled = await signed_out_with_totp(signin)
    flow = Flow.start(signin.rp.client_id)
    claims = await id_token(signin, flow, await signin.code(flow))
    assert claims["acr"] == ACR_PASSWORD and claims["amr"] == ["pwd"]
    return enrolled, claims


async def require_mfa_client(signin: SignIn) -> Flow:
    rp = await create_client(
        signin.live.settings,
        name="Payroll",
        grant_types=["authorization_code"],
        scopes=["openid"],
        redirect_uris=[REDIRECT_URI],
        require_mfa=True,
        first_party=True,
    )
    return Flow.start(rp.client_id)


# -- signing in with both factors ----------------------------------------------------------


async def test_password_then_code_then_consent_gives_an_mfa_id_token(signin: SignIn) -> None:
    enrolled = await signed_out_with_totp(signin)
    flow = Flow.start(signin.rp.client_id)
    page = await otp_page_after_password(signin, flow)
    page = await signin.browser.submit(page, {"code": await enrolled.app.code()})
    assert page.status_code == 200 and 'value="allow"' in page.text, page.text

    claims = await id_token(signin, flow, await code_from(signin, page, flow))
    assert claims["acr"] == ACR_MFA
    assert claims["amr"] == ["pwd", "otp", "mfa"]
    assert abs(claims["auth_time"] - time.time()) < 60


async def test_a_password_session_steps_up_with_the_code_alone_keeping_its_sid(on_request: SignIn) -> None:
    signin = on_request
    enrolled, before = await password_session(signin)
    old_token = signin.http.cookies[SESSION]

    flow = Flow.start(signin.rp.client_id)
    page = await signin.browser.authorize(**flow.params(acr_values=ACR_MFA))
    assert_otp_page(page)  # no password asked
    page = await signin.browser.submit(page, {"code": await enrolled.app.code()})
    claims = await id_token(signin, flow, await code_from(signin, page, flow))

    assert claims["acr"] == ACR_MFA and claims["amr"] == ["pwd", "otp", "mfa"]
    assert claims["sid"] == before["sid"]
    assert claims["auth_time"] >= before["auth_time"]
    assert signin.http.cookies[SESSION] != old_token
    # The token the password session had is no good any more.
    async with httpx.AsyncClient(base_url=signin.live.base_url, cookies={SESSION: old_token}) as other:
        silent = Flow.start(signin.rp.client_id)
        page = await Browser(other).authorize(**silent.params(prompt="none"))
        assert redirected(signin, page, silent)["error"] == "login_required"


async def test_a_step_up_gives_the_browser_a_new_csrf_token(on_request: SignIn) -> None:
    signin = on_request
    enrolled, _ = await password_session(signin)
    page = await signin.browser.authorize(**Flow.start(signin.rp.client_id).params(acr_values=ACR_MFA))
    assert_otp_page(page)
    (form,) = forms_of(page.text)
    before, browser_before = form.fields["csrf_token"], signin.http.cookies["ostiary_browser"]

    stepped = await signin.browser.submit(page, {"code": await enrolled.app.code()})
    assert stepped.status_code == 303, stepped.text  # consent was given before: back to the client
    assert signin.http.cookies["ostiary_browser"] != browser_before
    stale = await signin.http.post("/account/backup-codes", data={"csrf_token": before})
    assert stale.status_code == 403


@pytest.mark.parametrize("again", [{"max_age": "0"}, {"prompt": "login"}], ids=["max_age=0", "prompt=login"])
async def test_a_session_with_both_factors_goes_straight_through_until_told_to_ask_again(
    signin: SignIn, again: dict[str, str]
) -> None:
    enrolled = await signed_out_with_totp(signin)
    flow = Flow.start(signin.rp.client_id)
    page = await otp_page_after_password(signin, flow)
    page = await signin.browser.submit(page, {"code": await enrolled.app.code()})
    first = await id_token(signin, flow, await code_from(signin, page, flow))

    flow = Flow.start(signin.rp.client_id)
    page = await signin.browser.authorize(**flow.params())
    claims = await id_token(signin, flow, await code_from(signin, page, flow))
    assert claims["acr"] == ACR_MFA and claims["sid"] == first["sid"]

    flow = Flow.start(signin.rp.client_id)
    page = await otp_page_after_password(signin, flow, **again)
    # A backup code answers the page as well as the app and needs no new time step.
    page = await signin.browser.submit(page, {"code": enrolled.backup_codes[0]})
    claims = await id_token(signin, flow, await code_from(signin, page, flow))
    assert claims["acr"] == ACR_MFA and claims["amr"] == ["pwd", "otp", "mfa"]
    assert claims["sid"] == first["sid"]  # the same person signed in again: the same session


# -- codes ---------------------------------------------------------------------------------


async def test_a_code_is_taken_once_and_a_fresh_one_works(signin: SignIn) -> None:
    enrolled = await signed_out_with_totp(signin)
    flow = Flow.start(signin.rp.client_id)
    page = await otp_page_after_password(signin, flow)
    used = await enrolled.app.code()
    await code_from(signin, await signin.browser.submit(page, {"code": used}), flow)
    signin.http.cookies.clear()

    flow = Flow.start(signin.rp.client_id)
    page = await otp_page_after_password(signin, flow)
    page = await signin.browser.submit(page, {"code": used})
    assert_otp_page(page)
    assert otp_error(page).startswith("That code is not right.")

    page = await signin.browser.submit(page, {"code": await enrolled.app.code()})  # may wait for the next step
    claims = await id_token(signin, flow, await code_from(signin, page, flow))
    assert claims["acr"] == ACR_MFA


async def test_a_backup_code_through_the_link_works_once(signin: SignIn) -> None:
    enrolled = await signed_out_with_totp(signin)
    flow = Flow.start(signin.rp.client_id)
    page = await otp_page_after_password(signin, flow)
    link = re.search(r'<a id="use-backup" href="([^"]+)"', page.text)
    assert link, page.text
    handle = forms_of(page.text)[0].fields["interaction"]
    assert query_of(unescape(link.group(1))) == {"interaction": handle, "use": "backup"}

    page = await signin.http.get("/login/otp", params={"interaction": handle, "use": "backup"})
    assert page.status_code == 200 and "Use a backup code" in page.text, page.text
    assert 'id="use-app"' in page.text and forms_of(page.text)[0].action == "/login/otp"
    page = await signin.browser.submit(page, {"code": enrolled.backup_codes[3]})
    claims = await id_token(signin, flow, await code_from(signin, page, flow))
    assert claims["acr"] == ACR_MFA and claims["amr"] == ["pwd", "otp", "mfa"]

    signin.http.cookies.clear()
    flow = Flow.start(signin.rp.client_id)
    page = await otp_page_after_password(signin, flow)
    page = await signin.browser.submit(page, {"code": enrolled.backup_codes[3]})
    assert page.status_code == 200
    assert otp_error(page).startswith("That code is not right.")


async def test_three_wrong_codes_lock_out_even_the_right_one_which_is_not_spent(strict: SignIn) -> None:
    signin = strict
    enrolled = await signed_out_with_totp(signin)
    flow = Flow.start(signin.rp.client_id)
    page = await otp_page_after_password(signin, flow)

    page = await signin.browser.submit(page, {"code": enrolled.app.wrong()})
    assert page.status_code == 200 and otp_error(page) == "That code is not right. 2 attempts left."
    page = await signin.browser.submit(page, {"code": enrolled.app.wrong()})
    assert page.status_code == 200 and otp_error(page) == "That code is not right. 1 attempt left."
    page = await signin.browser.submit(page, {"code": enrolled.app.wrong()})
    assert page.status_code == 429
    assert 0 < int(page.headers["retry-after"]) <= 10
    assert otp_error(page).startswith("Too many wrong codes. Try again in")

    right = await enrolled.app.code(lasting=20)  # still taken after the lock's ten seconds
    page = await signin.browser.submit(page, {"code": right})
    assert page.status_code == 429 and otp_error(page).startswith("Too many wrong codes.")

    # Refused unchecked: once the failures leave the window, that same code still works.
    await asyncio.sleep(int(page.headers["retry-after"]) + 0.5)
    page = await signin.browser.submit(page, {"code": right})
    claims = await id_token(signin, flow, await code_from(signin, page, flow))
    assert claims["acr"] == ACR_MFA


@pytest.fixture
async def patient(database: TestDatabase, tmp_path: Path) -> AsyncIterator[SignIn]:
    """Three wrong codes lock the second factor for five minutes (longer than a test waits
    for a fresh TOTP step)."""
    async with serve(database, tmp_path, lockout_threshold=3, lockout_window_seconds=300) as signin:
        yield signin


async def test_a_stranger_who_knows_the_password_cannot_lock_the_owners_browser_out(patient: SignIn) -> None:
    """The second factor's lockout honours known devices as the password's does: wrong
    codes from a browser that never completed a sign-in as alice share the account's
    counter; the browser alice signed in with before counts apart."""
    signin = patient
    enrolled = await signed_out_with_totp(signin)
    owner = signin.browser
    flow = Flow.start(signin.rp.client_id)
    page = await otp_page_after_password(signin, flow)
    # A backup code completes this sign-in: the app's time steps are kept for the codes below.
    page = await owner.submit(page, {"code": enrolled.backup_codes[0]})
    await code_from(signin, page, flow)
    assert "ostiary_device" in signin.http.cookies
    signin.http.cookies.delete(SESSION)  # signed out; the known-device cookie stays

    async with (
        httpx.AsyncClient(base_url=signin.live.base_url, timeout=10) as stranger_http,
        httpx.AsyncClient(base_url=signin.live.base_url, timeout=10) as newcomer_http,
    ):
        stranger = SignIn(signin.live, signin.rp, signin.username, Browser(stranger_http))
        page = await otp_page_after_password(stranger, Flow.start(signin.rp.client_id))
        # The password alone does not make a browser known: else each new one would bring
        # a fresh counter, and the codes could be guessed without end.
        assert "ostiary_device" not in stranger_http.cookies
        for _ in range(3):
            page = await stranger.browser.submit(page, {"code": enrolled.app.wrong()})
        assert page.status_code == 429, page.text

        # Another new browser shares the account's counter: locked, even the right code,
        # which is refused unchecked ...
        newcomer = SignIn(signin.live, signin.rp, signin.username, Browser(newcomer_http))
        page = await otp_page_after_password(newcomer, Flow.start(signin.rp.client_id))
        page = await newcomer.browser.submit(page, {"code": await enrolled.app.unspent()})
        assert page.status_code == 429 and otp_error(page).startswith("Too many wrong codes.")

        # ... so the owner's known browser completes its second factor meanwhile, with the
        # app's next code (that same one, unless its step has nearly run out).
        flow = Flow.start(signin.rp.client_id)
        page = await otp_page_after_password(signin, flow)
        page = await owner.submit(page, {"code": await enrolled.app.code()})
        claims = await id_token(signin, flow, await code_from(signin, page, flow))
        assert claims["acr"] == ACR_MFA

        # ... without lifting the stranger's lock.
        page = await otp_page_after_password(stranger, Flow.start(signin.rp.client_id))
        page = await stranger.browser.submit(page, {"code": await enrolled.app.code()})
        assert page.status_code == 429


# -- what asks for the second factor ---------------------------------------------------------


async def test_a_client_that_requires_mfa_turns_away_a_user_without_one(signin: SignIn) -> None:
    flow = await require_mfa_client(signin)
    page = await signin.browser.authorize(**flow.params(scope="openid"))
    page = await signin.browser.sign_in(page, signin.username)
    params = redirected(signin, page, flow)
    assert params["error"] == "unmet_authentication_requirements" and "code" not in params


async def test_acr_values_alone_is_met_with_the_password_when_there_is_no_second_factor(signin: SignIn) -> None:
    flow = Flow.start(signin.rp.client_id)
    claims = await id_token(signin, flow, await signin.code(flow, acr_values=ACR_MFA))
    assert claims["acr"] == ACR_PASSWORD and claims["amr"] == ["pwd"]


async def test_the_claims_parameter_is_ignored_so_an_essential_acr_claim_asks_for_nothing(signin: SignIn) -> None:
    # Discovery says claims_parameter_supported: false, and the server acts on it: without
    # a second factor the password is enough, and the ID token says so.
    flow = Flow.start(signin.rp.client_id)
    claims = await id_token(signin, flow, await signin.code(flow, claims=ESSENTIAL_MFA))
    assert claims["acr"] == ACR_PASSWORD and claims["amr"] == ["pwd"]


@pytest.mark.parametrize(
    "claims",
    [
        "not json",
        "[]",
        '{"id_token": []}',
        '{"id_token": {"acr": "urn:ostiary:acr:mfa"}}',
        '{"id_token": {"acr": {"values": "urn:ostiary:acr:mfa"}}}',
        '{"id_token": {"acr": {"value": 1}}}',
    ],
)
async def test_a_malformed_claims_parameter_is_ignored_too(signin: SignIn, claims: str) -> None:
    flow = Flow.start(signin.rp.client_id)
    page = await signin.browser.authorize(**flow.params(claims=claims))
    assert page.status_code == 200 and 'name="password"' in page.text, page.text


async def test_by_default_an_enrolled_user_is_asked_even_by_a_plain_request(signin: SignIn) -> None:
    await signed_out_with_totp(signin)
    await otp_page_after_password(signin, Flow.start(signin.rp.client_id))


@pytest.mark.parametrize("trigger", ["acr_values", "client"])
async def test_when_requested_the_second_factor_is_asked_only_when_something_asks(
    on_request: SignIn, trigger: str
) -> None:
    await password_session(on_request)  # a plain request: the password alone
    on_request.http.cookies.clear()
    flow = Flow.start(on_request.rp.client_id)
    extra = {"acr_values": ACR_MFA} if trigger == "acr_values" else {}
    if trigger == "client":
        flow, extra = await require_mfa_client(on_request), {"scope": "openid"}
    await otp_page_after_password(on_request, flow, **extra)


# -- what must not get through -------------------------------------------------------------


async def test_prompt_none_cannot_step_a_password_session_up(on_request: SignIn) -> None:
    await password_session(on_request)
    flow = Flow.start(on_request.rp.client_id)
    page = await on_request.browser.authorize(**flow.params(prompt="none", acr_values=ACR_MFA))
    params = redirected(on_request, page, flow)
    assert params["error"] == "login_required" and "code" not in params


async def test_consenting_while_the_step_up_is_pending_issues_no_code(on_request: SignIn) -> None:
    signin = on_request
    await password_session(signin)
    flow = Flow.start(signin.rp.client_id)
    page = await signin.browser.authorize(**flow.params(acr_values=ACR_MFA))
    assert_otp_page(page)
    (form,) = forms_of(page.text)  # its interaction handle and CSRF token

    response = await signin.http.post("/consent", data={**form.fields, "decision": "allow"})
    assert "code=" not in response.headers.get("location", ""), response.headers
    # The session is still at the password level.
    silent = Flow.start(signin.rp.client_id)
    page = await signin.browser.authorize(**silent.params(prompt="none", acr_values=ACR_MFA))
    assert redirected(signin, page, silent)["error"] == "login_required"


async def test_consenting_while_the_second_factor_is_pending_after_the_password_issues_no_code(
    signin: SignIn,
) -> None:
    await signed_out_with_totp(signin)
    page = await otp_page_after_password(signin, Flow.start(signin.rp.client_id))
    (form,) = forms_of(page.text)
    response = await signin.http.post("/consent", data={**form.fields, "decision": "allow"})
    assert "code=" not in response.headers.get("location", ""), response.headers
    assert SESSION not in signin.http.cookies


async def test_discovery_lists_both_acr_values(live: Live) -> None:
    response = await live.http.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    assert set(response.json()["acr_values_supported"]) == {ACR_PASSWORD, ACR_MFA, ACR_PHR}
