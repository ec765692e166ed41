"""Password reset by mail, over real HTTP, with a real SMTP server (aiosmtpd) on loopback.

``/password/forgot`` answers the same page for every address and mails a link carrying 256
random bits, of which only the SHA-256 is stored; the link works once, expires, and a newer
request voids it. Using it sets the password as a change does: every session and
refresh-token family of the account ends, the lockout is cleared, and a mail says so.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from html import unescape
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from server.storage.base import utcnow
from server.storage.models import MailOutbox, PasswordReset
from tests.flows.conftest import SignIn
from tests.helpers import TestDatabase, create_client
from tests.mail import RESET_LINK, Mailed, eventually, forgot, link_in, mailed_server
from tests.oidc import PASSWORD, REDIRECT_URI, Browser, Flow, forms_of

pytestmark = pytest.mark.anyio

NEW_PASSWORD = "a brand new passphrase for alice"
CSRF = re.compile(r'name="csrf_token" value="[^"]*"')


@pytest.fixture
async def mailed(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Mailed]:
    async with mailed_server(database, tmp_path) as server:
        yield server


def token_of(link: str) -> str:
    match = RESET_LINK.fullmatch(link)
    assert match
    return match.group(1)


async def mailed_link(mailed: Mailed, count: int = 1) -> str:
    """Ask for a link for alice and return it from the ``count``-th mail."""
    response = await forgot(mailed.browser(), "alice@example.com")
    assert response.status_code == 200
    return link_in((await mailed.mailbox.wait_for(count))[count - 1])


async def csrf_of(browser: Browser) -> str:
    """A CSRF token for this browser's next form post."""
    page = await browser.http.get("/password/forgot")
    (form,) = forms_of(page.text)
    return form.fields["csrf_token"]


async def sign_in(browser: Browser, password: str) -> httpx.Response:
    """Alice signs in on /account: the account page, or the answer to a refused password."""
    page = await browser.http.get("/account")
    assert 'name="password"' in page.text, "already signed in"
    page = await browser.sign_in(page, "alice", password)
    return await browser.http.get(page.headers["location"]) if page.status_code == 303 else page


async def choose(browser: Browser, link: str, new: str, again: str | None = None) -> httpx.Response:
    page = await browser.http.get(link)
    assert 'id="reset-expired"' not in page.text, "the link no longer works"
    return await browser.submit(page, {"new_password": new, "confirm_password": new if again is None else again})


async def test_forgot_mails_a_link_whose_token_is_stored_only_as_a_digest(mailed: Mailed) -> None:
    response = await forgot(mailed.browser(), "alice@example.com")
    assert response.status_code == 200
    assert 'id="forgot-sent"' in response.text and "is on its way" in response.text

    (message,) = await mailed.mailbox.wait_for(1)
    assert message["To"] == "alice@example.com"
    assert message["Subject"] == "Reset your password"
    assert message["From"] == "Ostiary <no-reply@127.0.0.1>"
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    link = link_in(message)
    assert link.startswith(f"{mailed.live.base_url}/password/reset?token=")
    token = token_of(link)
    assert len(token) >= 43  # 256 bits, URL-safe base64

    (reset,) = await mailed.sql(select(PasswordReset))
    assert bytes(reset.token_digest) == hashlib.sha256(token.encode()).digest()
    assert len(reset.token_digest) == 32 and reset.used_at is None
    assert timedelta(minutes=29) < reset.expires_at - utcnow() <= timedelta(minutes=30)
    assert not any(token in str(value) for value in reset)

    async def sent() -> bool:
        return all(row.sent_at is not None for row in await mailed.sql(select(MailOutbox)))

    await eventually(sent)
    lookup, row = await mailed.sql(select(MailOutbox).order_by(MailOutbox.id))
    assert (lookup.recipient, lookup.template, lookup.context, lookup.secret_enc) == (
        "alice@example.com",
        "password_reset_lookup",
        {"locale": "en"},
        None,
    ), "the request queued the address entered and the page's language, and nothing else"
    assert (row.recipient, row.template, row.attempts, row.last_error) == (
        "alice@example.com",
        "password_reset",
        1,
        None,
    )
    assert row.secret_enc is None, "the sealed link is erased once sent"
    assert token not in str(row.context)
    assert message["Message-ID"] == f"<{row.message_id}@127.0.0.1>"


async def test_an_unknown_address_gets_the_same_page_and_no_mail(mailed: Mailed) -> None:
    unknown = await forgot(mailed.browser(), "nobody@example.com")
    known = await forgot(mailed.browser(), "alice@example.com")
    assert unknown.status_code == known.status_code == 200
    assert CSRF.sub("", unknown.text) == CSRF.sub("", known.text)

    await mailed.mailbox.wait_for(1)  # alice's mail: the sender is running
    await asyncio.sleep(3)  # a few more poll intervals
    assert [message["To"] for message in mailed.mailbox.messages] == ["alice@example.com"]
    queued = await mailed.sql(select(MailOutbox.recipient, MailOutbox.template).order_by(MailOutbox.id))
    assert [tuple(row) for row in queued] == [
        ("nobody@example.com", "password_reset_lookup"),
        ("alice@example.com", "password_reset_lookup"),
        ("alice@example.com", "password_reset"),
    ], "both requests queued the same look-up; only alice's led to a mail"
    assert len(await mailed.sql(select(PasswordReset))) == 1


async def test_the_forgotten_password_page_leads_back_to_the_sign_in_it_came_from(signin: SignIn) -> None:
    login = await signin.browser.authorize(**Flow.start(signin.rp.client_id).params())
    (form,) = forms_of(login.text)
    handle = form.fields["interaction"]
    (link,) = re.findall(r'href="([^"]+)" id="forgot-password"', login.text)
    assert unescape(link) == f"/password/forgot?interaction={handle}"

    page = await signin.http.get(unescape(link))
    back = f"/login?interaction={handle}"
    assert back_link(page) == back
    sent = await signin.browser.submit(page, {"email": "nobody@example.com"})
    assert 'id="forgot-sent"' in sent.text and back_link(sent) == back

    again = await signin.http.get(back)
    assert again.status_code == 200 and "Photo Prints" in again.text
    assert forms_of(again.text)[0].fields["interaction"] == handle
    done = await signin.browser.sign_in(again, "alice")
    assert 'name="decision"' in done.text, "the sign-in goes on where it was left"

    # only this browser's open sign-ins: another browser, or no sign-in, gets the plain one
    async with httpx.AsyncClient(base_url=signin.live.base_url) as other:
        assert back_link(await other.get(f"/password/forgot?interaction={handle}")) == "/account"
        foreign = await other.get(back)
        assert foreign.status_code == 400 and "This sign-in has expired" in foreign.text
    assert back_link(await signin.http.get("/password/forgot?interaction=no-such-sign-in")) == "/account"
    assert back_link(await signin.http.get("/password/forgot")) == "/account"


def back_link(page: httpx.Response) -> str:
    (link,) = re.findall(r'href="([^"]+)" id="back-to-sign-in"', page.text)
    return unescape(link)


async def test_the_address_is_matched_whatever_its_case_and_the_mail_goes_to_the_stored_one(mailed: Mailed) -> None:
    assert (await forgot(mailed.browser(), "  Alice@EXAMPLE.com ")).status_code == 200
    (message,) = await mailed.mailbox.wait_for(1)
    assert message["To"] == "alice@example.com"
    assert 'name="new_password"' in (await mailed.browser().http.get(link_in(message))).text


async def test_the_link_shows_a_form_and_refuses_a_bad_password_without_being_used(mailed: Mailed) -> None:
    link = await mailed_link(mailed)
    browser = mailed.browser()
    page = await browser.http.get(link)
    assert page.status_code == 200
    assert 'action="/password/reset"' in page.text and "<strong>alice</strong>" in page.text

    too_short = await choose(browser, link, "short")
    assert 'id="reset-error"' in too_short.text
    assert "The new password must be at least 12 characters." in too_short.text
    mismatched = await choose(browser, link, NEW_PASSWORD, NEW_PASSWORD + "!")
    assert 'id="reset-error"' in mismatched.text and "The two passwords differ." in mismatched.text

    (reset,) = await mailed.sql(select(PasswordReset))
    assert reset.used_at is None
    assert 'id="password-form"' in (await sign_in(mailed.browser(), PASSWORD)).text, "the password is unchanged"


async def test_a_reset_changes_the_password_once_and_ends_what_the_old_one_opened(mailed: Mailed) -> None:
    # Elsewhere, alice is signed in, and an application holds a refresh token of hers.
    elsewhere = mailed.browser()
    assert 'id="password-form"' in (await sign_in(elsewhere, PASSWORD)).text
    notes = await create_client(
        mailed.live.settings,
        name="Notes app",
        grant_types=["authorization_code", "refresh_token"],
        scopes=["openid", "offline_access"],
        redirect_uris=[REDIRECT_URI],
    )
    app = SignIn(mailed.live, notes, "alice", mailed.browser())
    refresh_token = (await app.tokens(Flow.start(notes.client_id), scope="openid offline_access"))["refresh_token"]

    link = await mailed_link(mailed)
    browser = mailed.browser()
    done = await choose(browser, link, NEW_PASSWORD)
    assert done.status_code == 200 and 'id="reset-done"' in done.text

    used = await browser.http.get(link)
    assert 'id="reset-expired"' in used.text and 'name="new_password"' not in used.text
    again = await browser.http.post(
        "/password/reset",
        data={
            "csrf_token": await csrf_of(browser),
            "token": token_of(link),
            "new_password": "another fresh passphrase",
            "confirm_password": "another fresh passphrase",
        },
    )
    assert 'id="reset-expired"' in again.text

    assert "do not match" in (await sign_in(mailed.browser(), PASSWORD)).text
    assert 'id="password-form"' in (await sign_in(mailed.browser(), NEW_PASSWORD)).text

    assert 'name="password"' in (await elsewhere.http.get("/account")).text, "the other session ended"
    refreshed = await mailed.http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(notes.client_id, notes.client_secret),
    )
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"

    _reset_mail, changed = await mailed.mailbox.wait_for(2)
    assert (changed["To"], changed["Subject"]) == ("alice@example.com", "Your password was changed")


async def test_a_newer_request_voids_the_older_link(mailed: Mailed) -> None:
    older = await mailed_link(mailed, 1)
    newer = await mailed_link(mailed, 2)
    assert older != newer
    browser = mailed.browser()
    assert 'id="reset-expired"' in (await browser.http.get(older)).text
    assert 'name="new_password"' in (await browser.http.get(newer)).text


async def test_an_expired_link_is_refused(mailed: Mailed) -> None:
    link = await mailed_link(mailed)
    await mailed.sql(update(PasswordReset).values(expires_at=utcnow() - timedelta(seconds=1)))
    browser = mailed.browser()
    page = await browser.http.get(link)
    assert 'id="reset-expired"' in page.text and 'name="new_password"' not in page.text

    # A form opened before it expired is refused too.
    response = await browser.http.post(
        "/password/reset",
        data={
            "csrf_token": await csrf_of(browser),
            "token": token_of(link),
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert 'id="reset-expired"' in response.text
    assert 'id="password-form"' in (await sign_in(mailed.browser(), PASSWORD)).text


async def test_a_reset_clears_the_lockout(database: TestDatabase, tmp_path: Path) -> None:
    async with mailed_server(database, tmp_path, lockout_threshold=2) as mailed:
        locked_out = mailed.browser()
        page = await locked_out.http.get("/account")
        for _ in range(2):
            page = await locked_out.sign_in(page, "alice", "not the password")
            assert page.status_code == 200 and "do not match" in page.text
        page = await locked_out.sign_in(page, "alice", PASSWORD)
        assert page.status_code == 429 and "Too many failed sign-ins" in page.text

        assert 'id="reset-done"' in (await choose(mailed.browser(), await mailed_link(mailed), NEW_PASSWORD)).text
        assert 'id="password-form"' in (await sign_in(locked_out, NEW_PASSWORD)).text
