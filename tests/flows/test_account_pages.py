"""``/account`` over real HTTP: signing in to it, the TOTP second factor (enrolment, backup
codes, turning it off), the password change, signing out everywhere, CSRF on every form,
and ``ostiary users reset-mfa``.

Codes for "fresh" checks come from backup codes where the test is not about the app, so no
test waits for the next TOTP time step.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.sql import Select

from server.mfa import backup
from server.storage.engine import make_engine
from server.storage.models import AuditEvent, BackupCode, MailOutbox, TotpCredential
from tests.flows.conftest import Live, SignIn
from tests.helpers import create_client, ostiary_env, run_ostiary
from tests.mfa import Authenticator, enrol, secret_of, sign_in_to_account, submit_form
from tests.oidc import PASSWORD, REDIRECT_URI, Browser, Flow, forms_of

pytestmark = pytest.mark.anyio

NEW_PASSWORD = "a new passphrase for alice"
CODES = re.compile(r"<li><code>([a-z2-7-]{19})</code></li>")
ACCOUNT_FORMS = {
    "/account/password": {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD},
    "/account/totp/start": {},
    "/account/totp/confirm": {"code": "123456"},
    "/account/backup-codes": {"password": PASSWORD},
    "/account/totp/disable": {"password": PASSWORD},
    "/account/sign-out-everywhere": {},
}


# -- helpers ----------------------------------------------------------------------------


async def rows(live: Live, query: Select[Any]) -> list[Any]:
    """What the database holds, read past the server."""
    engine = make_engine(live.settings.database_url)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(query)).all())
    finally:
        await engine.dispose()


async def audited(live: Live, kind: str) -> int:
    return len(await rows(live, select(AuditEvent.id).where(AuditEvent.kind == kind)))


async def mailed(live: Live, template: str) -> int:
    query = select(MailOutbox.id).where(MailOutbox.template == template, MailOutbox.recipient == "alice@example.com")
    return len(await rows(live, query))


async def code_digests(live: Live) -> set[bytes]:
    return {digest for (digest,) in await rows(live, select(BackupCode.code_digest))}


@asynccontextmanager
async def another_browser(live: Live) -> AsyncIterator[Browser]:
    async with httpx.AsyncClient(base_url=live.base_url, timeout=10) as http:
        yield Browser(http)


def is_sign_in(page: httpx.Response) -> bool:
    return page.status_code == 200 and 'action="/login"' in page.text and 'name="password"' in page.text


def shows_account(page: httpx.Response) -> bool:
    return page.status_code == 200 and '<strong id="account-username">alice</strong>' in page.text


def totp_is_on(page: httpx.Response) -> bool:
    assert shows_account(page), page.text
    return 'id="regenerate-form"' in page.text and 'id="enrol-form"' not in page.text


def located(response: httpx.Response, path: str) -> bool:
    return response.status_code == 303 and response.headers["location"] == path


async def sign_in_with_code(browser: Browser, code: str, *, backup_page: bool = False) -> httpx.Response:
    """Sign in to /account with the password, then ``code`` on the second-factor page;
    returns the answer to the code."""
    page = await browser.http.get("/account")
    page = await browser.sign_in(page, "alice")
    assert page.status_code == 200 and 'action="/login/otp"' in page.text, page.text
    if backup_page:
        handle = forms_of(page.text)[0].fields["interaction"]
        page = await browser.http.get("/login/otp", params={"interaction": handle, "use": "backup"})
        assert "Backup code" in page.text, page.text
    return await browser.submit(page, {"code": code})


async def account(browser: Browser) -> httpx.Response:
    return await browser.http.get("/account")


async def refresh_token(live: Live, browser: Browser, scope: str) -> Callable[[], Awaitable[httpx.Response]]:
    """A refresh token from a code flow in ``browser`` (signed in); returns how to use it."""
    rp = await create_client(
        live.settings,
        grant_types=["authorization_code", "refresh_token"],
        scopes=["openid", "offline_access"],
        redirect_uris=[REDIRECT_URI],
    )
    tokens = await SignIn(live, rp, "alice", browser).tokens(Flow.start(rp.client_id), scope=scope)
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    return lambda: live.http.post("/token", data=form, auth=(rp.client_id, rp.client_secret))


# -- signing in to the account pages ----------------------------------------------------


async def test_account_asks_for_the_password_then_once_enrolled_the_code_too(signin: SignIn) -> None:
    page = await account(signin.browser)
    assert is_sign_in(page), page.text
    page = await signin.browser.sign_in(page, "alice")
    assert located(page, "/account"), page.text
    assert shows_account(await account(signin.browser))

    enrolled = await enrol(signin.browser, "alice")
    async with another_browser(signin.live) as other:
        otp = await other.sign_in(await account(other), "alice")
        assert otp.status_code == 200 and 'action="/login/otp"' in otp.text, otp.text
        assert is_sign_in(await account(other))  # the password alone is not enough
        page = await other.submit(otp, {"code": await enrolled.app.code()})
        assert located(page, "/account"), page.text
        assert shows_account(await account(other))


# -- the second factor ------------------------------------------------------------------


async def test_enrolment_shows_a_qr_code_and_turns_on_with_a_right_code_only(signin: SignIn) -> None:
    live = signin.live
    page = await sign_in_to_account(signin.browser, "alice")
    page = await submit_form(signin.browser, page, "/account/totp/start")
    assert page.status_code == 200
    assert re.search(r'<figure class="qr">\s*<svg', page.text), page.text
    secret = secret_of(page.text)
    app = Authenticator(secret)

    refused = await submit_form(signin.browser, page, "/account/totp/confirm", code=app.wrong())
    # The enrolment form comes back with the error (200, as the sign-in forms do).
    assert refused.status_code == 200 and 'id="enrol-error"' in refused.text, refused.text
    assert secret_of(refused.text) == secret
    assert not totp_is_on(await account(signin.browser))
    assert "Off." in (await account(signin.browser)).text

    shown = await submit_form(signin.browser, refused, "/account/totp/confirm", code=await app.code())
    assert shown.status_code == 200, shown.text
    codes = CODES.findall(shown.text)
    assert len(codes) == 10 and len(set(codes)) == 10
    page = await account(signin.browser)
    assert totp_is_on(page)
    assert '<span id="codes-left">10</span> backup codes left' in page.text
    assert not any(code in page.text for code in codes)

    ((secret_enc,),) = await rows(live, select(TotpCredential.secret_enc))
    assert secret.encode() not in secret_enc and base64.b32decode(secret) not in secret_enc
    digests = await code_digests(live)
    assert all(len(digest) == 32 for digest in digests)
    assert digests == {backup.digest(code) for code in codes}
    assert not any(code.replace("-", "").encode() in digest for code in codes for digest in digests)
    assert await mailed(live, "totp_enabled") == 1
    assert await audited(live, "mfa.enabled") == 1


async def test_starting_again_replaces_the_secret_and_is_refused_once_on(signin: SignIn) -> None:
    page = await sign_in_to_account(signin.browser, "alice")
    first = await submit_form(signin.browser, page, "/account/totp/start")
    second = await submit_form(signin.browser, page, "/account/totp/start")
    assert secret_of(first.text) != secret_of(second.text)

    stale = await submit_form(
        signin.browser, second, "/account/totp/confirm", code=await Authenticator(secret_of(first.text)).code()
    )
    assert 'id="enrol-error"' in stale.text, stale.text
    assert not totp_is_on(await account(signin.browser))
    done = await submit_form(
        signin.browser, second, "/account/totp/confirm", code=await Authenticator(secret_of(second.text)).code()
    )
    assert len(CODES.findall(done.text)) == 10, done.text

    stored = await rows(signin.live, select(TotpCredential.secret_enc))
    csrf = forms_of((await account(signin.browser)).text)[0].fields["csrf_token"]
    again = await signin.http.post("/account/totp/start", data={"csrf_token": csrf})
    assert again.status_code == 400 and "Turn it off first" in again.text, again.text
    assert await rows(signin.live, select(TotpCredential.secret_enc)) == stored
    assert totp_is_on(await account(signin.browser))


async def test_new_backup_codes_need_the_password_and_replace_the_old_ones(signin: SignIn) -> None:
    live = signin.live
    enrolled = await enrol(signin.browser, "alice")
    old = enrolled.backup_codes
    before = await code_digests(live)
    page = await account(signin.browser)

    wrong = await submit_form(signin.browser, page, "/account/backup-codes", password="not the password", code=old[0])
    assert wrong.status_code == 400 and "password is not right" in wrong.text, wrong.text
    assert await code_digests(live) == before

    made = await submit_form(signin.browser, page, "/account/backup-codes", password=PASSWORD, code=old[0])
    assert made.status_code == 200, made.text
    new = CODES.findall(made.text)
    assert len(new) == 10 and not set(new) & set(old)
    assert await audited(live, "mfa.backup_codes_regenerated") == 1

    async with another_browser(live) as other:
        refused = await sign_in_with_code(other, old[1], backup_page=True)
        assert refused.status_code == 200 and 'id="otp-error"' in refused.text, refused.text
        accepted = await other.submit(refused, {"code": new[0]})
        assert located(accepted, "/account"), accepted.text
    assert '<span id="codes-left">9</span>' in (await account(signin.browser)).text


async def test_turning_off_needs_the_password_and_a_code(signin: SignIn) -> None:
    live = signin.live
    enrolled = await enrol(signin.browser, "alice")
    page = await account(signin.browser)

    refused = await submit_form(
        signin.browser, page, "/account/totp/disable", password=PASSWORD, code=enrolled.app.wrong()
    )
    assert refused.status_code == 400 and "code is not right" in refused.text, refused.text
    assert totp_is_on(await account(signin.browser))

    off = await submit_form(
        signin.browser, page, "/account/totp/disable", password=PASSWORD, code=await enrolled.app.code()
    )
    assert located(off, "/account?done=totp-off"), off.text
    page = await signin.http.get(off.headers["location"])
    assert not totp_is_on(page) and "Your second factor is turned off." in page.text
    assert await rows(live, select(BackupCode.code_digest)) == []
    assert await rows(live, select(TotpCredential.user_id)) == []
    assert await mailed(live, "totp_disabled") == 1
    assert await audited(live, "mfa.disabled") == 1


# -- password and sessions --------------------------------------------------------------


async def test_password_change_checks_the_form_and_ends_every_other_sign_in(signin: SignIn) -> None:
    live = signin.live
    page = await sign_in_to_account(signin.browser, "alice")
    refresh = await refresh_token(live, signin.browser, "openid offline_access")  # outlives sign-outs

    def change(current: str, new: str, again: str) -> dict[str, str]:
        return {"current_password": current, "new_password": new, "confirm_password": again}

    for values, problem in [
        (change("not the password", NEW_PASSWORD, NEW_PASSWORD), "password is not right"),
        (change(PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "!"), "two new passwords differ"),
        (change(PASSWORD, "too short", "too short"), "at least 12 characters"),
    ]:
        answer = await submit_form(signin.browser, page, "/account/password", **values)
        assert answer.status_code == 400 and problem in answer.text, answer.text

    async with another_browser(live) as other:
        assert shows_account(await sign_in_to_account(other, "alice"))
        changed = await submit_form(
            signin.browser, page, "/account/password", **change(PASSWORD, NEW_PASSWORD, NEW_PASSWORD)
        )
        assert located(changed, "/account?done=password"), changed.text
        here = await signin.http.get(changed.headers["location"])
        assert shows_account(here) and "Every other device was signed out." in here.text
        assert is_sign_in(await account(other))

    assert (await refresh()).status_code == 200  # offline_access survives a change made while signed in
    async with another_browser(live) as later:
        old = await later.sign_in(await account(later), "alice", PASSWORD)
        assert old.status_code == 200 and 'id="login-error"' in old.text
        new = await later.sign_in(old, "alice", NEW_PASSWORD)
        assert located(new, "/account"), new.text


async def test_sign_out_everywhere_ends_this_and_every_other_browser(signin: SignIn) -> None:
    await sign_in_to_account(signin.browser, "alice")
    async with another_browser(signin.live) as other:
        assert shows_account(await sign_in_to_account(other, "alice"))
        refresh = await refresh_token(signin.live, other, "openid")  # bound to the other browser's session
        page = await account(signin.browser)
        assert page.text.count('class="session-end-form"') == 2  # two sessions
        out = await submit_form(signin.browser, page, "/account/sign-out-everywhere")
        assert located(out, "/account"), out.text
        assert is_sign_in(await account(signin.browser))
        assert is_sign_in(await account(other))
    assert (await refresh()).json()["error"] == "invalid_grant"


# -- CSRF -------------------------------------------------------------------------------


async def test_every_account_form_needs_this_browsers_csrf_token(signin: SignIn) -> None:
    live = signin.live
    enrolled = await enrol(signin.browser, "alice")
    before = (
        await code_digests(live),
        await rows(live, select(AuditEvent.kind)),
        await rows(live, select(MailOutbox.id)),
    )
    async with another_browser(live) as other:
        foreign = forms_of((await account(other)).text)[0].fields["csrf_token"]
    for action, values in ACCOUNT_FORMS.items():
        # Everything right but the token: a backup code where the form asks for a code.
        fields = {**values, "code": enrolled.backup_codes[0]} if "password" in values else values
        for token in ({}, {"csrf_token": foreign}, {"csrf_token": "x" * 43}):
            answer = await signin.http.post(action, data={**fields, **token})
            assert answer.status_code == 403, (action, token, answer.text)

    after = (
        await code_digests(live),
        await rows(live, select(AuditEvent.kind)),
        await rows(live, select(MailOutbox.id)),
    )
    assert after == before
    page = await account(signin.browser)
    assert totp_is_on(page) and '<span id="codes-left">10</span>' in page.text
    async with another_browser(live) as other:  # the password is unchanged
        page = await other.sign_in(await account(other), "alice", PASSWORD)
        assert 'action="/login/otp"' in page.text, page.text


# -- ostiary users reset-mfa ------------------------------------------------------------


async def ostiary(live: Live, *args: str) -> Any:
    return await asyncio.to_thread(run_ostiary, list(args), ostiary_env(live.settings), live.settings.keys_dir.parent)


async def test_reset_mfa_removes_the_second_factor_from_the_command_line(signin: SignIn) -> None:
    live = signin.live
    await enrol(signin.browser, "alice")
    result = await ostiary(live, "users", "reset-mfa", "alice")
    assert result.returncode == 0, result.stderr
    assert "second factor removed for alice" in result.stdout
    assert await audited(live, "mfa.reset") == 1
    assert await mailed(live, "totp_disabled") == 1
    assert await rows(live, select(TotpCredential.user_id)) == []
    async with another_browser(live) as other:
        page = await other.sign_in(await account(other), "alice")
        assert located(page, "/account"), page.text
        assert not totp_is_on(await account(other))


async def test_reset_mfa_of_an_unknown_user_names_it_and_fails_cleanly(live: Live) -> None:
    result = await ostiary(live, "users", "reset-mfa", "nobody")
    assert result.returncode != 0
    assert "nobody" in result.stderr and "USER" in result.stderr
    assert "Traceback" not in result.stderr
    assert await audited(live, "mfa.reset") == 0
