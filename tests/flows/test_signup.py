"""Self-service sign-up and e-mail verification, over real HTTP with a real SMTP server.

``OSTIARY_SIGNUP`` is off by default. Open, the form makes no account: it mails a link,
and the account exists once the link is used (a button's POST: opening it spends
nothing). An address that has an account gets the same page and mail; a username in use
is said. Under ``invite`` an administrator's invitation link (``ostiary invitations``) is
needed, and works once. A signed-in user's new address changes only once proved, and the
old one is told. ``email_verified`` in ID tokens and userinfo follows.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from email.message import EmailMessage
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from server.storage.base import utcnow
from server.storage.models import (
    AuditEvent,
    BrowserSession,
    EmailVerification,
    Invitation,
    MailOutbox,
    PasswordReset,
    User,
)
from tests.flows.conftest import SignIn
from tests.helpers import Client, TestDatabase, create_client, create_user, ostiary_env, run_ostiary_beside_server
from tests.mail import Mailed, eventually, forgot, mailed_server
from tests.oidc import PASSWORD, REDIRECT_URI, Browser, Flow, forms_of

pytestmark = pytest.mark.anyio

NEW_PASSWORD = "a long walk along the quiet river"
VERIFY_LINK = re.compile(r"http://127\.0\.0\.1:\d+/email/verify\?token=([A-Za-z0-9_-]+)")
CSRF = re.compile(r'name="csrf_token" value="[^"]*"')


@pytest.fixture
async def mailed(database: TestDatabase, tmp_path: Path) -> AsyncIterator[Mailed]:
    async with mailed_server(database, tmp_path, signup="open") as server:
        yield server


async def app_of(mailed: Mailed) -> Client:
    return await create_client(
        mailed.live.settings,
        name="Photo Prints",
        grant_types=["authorization_code"],
        scopes=["openid", "profile", "email"],
        redirect_uris=[REDIRECT_URI],
    )


def verify_link(message: EmailMessage) -> str:
    """The link in a confirmation mail, the same in its plain-text and HTML parts."""
    found = set()
    for kind in ("plain", "html"):
        part = message.get_body(preferencelist=(kind,))
        assert part is not None
        found.add(frozenset(m.group(0) for m in VERIFY_LINK.finditer(part.get_content())))
    (links,) = found
    (link,) = links
    return link


async def sign_up(browser: Browser, start: str = "/signup", **values: str) -> httpx.Response:
    page = await browser.http.get(start)
    assert page.status_code == 200 and 'action="/signup"' in page.text, page.text
    fields = {
        "username": "bob",
        "email": "bob@example.com",
        "name": "Bob Builder",
        "password": NEW_PASSWORD,
        "confirm_password": NEW_PASSWORD,
    }
    return await browser.submit(page, fields | values)


async def confirm(browser: Browser, link: str) -> httpx.Response:
    page = await browser.http.get(link)
    assert page.status_code == 200 and 'action="/email/verify"' in page.text, page.text
    return await browser.submit(page)


def claims_of(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


async def users(mailed: Mailed) -> dict[str, tuple[str | None, bool]]:
    rows = await mailed.sql(select(User.username, User.email, User.email_verified))
    return {row.username: (row.email, row.email_verified) for row in rows}


async def test_sign_up_is_off_by_default(database: TestDatabase, tmp_path: Path) -> None:
    async with mailed_server(database, tmp_path) as mailed:
        assert mailed.live.settings.signup == "off"
        browser = mailed.browser()
        page = await browser.http.get("/signup")
        assert page.status_code == 404 and "Sign-up is closed" in page.text
        posted = await browser.http.post("/signup", data={"username": "bob"})
        assert posted.status_code == 404
        app = await app_of(mailed)
        login = await browser.authorize(**Flow.start(app.client_id).params())
        assert 'name="password"' in login.text and "/signup" not in login.text
        assert set(await users(mailed)) == {"alice"}


async def test_an_account_is_made_only_once_its_address_is_confirmed(mailed: Mailed) -> None:
    app = await app_of(mailed)
    browser = mailed.browser()
    flow = Flow.start(app.client_id)
    login = await browser.authorize(**flow.params())
    handle = forms_of(login.text)[0].fields["interaction"]
    (start,) = re.findall(r'href="([^"]+)" id="create-account"', login.text)
    assert unescape(start) == f"/signup?interaction={handle}"

    sent = await sign_up(browser, unescape(start))
    assert sent.status_code == 200 and 'id="signup-sent"' in sent.text and "bob@example.com" in sent.text
    (back,) = re.findall(r'href="([^"]+)" id="continue-sign-in"', sent.text)
    assert unescape(back) == f"/login?interaction={handle}"
    assert set(await users(mailed)) == {"alice"}, "no account before the address is proved"

    (message,) = await mailed.mailbox.wait_for(1)
    assert (message["To"], message["Subject"]) == ("bob@example.com", "Confirm your e-mail address")
    link = verify_link(message)
    token = VERIFY_LINK.fullmatch(link).group(1)  # type: ignore[union-attr]
    (pending,) = await mailed.sql(select(EmailVerification))
    assert bytes(pending.token_digest) == hashlib.sha256(token.encode()).digest()
    assert pending.password_hash.startswith("$argon2id$") and NEW_PASSWORD not in str(tuple(pending))
    assert token not in str(tuple(pending))

    async def sealed_link_erased() -> bool:
        return all(row.secret_enc is None for row in await mailed.sql(select(MailOutbox)))

    await eventually(sealed_link_erased)

    # Opening the link (as a mail scanner would) spends nothing; the button does.
    other = mailed.browser()
    assert "<strong>bob</strong>" in (await other.http.get(link)).text
    assert set(await users(mailed)) == {"alice"}
    done = await confirm(other, link)
    assert done.status_code == 200 and 'id="verify-done"' in done.text
    assert (await users(mailed))["bob"] == ("bob@example.com", True)
    again = await other.http.get(link)
    assert 'id="verify-error"' in again.text and 'action="/email/verify"' not in again.text

    # Back in the first browser, the sign-in goes on with the new account.
    page = await browser.sign_in(await browser.http.get(unescape(back)), "bob", NEW_PASSWORD)
    if 'name="decision"' in page.text:
        page = await browser.submit(page, decision="allow")
    assert page.status_code in (302, 303), page.text
    code = re.search(r"code=([^&]+)", page.headers["location"]).group(1)  # type: ignore[union-attr]
    tokens = (
        await mailed.http.post("/token", data=flow.token_form(code), auth=(app.client_id, app.client_secret))
    ).json()
    claims = claims_of(tokens["id_token"])
    assert (claims["email"], claims["email_verified"]) == ("bob@example.com", True)
    userinfo = await mailed.http.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert userinfo.json()["email_verified"] is True

    kinds = [row.kind for row in await mailed.sql(select(AuditEvent).order_by(AuditEvent.id))]
    assert "user.created" in kinds and "user.signed_up" in kinds


async def test_an_address_in_use_gets_the_same_page_and_mail(mailed: Mailed) -> None:
    fresh = await sign_up(mailed.browser(), username="bob", email="bob@example.com")
    taken = await sign_up(mailed.browser(), username="carol", email="alice@example.com")
    assert fresh.status_code == taken.status_code == 200
    normalised = [
        CSRF.sub("", page.text).replace(address, "ADDRESS")
        for page, address in ((fresh, "bob@example.com"), (taken, "alice@example.com"))
    ]
    assert normalised[0] == normalised[1]

    messages = await mailed.mailbox.wait_for(2)
    to_alice = next(message for message in messages if message["To"] == "alice@example.com")
    to_bob = next(message for message in messages if message["To"] == "bob@example.com")
    assert to_alice["Subject"] == to_bob["Subject"] == "Confirm your e-mail address"

    refused = await confirm(mailed.browser(), verify_link(to_alice))
    assert refused.status_code == 400 and "This address already has an account" in refused.text
    assert set(await users(mailed)) == {"alice"}, "only the mailbox's reader learns the address is in use"


async def test_the_form_says_what_it_must_and_stores_nothing_then(mailed: Mailed) -> None:
    cases = [
        ({"username": "Alice"}, "That username is taken. Choose another."),
        ({"username": "no spaces allowed"}, "1 to 150 letters, digits"),
        ({"email": "not-an-address"}, "is not an email address"),
        ({"password": "short", "confirm_password": "short"}, "The password must be at least 12 characters."),
        ({"confirm_password": NEW_PASSWORD + "!"}, "The two passwords differ."),
    ]
    for values, message in cases:
        page = await sign_up(mailed.browser(), **values)
        assert page.status_code == 400 and 'id="signup-error"' in page.text, values
        assert message in unescape(page.text), (values, page.text)
        assert 'aria-invalid="true"' in page.text
        assert NEW_PASSWORD not in page.text and "short" not in re.sub(r"must be.*?\.", "", unescape(page.text))
    assert await mailed.sql(select(EmailVerification)) == []
    assert [row.template for row in await mailed.sql(select(MailOutbox))] == []


async def test_a_link_expires(mailed: Mailed) -> None:
    await sign_up(mailed.browser())
    link = verify_link((await mailed.mailbox.wait_for(1))[0])
    browser = mailed.browser()
    page = await browser.http.get(link)
    await mailed.sql(update(EmailVerification).values(expires_at=utcnow() - timedelta(seconds=1)))
    refused = await browser.submit(page)
    assert refused.status_code == 400 and "has expired or was already used" in refused.text
    assert 'id="verify-error"' in (await browser.http.get(link)).text
    assert set(await users(mailed)) == {"alice"}


async def test_sign_up_is_rate_limited_per_network_and_per_address(database: TestDatabase, tmp_path: Path) -> None:
    async with mailed_server(database, tmp_path, signup="open", rate_limit_signup=2) as mailed:
        browser = mailed.browser()
        # The windows are fixed minutes: five forms within seconds meet at most two windows,
        # so at most four pass, and every one past two in a window is refused.
        answers = [await sign_up(browser, username=f"user{n}", email=f"u{n}@example.com") for n in range(5)]
        passed = [answer for answer in answers if answer.status_code == 200]
        refused = [answer for answer in answers if answer.status_code == 429]
        assert 2 <= len(passed) <= 4 and len(passed) + len(refused) == 5
        assert answers[0].status_code == 200, "the first form always passes"
        assert all(int(answer.headers["Retry-After"]) >= 1 for answer in refused)
        assert len(await mailed.sql(select(EmailVerification))) == len(passed)
        assert len(await mailed.mailbox.wait_for(len(passed))) == len(passed)


async def test_invitations(database: TestDatabase, tmp_path: Path) -> None:
    async with mailed_server(database, tmp_path, signup="invite") as mailed:
        env = ostiary_env(mailed.live.settings)
        browser = mailed.browser()
        closed = await browser.http.get("/signup")
        assert closed.status_code == 403 and "by invitation only" in closed.text and "<form" not in closed.text

        made = await run_ostiary_beside_server(["invitations", "create", "--email", "Bob@Example.com", "--json"], env)
        assert made.returncode == 0, made.stderr
        invited = json.loads(made.stdout)
        assert invited["email"] == "Bob@Example.com" and invited["state"] == "live"
        token = invited["link"].split("invitation=")[1]
        (row,) = await mailed.sql(select(Invitation))
        assert bytes(row.token_digest) == hashlib.sha256(token.encode()).digest()

        start = "/signup?invitation=" + token
        other_address = await sign_up(browser, start, email="mallory@example.com")
        assert other_address.status_code == 400 and "This invitation is for another address." in other_address.text
        sent = await sign_up(browser, start, email="bob@example.com")
        assert 'id="signup-sent"' in sent.text
        done = await confirm(mailed.browser(), verify_link((await mailed.mailbox.wait_for(1))[0]))
        assert 'id="verify-done"' in done.text
        assert (await users(mailed))["bob"] == ("bob@example.com", True)

        used = await browser.http.get(start)
        assert used.status_code == 403 and "was already used" in used.text
        listed = await run_ostiary_beside_server(["invitations", "list", "--all", "--json"], env)
        assert [entry["state"] for entry in json.loads(listed.stdout)] == ["used"]

        # A revoked invitation, and a pending sign-up whose invitation was revoked meanwhile.
        second = json.loads((await run_ostiary_beside_server(["invitations", "create", "--json"], env)).stdout)
        start = "/signup?invitation=" + second["link"].split("invitation=")[1]
        assert 'id="signup-sent"' in (await sign_up(browser, start, username="carol", email="c@example.com")).text
        revoked = await run_ostiary_beside_server(["invitations", "revoke", str(second["id"])], env)
        assert revoked.returncode == 0, revoked.stderr
        assert (await run_ostiary_beside_server(["invitations", "revoke", str(second["id"])], env)).returncode != 0
        assert (await browser.http.get(start)).status_code == 403
        late = await confirm(mailed.browser(), verify_link((await mailed.mailbox.wait_for(2))[1]))
        assert late.status_code == 400 and "This invitation has expired" in late.text
        assert "carol" not in await users(mailed)
        kinds = {row.kind for row in await mailed.sql(select(AuditEvent))}
        assert {"invitation.created", "invitation.revoked", "user.signed_up"} <= kinds


async def sign_in_on_account(browser: Browser, username: str = "alice") -> httpx.Response:
    page = await browser.http.get("/account")
    page = await browser.sign_in(page, username)
    return await browser.http.get(page.headers["location"])


async def post_account(browser: Browser, page: httpx.Response, path: str, **fields: str) -> httpx.Response:
    (form,) = [form for form in forms_of(page.text) if form.action == path]
    return await browser.http.post(path, data={**form.fields, **fields})


async def test_a_new_address_changes_once_proved_and_the_old_one_is_told(mailed: Mailed) -> None:
    signin = SignIn(mailed.live, await app_of(mailed), "alice", mailed.browser())
    browser = mailed.browser()
    account = await sign_in_on_account(browser)
    assert "alice@example.com: confirmed." in account.text
    reset_link = mailed.browser()
    await forgot(reset_link, "alice@example.com")
    await mailed.mailbox.wait_for(1)  # a reset link, mailed to the old address

    asked = await post_account(browser, account, "/account/email", email="alice@new.example")
    assert asked.status_code == 303 and asked.headers["location"] == "/account?done=email-sent"
    (_, message) = await mailed.mailbox.wait_for(2)
    assert message["To"] == "alice@new.example"
    assert (await users(mailed))["alice"] == ("alice@example.com", True), "unchanged until proved"

    done = await confirm(mailed.browser(), verify_link(message))
    assert 'id="verify-done"' in done.text
    assert (await users(mailed))["alice"] == ("alice@new.example", True)
    (_, _, told) = await mailed.mailbox.wait_for(3)
    assert (told["To"], told["Subject"]) == ("alice@example.com", "Your e-mail address was changed")
    assert "alice@new.example" in told.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert [row.used_at is not None for row in await mailed.sql(select(PasswordReset))] == [True], (
        "the reset link mailed to the old address no longer works"
    )

    claims = claims_of((await signin.tokens(Flow.start(signin.rp.client_id)))["id_token"])
    assert (claims["email"], claims["email_verified"]) == ("alice@new.example", True)
    kinds = [row.kind for row in await mailed.sql(select(AuditEvent))]
    assert "user.email_change_requested" in kinds and "user.email_verified" in kinds


async def test_an_unconfirmed_address_is_confirmed_from_the_account_page(mailed: Mailed) -> None:
    await mailed.sql(update(User).where(User.username == "alice").values(email_verified=False))
    signin = SignIn(mailed.live, await app_of(mailed), "alice", mailed.browser())
    assert claims_of((await signin.tokens(Flow.start(signin.rp.client_id)))["id_token"])["email_verified"] is False

    browser = mailed.browser()
    account = await sign_in_on_account(browser)
    assert "not confirmed yet" in account.text
    (form,) = [form for form in forms_of(account.text) if form.action == "/account/email"]
    assert form.fields["email"] == "alice@example.com"
    assert (await post_account(browser, account, "/account/email")).status_code == 303
    (message,) = await mailed.mailbox.wait_for(1)
    assert 'id="verify-done"' in (await confirm(mailed.browser(), verify_link(message))).text
    assert (await users(mailed))["alice"] == ("alice@example.com", True)
    await eventually(lambda: _sent(mailed))
    assert len(mailed.mailbox.messages) == 1, "the address did not change: nobody else is told"

    again = await post_account(browser, await browser.http.get("/account"), "/account/email", email="ALICE@example.com")
    assert again.status_code == 400 and "already your confirmed address" in again.text


async def _sent(mailed: Mailed) -> bool:
    return all(row.sent_at is not None for row in await mailed.sql(select(MailOutbox)))


async def test_an_address_change_needs_a_recent_password(database: TestDatabase, tmp_path: Path) -> None:
    async with mailed_server(database, tmp_path, reauth_seconds=30) as mailed:
        browser = mailed.browser()
        account = await sign_in_on_account(browser)
        await mailed.sql(update(BrowserSession).values(auth_time=utcnow() - timedelta(minutes=5)))
        asked = await post_account(browser, account, "/account/email", email="alice@new.example")
        assert asked.status_code == 200 and 'action="/account/reauth"' in asked.text
        assert await mailed.sql(select(EmailVerification)) == []


async def test_another_account_cannot_take_an_address_by_proving_it_late(mailed: Mailed) -> None:
    await create_user(mailed.live.settings, "carol", PASSWORD, email="carol@example.com")
    browser = mailed.browser()
    account = await sign_in_on_account(browser, "carol")
    await post_account(browser, account, "/account/email", email="dave@example.com")
    link = verify_link((await mailed.mailbox.wait_for(1))[0])
    await create_user(mailed.live.settings, "dave", PASSWORD, email="dave@example.com")
    refused = await confirm(mailed.browser(), link)
    assert refused.status_code == 400 and "belongs to another account" in refused.text
    assert (await users(mailed))["carol"] == ("carol@example.com", True)


async def test_prompt_create_opens_the_sign_up_form_and_discovery_says_so(mailed: Mailed) -> None:
    discovery = (await mailed.http.get("/.well-known/openid-configuration")).json()
    assert "create" in discovery["prompt_values_supported"]
    app = await app_of(mailed)
    browser = mailed.browser()
    started = await browser.authorize(**Flow.start(app.client_id).params(prompt="create"))
    assert started.status_code in (302, 303) and started.headers["location"].startswith("/signup?interaction=")
    form = await browser.http.get(started.headers["location"])
    assert 'action="/signup"' in form.text and forms_of(form.text)[0].fields["interaction"]

    # without it, the sign-in form as always
    plain = await browser.authorize(**Flow.start(app.client_id).params())
    assert plain.status_code == 200 and 'name="password"' in plain.text


async def test_prompt_create_is_not_offered_while_sign_up_is_not_open(database: TestDatabase, tmp_path: Path) -> None:
    async with mailed_server(database, tmp_path, signup="invite") as mailed:
        discovery = (await mailed.http.get("/.well-known/openid-configuration")).json()
        assert discovery["prompt_values_supported"] == ["none", "login", "consent"]
        app = await app_of(mailed)
        page = await mailed.browser().authorize(**Flow.start(app.client_id).params(prompt="create"))
        assert page.status_code == 200 and 'name="password"' in page.text
